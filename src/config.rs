//! Settings: flag > environment > config file > default (DESIGN.md, "Settings").
//!
//! Every flag shared by several binaries is defined once here and flattened
//! into each binary's clap parser; its doc comment is its `--help` text.
//! Secrets (the Forgejo token, the admin secret) are read only from files or
//! the environment and are wrapped in [`Secret`], whose Debug prints nothing.

use crate::error::{Kind, fail};
use crate::record::check_node_name;
use anyhow::{Context, Result};
use clap::Args;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// The billing repository when none is configured.
pub const DEFAULT_REPO: &str = "lhumina_code/hero_onboarding_billing";
/// The shim's listen address when none is configured.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9920";

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
pub fn given<T: AsRef<std::ffi::OsStr> + Clone>(v: &Option<T>) -> Option<T> {
    v.clone().filter(|v| !v.as_ref().is_empty())
}

/// The config file; its keys are the setting names in snake_case. Unknown
/// keys are an error so that typos are caught.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
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
    pub fn load(named: Option<&Path>) -> Result<ConfigFile> {
        let Some(path) = Self::locate(named) else {
            return Ok(ConfigFile::default());
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            fail(
                Kind::Config,
                format!("cannot read config file {}: {e}", path.display()),
            )
        })?;
        toml::from_str(&text).map_err(|e| {
            fail(
                Kind::Config,
                format!("config file {}: {}", path.display(), e.message()),
            )
        })
    }
}

impl ConfigFile {
    /// The config file in force: the one named, or the default path when it
    /// exists, or none.
    pub fn locate(named: Option<&Path>) -> Option<PathBuf> {
        match named {
            Some(p) => Some(p.to_path_buf()),
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

/// A secret value: never shown by Debug or Display.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    /// The value itself; call only where it is sent or compared.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Read a secret from a file: surrounding white space (a trailing newline) is
/// dropped; an empty file is an error. The error never contains the content.
pub fn read_secret_file(path: &Path, what: &str) -> Result<Secret> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        fail(
            Kind::Config,
            format!("cannot read {what} file {}: {e}", path.display()),
        )
    })?;
    let s = text.trim();
    if s.is_empty() {
        return Err(fail(
            Kind::Config,
            format!("{what} file {} is empty", path.display()),
        ));
    }
    Ok(Secret(s.to_string()))
}

/// Settings every binary needs: the spool and the node name.
#[derive(Debug, Clone)]
pub struct Common {
    pub spool: PathBuf,
    pub node: String,
    pub file: ConfigFile,
}

impl Common {
    pub fn resolve(args: &SpoolArgs) -> Result<Common> {
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
    pub fn resolve(args: &ForgeArgs, file: &ConfigFile) -> Result<ForgeSettings> {
        let url = given(&args.forgejo_url)
            .or_else(|| file.forgejo_url.clone())
            .ok_or_else(|| {
                fail(
                    Kind::Config,
                    "no Forgejo URL: set --forgejo-url, HERO_USAGE_FORGEJO_URL or forgejo_url in the config file",
                )
            })?;
        let token = resolve_token(args, file)?;
        let full = given(&args.repo)
            .or_else(|| file.repo.clone())
            .unwrap_or_else(|| DEFAULT_REPO.to_string());
        let (owner, repo) = split_repo(&full)?;
        let branch = given(&args.branch).or_else(|| file.branch.clone());
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

fn resolve_token(args: &ForgeArgs, file: &ConfigFile) -> Result<Secret> {
    if let Some(p) = &args.token_file {
        return read_secret_file(p, "token");
    }
    if let Some(t) = std::env::var_os("HERO_USAGE_FORGEJO_TOKEN") {
        let t = t.to_string_lossy().trim().to_string();
        if !t.is_empty() {
            return Ok(Secret(t));
        }
    }
    if let Some(p) = std::env::var_os("HERO_USAGE_FORGEJO_TOKEN_FILE").filter(|p| !p.is_empty()) {
        return read_secret_file(Path::new(&p), "token");
    }
    if let Some(p) = &file.token_file {
        return read_secret_file(p, "token");
    }
    Err(fail(
        Kind::Config,
        "no Forgejo token: set --token-file, HERO_USAGE_FORGEJO_TOKEN_FILE, HERO_USAGE_FORGEJO_TOKEN or token_file in the config file",
    ))
}

/// `OWNER/NAME`, each part a valid Forgejo name (letters, digits, `-_.`).
pub fn split_repo(full: &str) -> Result<(String, String)> {
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
