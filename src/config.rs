//! Settings: flag > environment > config file > default (DESIGN.md, "Settings").
//!
//! Every flag shared by several binaries is defined once here and flattened
//! into each binary's clap parser; its doc comment is its `--help` text.
//! Secrets (the Forgejo token, the admin secret) are read only from files or
//! the environment and are wrapped in [`Secret`], whose Debug prints nothing.

use crate::error::{Kind, fail};
use crate::record::check_node_name;
use crate::secret::Secret;
use anyhow::{Context, Result};
use clap::Args;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The billing repository when none is configured.
pub(crate) const DEFAULT_REPO: &str = "lhumina_code/hero_onboarding_billing";
/// The shim's listen address when none is configured.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:9920";

/// `--spool` and `--config`: every binary takes them.
#[derive(Args, Debug, Clone, Default)]
pub struct SpoolArgs {
    /// Spool directory [default: $HOME/hero/var/hero_usage/queue]
    #[arg(long, value_name = "DIR", env = "HERO_USAGE_SPOOL", value_parser = path_setting())]
    pub spool: Option<PathBuf>,
    /// Config file (TOML) [default: $HOME/hero/cfg/hero_usage.toml if it exists]
    #[arg(long, value_name = "FILE", env = "HERO_USAGE_CONFIG", value_parser = path_setting())]
    pub config: Option<PathBuf>,
    /// Node name: the default node_id and the remote folder name [default: the host name]
    #[arg(long, value_name = "NAME", env = "HERO_NODE_ID")]
    pub node: Option<String>,
}

/// The forge settings (push, and the shim's push-now).
#[derive(Args, Debug, Clone, Default)]
pub struct ForgeArgs {
    /// Forgejo base URL, e.g. https://forge.example.org (a sub-path is kept)
    #[arg(long, value_name = "URL", env = "HERO_USAGE_FORGEJO_URL")]
    pub forgejo_url: Option<String>,
    /// File holding the Forgejo token (or set HERO_USAGE_FORGEJO_TOKEN / HERO_USAGE_FORGEJO_TOKEN_FILE)
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Billing repository as OWNER/NAME [default: lhumina_code/hero_onboarding_billing]
    #[arg(long, value_name = "OWNER/NAME", env = "HERO_USAGE_REPO")]
    pub repo: Option<String>,
    /// Branch to commit to [default: the repository's default branch]
    #[arg(long, value_name = "NAME", env = "HERO_USAGE_BRANCH")]
    pub branch: Option<String>,
    /// Allow a plain http:// Forgejo URL that is not a loopback address
    #[arg(long)]
    pub insecure_http: bool,
}

/// A path setting that may be given empty: clap's own path parser refuses
/// an empty value (exit 64), but an empty environment variable means unset.
fn path_setting() -> impl clap::builder::TypedValueParser<Value = PathBuf> {
    use clap::builder::TypedValueParser;
    clap::builder::OsStringValueParser::new().map(PathBuf::from)
}

/// A setting as given by flag or environment, empty meaning not given (as
/// the shell's `VAR=` usually means), so that the next source applies.
pub(crate) fn given<T: AsRef<std::ffi::OsStr> + Clone>(v: &Option<T>) -> Option<T> {
    v.clone().filter(|v| !v.as_ref().is_empty())
}

/// The config file; its keys are the setting names in snake_case. Unknown
/// keys are an error so that typos are caught.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    pub spool: Option<PathBuf>,
    pub node: Option<String>,
    pub forgejo_url: Option<String>,
    pub token_file: Option<PathBuf>,
    pub repo: Option<String>,
    pub branch: Option<String>,
    pub admin_secret_file: Option<PathBuf>,
    pub listen: Option<String>,
}

impl ConfigFile {
    /// Load the file named by `--config`/`HERO_USAGE_CONFIG`, or the default
    /// path if it exists, or nothing.
    pub(crate) fn load(named: Option<&Path>) -> Result<ConfigFile> {
        let Some(path) = Self::locate(named) else {
            return Ok(ConfigFile::default());
        };
        let text = read_small_text(&path, MAX_CONFIG_BYTES).map_err(|why| {
            fail(
                Kind::Config,
                format!("cannot read config file {}: {why}", path.display()),
            )
        })?;
        let file: ConfigFile = toml::from_str(&text).map_err(|e| {
            fail(
                Kind::Config,
                format!("config file {}: {}", path.display(), e.message()),
            )
        })?;
        file.refuse_empty_paths(&path)?;
        Ok(file.relative_to(path.parent().unwrap_or(Path::new("/"))))
    }

    /// An empty path in the file is a mistake, never "unset" (a line that
    /// is not wanted is removed or commented): `spool = ""` would otherwise
    /// be read as a spool in no directory at all.
    fn refuse_empty_paths(&self, path: &Path) -> Result<()> {
        let paths = [
            ("spool", &self.spool),
            ("token_file", &self.token_file),
            ("admin_secret_file", &self.admin_secret_file),
        ];
        match paths
            .iter()
            .find(|(_, p)| p.as_ref().is_some_and(|p| p.as_os_str().is_empty()))
        {
            Some((key, _)) => Err(fail(
                Kind::Config,
                format!(
                    "config file {}: {key} is empty; give a path, or remove the line to use the default",
                    path.display()
                ),
            )),
            None => Ok(()),
        }
    }

    /// Paths in a config file name files beside it, not in whatever
    /// directory a scheduler happens to start in: resolve relative ones
    /// against the config file's own directory.
    fn relative_to(mut self, dir: &Path) -> ConfigFile {
        for p in [
            &mut self.spool,
            &mut self.token_file,
            &mut self.admin_secret_file,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() && !p.as_os_str().is_empty() {
                *p = dir.join(&*p);
            }
        }
        self
    }
}

impl ConfigFile {
    /// The config file in force: the one named, or the default path when it
    /// exists, or none.
    pub(crate) fn locate(named: Option<&Path>) -> Option<PathBuf> {
        match named {
            // Absolute, so that its directory (which relative paths in it
            // are resolved against) and a printed schedule do not depend on
            // the current directory.
            Some(p) => Some(std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())),
            None => home()
                .map(|h| h.join("hero/cfg/hero_usage.toml"))
                .filter(|p| p.exists()),
        }
    }
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// Largest secret file read (a token is 40 characters).
const MAX_SECRET_BYTES: u64 = 64 * 1024;
/// Largest config file read (the example, comments and all, is 3 KiB).
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// A small text file: only a regular file (a symbolic link to one is
/// followed), and at most `max` bytes of it, so that a fifo cannot hang the
/// run nor `/dev/zero` fill the memory. The error is why, for a message
/// that never quotes the content.
fn read_small_text(path: &Path, max: u64) -> std::result::Result<String, String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(max + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!("it is larger than {max} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".into())
}

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

/// Settings every binary needs: the spool and the node name.
#[derive(Debug, Clone)]
pub(crate) struct Common {
    pub spool: PathBuf,
    pub node: String,
    pub file: ConfigFile,
}

impl Common {
    pub(crate) fn resolve(args: &SpoolArgs) -> Result<Common> {
        let file = ConfigFile::load(given(&args.config).as_deref())?;
        let spool = match given(&args.spool).or_else(|| file.spool.clone()) {
            Some(p) => p,
            None => home()
                .map(|h| h.join("hero/var/hero_usage/queue"))
                .ok_or_else(|| {
                    fail(
                        Kind::Config,
                        "no spool: set --spool, HERO_USAGE_SPOOL or HOME",
                    )
                })?,
        };
        let node = match given(&args.node).or_else(|| file.node.clone()) {
            Some(n) => n,
            None => host_name()?,
        };
        check_node_name(&node).map_err(|p| {
            fail(
                Kind::Config,
                format!("node name {p}; set --node or HERO_NODE_ID"),
            )
        })?;
        Ok(Common { spool, node, file })
    }
}

/// The host name, from the kernel (no libc needed).
fn host_name() -> Result<String> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .context("cannot tell the host name; set --node or HERO_NODE_ID")
        .map_err(|e| fail(Kind::Config, format!("{e:#}")))?;
    Ok(raw.trim().to_string())
}

/// Resolved forge settings.
#[derive(Debug, Clone)]
pub struct ForgeSettings {
    pub url: String,
    pub token: Secret,
    pub owner: String,
    pub repo: String,
    pub branch: Option<String>,
    pub insecure_http: bool,
}

impl ForgeSettings {
    pub(crate) fn resolve(args: &ForgeArgs, file: &ConfigFile) -> Result<ForgeSettings> {
        let url = given(&args.forgejo_url)
            .or_else(|| file.forgejo_url.clone())
            .ok_or_else(|| {
                fail(
                    Kind::Config,
                    "no Forgejo URL: set --forgejo-url, HERO_USAGE_FORGEJO_URL or forgejo_url in the config file",
                )
            })?;
        refuse_control_in_url(&url)?;
        let token = resolve_token(args, file)?;
        let full = given(&args.repo)
            .or_else(|| file.repo.clone())
            .unwrap_or_else(|| DEFAULT_REPO.to_string());
        let (owner, repo) = split_repo(&full)?;
        let branch = given(&args.branch).or_else(|| file.branch.clone());
        if let Some(b) = &branch {
            check_branch(b).map_err(|problem| {
                fail(
                    Kind::Config,
                    format!(
                        "branch `{}` {problem}; set --branch or HERO_USAGE_BRANCH to a git branch \
                         name such as main or usage/{{node}}",
                        crate::text::escape_controls(b)
                    ),
                )
            })?;
        }
        Ok(ForgeSettings {
            url,
            token,
            owner,
            repo,
            branch,
            insecure_http: args.insecure_http,
        })
    }
}

/// A control character in the URL can never reach a server: every request
/// would fail the same way, which is configuration (78), not a forge that
/// is down (75, retried for ever).
fn refuse_control_in_url(url: &str) -> Result<()> {
    match url.chars().position(char::is_control) {
        Some(at) => Err(fail(
            Kind::Config,
            format!(
                "Forgejo URL `{}` contains a control character (at character {}); set \
                 --forgejo-url, HERO_USAGE_FORGEJO_URL or forgejo_url to the server's base URL, \
                 e.g. https://forge.example.org",
                crate::text::escape_controls(url),
                at + 1
            ),
        )),
        None => Ok(()),
    }
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

/// Shortest token accepted: a shorter one is surely a mistake, and the
/// scrubbing of messages could not tell it from ordinary words.
pub(crate) const MIN_TOKEN_CHARS: usize = 8;

/// Where a secret comes from.
#[derive(Debug, Clone)]
pub(crate) enum SecretSource {
    /// A file, read again on every [`SecretSource::read`] (rotation).
    File(PathBuf),
    /// An environment variable's value: fixed for the life of the process.
    Value(Secret),
}

impl SecretSource {
    /// The one precedence chain of every secret: the flag's file, the
    /// environment's value, the environment's file, the config file's
    /// file (empty values count as not set). `None` when none is set.
    pub(crate) fn locate(
        setting: &SecretSetting,
        flag: Option<&Path>,
        config: Option<&Path>,
    ) -> Option<SecretSource> {
        if let Some(p) = flag.filter(|p| !p.as_os_str().is_empty()) {
            return Some(SecretSource::File(p.to_path_buf()));
        }
        if let Some(v) = std::env::var_os(setting.env_value)
            .map(|v| v.to_string_lossy().trim().to_string())
            .filter(|v| !v.is_empty())
        {
            return Some(SecretSource::Value(Secret::new(v)));
        }
        if let Some(p) = std::env::var_os(setting.env_file).filter(|p| !p.is_empty()) {
            return Some(SecretSource::File(PathBuf::from(p)));
        }
        config.map(|p| SecretSource::File(p.to_path_buf()))
    }

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
}

fn resolve_token(args: &ForgeArgs, file: &ConfigFile) -> Result<Secret> {
    let source = SecretSource::locate(
        &TOKEN,
        args.token_file.as_deref(),
        file.token_file.as_deref(),
    )
    .ok_or_else(|| {
        fail(
            Kind::Config,
            format!("no Forgejo token: set {}", SecretSource::ways(&TOKEN)),
        )
    })?;
    let token = source.read(TOKEN.what)?;
    check_token(token.expose()).map_err(|problem| {
        fail(
            Kind::Config,
            format!(
                "the Forgejo token from {} {problem}; check it (a Forgejo token is \
                 40 hexadecimal characters)",
                source.origin(&TOKEN)
            ),
        )
    })?;
    Ok(token)
}

/// A token must be at least [`MIN_TOKEN_CHARS`] visible ASCII characters:
/// anything else cannot go into an HTTP header as it is, and would fail
/// every run the same way. The problem never quotes the token.
pub(crate) fn check_token(token: &str) -> std::result::Result<(), String> {
    if let Some(at) = token.chars().position(|c| c.is_control()) {
        return Err(format!(
            "contains a control character (at character {})",
            at + 1
        ));
    }
    if let Some(at) = token.chars().position(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "contains a character that is not visible ASCII, such as a space or a non-ASCII \
             letter (at character {})",
            at + 1
        ));
    }
    let n = token.chars().count();
    if n < MIN_TOKEN_CHARS {
        return Err(format!(
            "is {n} characters long; a token has at least {MIN_TOKEN_CHARS}"
        ));
    }
    Ok(())
}

/// A branch setting must be a valid git branch name (`git check-ref-format
/// --branch`) once `{node}` is replaced: anything else fails every run the
/// same way, which is configuration (78), not a bug.
pub(crate) fn check_branch(branch: &str) -> std::result::Result<(), String> {
    let b = branch.replace("{node}", "node");
    let bad_char = b
        .chars()
        .find(|c| c.is_control() || " ~^:?*[\\".contains(*c));
    if let Some(c) = bad_char {
        return Err(format!(
            "contains `{}`, which git does not allow in a branch name",
            c.escape_debug()
        ));
    }
    let bad_part = b.split('/').any(|part| {
        part.is_empty() || part.starts_with('.') || part.ends_with(".lock") || part.ends_with('.')
    });
    if b.is_empty() || b == "@" || b.contains("..") || b.contains("@{") || bad_part {
        return Err(
            "is not a valid git branch name (no `..`, `@{`, empty or dot-led parts, \
             no `.lock` or `.` at a part's end)"
                .into(),
        );
    }
    Ok(())
}

/// `OWNER/NAME`, each part a valid Forgejo name (letters, digits, `-_.`).
pub(crate) fn split_repo(full: &str) -> Result<(String, String)> {
    let bad = || {
        fail(
            Kind::Config,
            "repo must be OWNER/NAME, each of letters, digits, - _ . (at most 100), e.g. lhumina_code/hero_onboarding_billing",
        )
    };
    let (owner, name) = full.split_once('/').ok_or_else(bad)?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if !ok(owner) || !ok(name) {
        return Err(bad());
    }
    Ok((owner.to_string(), name.to_string()))
}

/// Where a setting's value came from: flag > environment > config file >
/// default (`hero_usage_push --check` shows it, and a printed schedule must
/// not rely on what only this shell has).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Flag,
    Env,
    Config,
    Default,
}

impl Source {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::Env => "env",
            Source::Config => "config",
            Source::Default => "default",
        }
    }

    /// Given only to this process (a flag or this shell's environment): a
    /// scheduler will not see it.
    pub(crate) fn is_shell_only(self) -> bool {
        matches!(self, Source::Flag | Source::Env)
    }
}

/// The source of an argument that clap also reads from `env`: clap merges
/// the two, so a value equal to the variable's counts as the environment's.
pub(crate) fn flag_or_env<T: AsRef<std::ffi::OsStr> + Clone>(
    v: &Option<T>,
    env: &str,
) -> Option<Source> {
    let v = given(v)?;
    let from_env = std::env::var_os(env).is_some_and(|e| e.as_os_str() == v.as_ref());
    Some(if from_env { Source::Env } else { Source::Flag })
}

/// The first source that has a value: flag or env, else the config file,
/// else the default.
fn layered<T: AsRef<std::ffi::OsStr> + Clone, U>(
    arg: &Option<T>,
    env: &str,
    file: &Option<U>,
) -> Source {
    flag_or_env(arg, env).unwrap_or(if file.is_some() {
        Source::Config
    } else {
        Source::Default
    })
}

/// Where the Forgejo token comes from (in `resolve_token`'s order); the
/// token itself is never part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenOrigin {
    File {
        path: PathBuf,
        source: Source,
    },
    /// The value itself is in `HERO_USAGE_FORGEJO_TOKEN`.
    EnvValue,
}

impl TokenOrigin {
    pub(crate) fn source(&self) -> Source {
        match self {
            TokenOrigin::File { source, .. } => *source,
            TokenOrigin::EnvValue => Source::Env,
        }
    }

    /// How `--check` shows it: a file's path, or the variable's name.
    pub(crate) fn describe(&self) -> String {
        match self {
            TokenOrigin::File { path, .. } => format!("file {}", path.display()),
            TokenOrigin::EnvValue => "the value of HERO_USAGE_FORGEJO_TOKEN".into(),
        }
    }
}

pub(crate) fn token_origin(args: &ForgeArgs, file: &ConfigFile) -> Option<TokenOrigin> {
    // The one chain of secrets ([`SecretSource::locate`]); only the source
    // of a file is told apart here.
    let located = SecretSource::locate(
        &TOKEN,
        args.token_file.as_deref(),
        file.token_file.as_deref(),
    )?;
    let SecretSource::File(path) = located else {
        return Some(TokenOrigin::EnvValue);
    };
    let env_file = std::env::var_os(TOKEN.env_file).filter(|p| !p.is_empty());
    let source = if given(&args.token_file).is_some() {
        Source::Flag
    } else if env_file.is_some() {
        Source::Env
    } else {
        Source::Config
    };
    Some(TokenOrigin::File { path, source })
}

/// One effective setting as `--check` prints it (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Setting {
    pub name: &'static str,
    /// `None`: not set at all.
    pub value: Option<String>,
    pub source: Source,
}

/// Every forge and spool setting in force, with where it came from.
pub(crate) fn effective_settings(
    spool: &SpoolArgs,
    forge: &ForgeArgs,
    common: &Common,
) -> Vec<Setting> {
    let f = &common.file;
    let config = ConfigFile::locate(given(&spool.config).as_deref());
    let config_source = flag_or_env(&spool.config, "HERO_USAGE_CONFIG").unwrap_or(Source::Default);
    let shown = |p: &Path| p.display().to_string();
    let setting = |name, value, source| Setting {
        name,
        value,
        source,
    };
    let token = token_origin(forge, f);
    let repo = given(&forge.repo).or_else(|| f.repo.clone());
    let branch = given(&forge.branch).or_else(|| f.branch.clone());
    vec![
        setting("config", config.as_deref().map(shown), config_source),
        setting(
            "spool",
            Some(shown(&common.spool)),
            layered(&spool.spool, "HERO_USAGE_SPOOL", &f.spool),
        ),
        setting(
            "node",
            Some(common.node.clone()),
            layered(&spool.node, "HERO_NODE_ID", &f.node),
        ),
        setting(
            "forgejo_url",
            given(&forge.forgejo_url).or_else(|| f.forgejo_url.clone()),
            layered(&forge.forgejo_url, "HERO_USAGE_FORGEJO_URL", &f.forgejo_url),
        ),
        setting(
            "token",
            token.as_ref().map(TokenOrigin::describe),
            token.as_ref().map_or(Source::Default, TokenOrigin::source),
        ),
        setting(
            "repo",
            Some(repo.unwrap_or_else(|| DEFAULT_REPO.to_string())),
            layered(&forge.repo, "HERO_USAGE_REPO", &f.repo),
        ),
        setting(
            "branch",
            branch,
            layered(&forge.branch, "HERO_USAGE_BRANCH", &f.branch),
        ),
        setting(
            "insecure_http",
            Some(forge.insecure_http.to_string()),
            if forge.insecure_http {
                Source::Flag
            } else {
                Source::Default
            },
        ),
    ]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_visible_ascii_of_at_least_8() {
        assert!(check_token("0123456789abcdef").is_ok());
        assert!(
            check_token("abc\u{1b}defgh")
                .unwrap_err()
                .contains("control")
        );
        assert!(check_token("abcdéfghij").unwrap_err().contains("ASCII"));
        assert!(check_token("abc defghij").unwrap_err().contains("ASCII"));
        assert!(check_token("G").unwrap_err().contains("at least 8"));
        // The problem never quotes the token.
        assert!(
            !check_token("secret\u{7}xyz")
                .unwrap_err()
                .contains("secret")
        );
    }

    #[test]
    fn branches_follow_git_rules() {
        for ok in ["main", "usage/{node}", "release-1.2", "a/b/c"] {
            assert_eq!(check_branch(ok), Ok(()), "{ok}");
        }
        for bad in [
            "../main", "a..b", "/main", "main/", ".hidden", "x.lock", "a b", "a\nb", "@", "a@{1}",
            "a~1", "",
        ] {
            assert!(check_branch(bad).is_err(), "{bad:?}");
        }
    }
}
