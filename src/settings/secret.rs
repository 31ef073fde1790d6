//! Secrets: the Forgejo token and the shim's admin secret. Read only from
//! files or the environment (a flag would show in `ps`), never shown by
//! Debug, never in a message.

use super::file::read_small_text;
use crate::error::{Kind, fail};
use crate::secret::Secret;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// Largest secret file read (a token is 40 characters).
const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// Read a secret from a file: surrounding white space (a trailing newline) is
/// dropped; an empty file is an error. The error never contains the content.
/// Only a regular file is read (a symbolic link to one is followed: mounted
/// secrets are links), and at most 64 KiB of it: a fifo would hang the run,
/// `/dev/zero` would fill the memory.
pub(crate) fn read_secret_file(path: &Path, what: &str) -> Result<Secret> {
    let text = read_small_text(path, MAX_SECRET_BYTES).map_err(|why| {
        fail(
            Kind::Config,
            format!("cannot read {what} file {}: {why}", path.display()),
        )
    })?;
    let s = text.trim();
    if s.is_empty() {
        return Err(fail(
            Kind::Config,
            format!("{what} file {} is empty", path.display()),
        ));
    }
    Ok(Secret::new(s.to_string()))
}

/// The names one secret setting goes by: its precedence chain (flag >
/// environment value > environment file > config file) and its messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SecretSetting {
    /// What it is, for messages: `token`, `admin secret`.
    pub what: &'static str,
    pub flag: &'static str,
    pub env_value: &'static str,
    pub env_file: &'static str,
    pub config_key: &'static str,
}

/// The Forgejo token's setting.
pub(crate) const TOKEN: SecretSetting = SecretSetting {
    what: "token",
    flag: "--token-file",
    env_value: "HERO_USAGE_FORGEJO_TOKEN",
    env_file: "HERO_USAGE_FORGEJO_TOKEN_FILE",
    config_key: "token_file",
};

/// The shim's admin secret's setting.
pub(crate) const ADMIN_SECRET: SecretSetting = SecretSetting {
    what: "admin secret",
    flag: "--admin-secret-file",
    env_value: "HERO_ONBOARDING_ADMIN_SECRET",
    env_file: "HERO_ONBOARDING_ADMIN_SECRET_FILE",
    config_key: "admin_secret_file",
};

/// Where a secret comes from.
#[derive(Debug, Clone)]
pub(crate) enum SecretSource {
    /// A file, read again on every [`SecretSource::read`] (rotation).
    File(PathBuf),
    /// An environment variable's value: fixed for the life of the process.
    Value(Secret),
}

impl SecretSource {
    /// Every way to set it, for the message when none is.
    pub(crate) fn ways(setting: &SecretSetting) -> String {
        format!(
            "{}, {}, {} or {} in the config file",
            setting.flag, setting.env_file, setting.env_value, setting.config_key
        )
    }

    /// The secret as it is now (a file is read again).
    pub(crate) fn read(&self, what: &str) -> Result<Secret> {
        match self {
            SecretSource::File(p) => read_secret_file(p, what),
            SecretSource::Value(s) => Ok(s.clone()),
        }
    }

    /// Where it comes from, for messages (never the value).
    pub(crate) fn origin(&self, setting: &SecretSetting) -> String {
        match self {
            SecretSource::File(p) => format!("file {}", p.display()),
            SecretSource::Value(_) => setting.env_value.to_string(),
        }
    }

    /// How `--check` shows it: a file's path, or the variable's name.
    pub(crate) fn describe(&self, setting: &SecretSetting) -> String {
        match self {
            SecretSource::File(p) => format!("file {}", p.display()),
            SecretSource::Value(_) => format!("the value of {}", setting.env_value),
        }
    }

    /// The value of an environment variable (trimmed, empty meaning unset).
    pub(crate) fn from_env_value(name: &str) -> Option<SecretSource> {
        std::env::var_os(name)
            .map(|v| v.to_string_lossy().trim().to_string())
            .filter(|v| !v.is_empty())
            .map(|v| SecretSource::Value(Secret::new(v)))
    }
}

/// A warning when a secret file can be read (or changed) by group or
/// others; `None` when it is private or cannot be examined (reading it
/// reports that).
pub(crate) fn exposed_secret_warning(path: &Path, what: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    // Printed as it is by the callers: a name's control characters escaped.
    let shown = crate::text::escape_controls(&path.display().to_string());
    (mode & 0o077 != 0).then(|| {
        format!(
            "{what} file {shown} is open to group or others (mode {mode:04o}); run: chmod 600 {}",
            crate::text::shell_word(&shown)
        )
    })
}
