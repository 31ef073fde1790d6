//! The one layered resolver: every setting is looked up once, flag >
//! environment > config file > default, as a value with its source. The
//! use cases get the validated values ([`Common`], [`ForgeSettings`],
//! [`ShimSettings`]); `--check` and `--print-schedule` get the same lookups
//! as a table ([`Resolver::table`]). Secrets go through the same chain.

use super::args::{ForgeArgs, ShimArgs, SigningArgs, SpoolArgs};
use super::file::{ConfigFile, home};
use super::secret::{ADMIN_SECRET, SecretSetting, SecretSource, TOKEN};
use super::values::{check_branch, check_token, listen_addr, refuse_control_in_url, split_repo};
use super::{DEFAULT_LISTEN, DEFAULT_REPO};
use crate::error::{Kind, fail};
use crate::forgejo::ClientConfig;
use crate::secret::Secret;
use anyhow::{Context, Result};
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where a setting's value came from (`hero_usage_push --check` shows it,
/// and a printed schedule must not rely on what only this shell has).
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

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Resolved<T> {
    fn new(value: T, source: Source) -> Resolved<T> {
        Resolved { value, source }
    }
}

/// One effective setting as `--check` prints it (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Setting {
    pub name: &'static str,
    /// `None`: not set at all.
    pub value: Option<String>,
    pub source: Source,
}

/// A setting as given by flag or environment, empty meaning not given (as
/// the shell's `VAR=` usually means), so that the next source applies.
fn given<T: AsRef<OsStr> + Clone>(v: &Option<T>) -> Option<T> {
    v.clone().filter(|v| !v.as_ref().is_empty())
}

/// A value clap read from a flag or from `env` (it merges the two): a
/// value equal to the variable's counts as the environment's.
fn flag_or_env<T: AsRef<OsStr> + Clone>(v: &Option<T>, env: &str) -> Option<Resolved<T>> {
    let v = given(v)?;
    let from_env = std::env::var_os(env).is_some_and(|e| e.as_os_str() == v.as_ref());
    let source = if from_env { Source::Env } else { Source::Flag };
    Some(Resolved::new(v, source))
}

/// The layers of one setting: flag or environment, else the config file.
fn layer<T: AsRef<OsStr> + Clone>(
    arg: &Option<T>,
    env: &str,
    file: &Option<T>,
) -> Option<Resolved<T>> {
    flag_or_env(arg, env).or_else(|| file.clone().map(|v| Resolved::new(v, Source::Config)))
}

/// Settings every binary needs: the spool and the node name.
#[derive(Debug, Clone)]
pub struct Common {
    pub spool: PathBuf,
    pub node: String,
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
    /// CA certificates trusted instead of the system's store.
    pub ca_file: Option<PathBuf>,
    /// Longest wait for one request; `None`: the forge client's (120 s).
    pub request_timeout: Option<Duration>,
}

impl ForgeSettings {
    /// How the forge client reaches the forge.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new(&self.url, self.token.clone());
        config.insecure_http = self.insecure_http;
        config.ca_file = self.ca_file.clone();
        if let Some(t) = self.request_timeout {
            config.timeout = t;
            config.connect_timeout = config.connect_timeout.min(t);
        }
        config
    }
}

/// Resolved shim settings.
#[derive(Debug, Clone)]
pub struct ShimSettings {
    /// The address to bind (loopback unless `--allow-remote`).
    pub addr: SocketAddr,
    /// Re-read on every request: rotation needs no restart.
    pub(crate) admin_secret: SecretSource,
}

/// What the command line, the environment and the config file say; each
/// setting is looked up here and nowhere else.
#[derive(Debug, Clone)]
pub struct Resolver {
    spool: SpoolArgs,
    forge: ForgeArgs,
    shim: ShimArgs,
    signing: SigningArgs,
    config: Option<Resolved<PathBuf>>,
    file: ConfigFile,
}

impl Resolver {
    /// Read the config file in force (the one named, or the default path
    /// when it exists).
    pub fn load(spool: &SpoolArgs, forge: &ForgeArgs) -> Result<Resolver> {
        let config = match flag_or_env(&spool.config, "HERO_USAGE_CONFIG") {
            Some(named) => {
                ConfigFile::locate(Some(&named.value)).map(|path| Resolved::new(path, named.source))
            }
            None => ConfigFile::locate(None).map(|path| Resolved::new(path, Source::Default)),
        };
        let file = match &config {
            Some(c) => ConfigFile::load(&c.value)?,
            None => ConfigFile::default(),
        };
        Ok(Resolver {
            spool: spool.clone(),
            forge: forge.clone(),
            shim: ShimArgs::default(),
            signing: SigningArgs::default(),
            config,
            file,
        })
    }

    /// With the shim's own flags.
    pub fn with_shim(mut self, shim: &ShimArgs) -> Resolver {
        self.shim = shim.clone();
        self
    }

    /// With the signing key's flag.
    pub fn with_signing(mut self, signing: &SigningArgs) -> Resolver {
        self.signing = signing.clone();
        self
    }

    /// The config file's own keys (what a scheduler will see of them).
    pub(crate) fn file(&self) -> &ConfigFile {
        &self.file
    }

    /// The config file in force, absolute.
    pub(crate) fn config_path(&self) -> Option<&Path> {
        self.config.as_ref().map(|c| c.value.as_path())
    }

    // ---- the lookups: one per setting ----

    fn spool_dir(&self) -> Option<Resolved<PathBuf>> {
        layer(&self.spool.spool, "HERO_USAGE_SPOOL", &self.file.spool).or_else(|| {
            home().map(|h| Resolved::new(h.join("hero/var/hero_usage/queue"), Source::Default))
        })
    }

    fn node(&self) -> Result<Resolved<String>> {
        match layer(&self.spool.node, "HERO_NODE_ID", &self.file.node) {
            Some(n) => Ok(n),
            None => Ok(Resolved::new(host_name()?, Source::Default)),
        }
    }

    fn forgejo_url(&self) -> Option<Resolved<String>> {
        layer(
            &self.forge.forgejo_url,
            "HERO_USAGE_FORGEJO_URL",
            &self.file.forgejo_url,
        )
    }

    fn repo(&self) -> Resolved<String> {
        layer(&self.forge.repo, "HERO_USAGE_REPO", &self.file.repo)
            .unwrap_or_else(|| Resolved::new(DEFAULT_REPO.to_string(), Source::Default))
    }

    fn branch(&self) -> Option<Resolved<String>> {
        layer(&self.forge.branch, "HERO_USAGE_BRANCH", &self.file.branch)
    }

    fn insecure_http(&self) -> Resolved<bool> {
        match (self.forge.insecure_http, self.file.insecure_http) {
            (true, _) => Resolved::new(true, Source::Flag),
            (false, Some(v)) => Resolved::new(v, Source::Config),
            (false, None) => Resolved::new(false, Source::Default),
        }
    }

    /// The CA file trusted instead of the system's store, if any.
    pub(crate) fn ca_file(&self) -> Option<Resolved<PathBuf>> {
        layer(
            &self.forge.ca_file,
            "HERO_USAGE_CA_FILE",
            &self.file.ca_file,
        )
    }

    fn listen(&self) -> Resolved<String> {
        layer(&self.shim.listen, "HERO_USAGE_LISTEN", &self.file.listen)
            .unwrap_or_else(|| Resolved::new(DEFAULT_LISTEN.to_string(), Source::Default))
    }

    /// The signing key file: flag, environment, config file, or the
    /// default path when a file is there; `None`: hour files go unsigned.
    pub(crate) fn signing_key(&self) -> Option<Resolved<PathBuf>> {
        layer(
            &self.signing.signing_key_file,
            "HERO_USAGE_SIGNING_KEY_FILE",
            &self.file.signing_key_file,
        )
        .or_else(|| {
            crate::signing::default_key_path()
                .filter(|p| std::fs::symlink_metadata(p).is_ok())
                .map(|p| Resolved::new(p, Source::Default))
        })
    }

    /// Where the Forgejo token comes from (never the token itself).
    pub(crate) fn token(&self) -> Option<Resolved<SecretSource>> {
        secret(
            &TOKEN,
            self.forge.token_file.as_deref(),
            self.file.token_file.as_deref(),
        )
    }

    /// Where the shim's admin secret comes from.
    pub(crate) fn admin_secret(&self) -> Option<Resolved<SecretSource>> {
        secret(
            &ADMIN_SECRET,
            self.shim.admin_secret_file.as_deref(),
            self.file.admin_secret_file.as_deref(),
        )
    }

    // ---- the validated values the use cases get ----

    /// The spool and the node name.
    pub fn common(&self) -> Result<Common> {
        let spool = self.spool_dir().ok_or_else(|| {
            fail(
                Kind::Config,
                "no spool: set --spool, HERO_USAGE_SPOOL or HOME",
            )
        })?;
        let node = self.node()?.value;
        crate::record::check_node_name(&node).map_err(|p| {
            fail(
                Kind::Config,
                format!("node name {p}; set --node or HERO_NODE_ID"),
            )
        })?;
        Ok(Common {
            spool: spool.value,
            node,
        })
    }

    /// The forge settings: URL and token are required (78 without).
    pub fn forge(&self) -> Result<ForgeSettings> {
        let url = self.forgejo_url().ok_or_else(|| {
            fail(
                Kind::Config,
                "no Forgejo URL: set --forgejo-url, HERO_USAGE_FORGEJO_URL or forgejo_url in the config file",
            )
        })?;
        refuse_control_in_url(&url.value)?;
        let token = self.read_token()?;
        let (owner, repo) = split_repo(&self.repo().value)?;
        let branch = self.branch().map(|b| b.value);
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
            url: url.value,
            token,
            owner,
            repo,
            branch,
            insecure_http: self.insecure_http().value,
            ca_file: self.ca_file().map(|c| absolute(c.value)),
            request_timeout: None,
        })
    }

    fn read_token(&self) -> Result<Secret> {
        let source = self.token().ok_or_else(|| {
            fail(
                Kind::Config,
                format!("no Forgejo token: set {}", SecretSource::ways(&TOKEN)),
            )
        })?;
        let token = source.value.read(TOKEN.what)?;
        check_token(token.expose()).map_err(|problem| {
            fail(
                Kind::Config,
                format!(
                    "the Forgejo token from {} {problem}; check it (a Forgejo token is \
                     40 hexadecimal characters)",
                    source.value.origin(&TOKEN)
                ),
            )
        })?;
        Ok(token)
    }

    /// The key that signs the hour files, loaded (78 when it cannot be
    /// used); `None` without one.
    pub fn signer(&self) -> Result<Option<crate::signing::Signer>> {
        self.signing_key()
            .map(|k| crate::signing::Signer::load(&k.value))
            .transpose()
    }

    /// The shim's listen address and admin secret (read once here, so that
    /// a missing or empty file stops the start).
    pub fn shim(&self) -> Result<ShimSettings> {
        let addr = listen_addr(&self.listen().value, self.shim.allow_remote)?;
        let source = self.admin_secret().ok_or_else(|| {
            fail(
                Kind::Config,
                format!(
                    "no admin secret: set {}; the shim does not start without one",
                    SecretSource::ways(&ADMIN_SECRET)
                ),
            )
        })?;
        source.value.read(ADMIN_SECRET.what)?;
        Ok(ShimSettings {
            addr,
            admin_secret: source.value,
        })
    }

    /// The warning for a token file that group or others can read.
    pub(crate) fn token_file_warning(&self) -> Option<String> {
        match self.token()?.value {
            SecretSource::File(path) => super::exposed_secret_warning(&path, "token"),
            SecretSource::Value(_) => None,
        }
    }

    // ---- the table ----

    /// Every spool and forge setting in force, with where it came from
    /// (never a secret): the same lookups the values come from.
    pub(crate) fn table(&self) -> Vec<Setting> {
        let shown = |p: &Path| p.display().to_string();
        let row = |name, r: Option<Resolved<String>>| match r {
            Some(r) => Setting {
                name,
                value: Some(r.value),
                source: r.source,
            },
            None => Setting {
                name,
                value: None,
                source: Source::Default,
            },
        };
        let path_row = |name, r: Option<Resolved<PathBuf>>| {
            row(name, r.map(|r| Resolved::new(shown(&r.value), r.source)))
        };
        let token = self
            .token()
            .map(|t| Resolved::new(t.value.describe(&TOKEN), t.source));
        let insecure = self.insecure_http();
        vec![
            Setting {
                source: flag_or_env(&self.spool.config, "HERO_USAGE_CONFIG")
                    .map_or(Source::Default, |c| c.source),
                ..path_row("config", self.config.clone())
            },
            path_row("spool", self.spool_dir()),
            row("node", self.node().ok()),
            row("forgejo_url", self.forgejo_url()),
            row("token", token),
            row("repo", Some(self.repo())),
            row("branch", self.branch()),
            path_row("ca_file", self.ca_file()),
            row(
                "insecure_http",
                Some(Resolved::new(insecure.value.to_string(), insecure.source)),
            ),
            path_row("signing_key_file", self.signing_key()),
        ]
    }
}

/// The one precedence chain of every secret: the flag's file, the
/// environment's value, the environment's file, the config file's file
/// (empty values count as not set). `None` when none is set.
fn secret(
    setting: &SecretSetting,
    flag: Option<&Path>,
    config: Option<&Path>,
) -> Option<Resolved<SecretSource>> {
    let file = |p: &Path| SecretSource::File(p.to_path_buf());
    if let Some(p) = flag.filter(|p| !p.as_os_str().is_empty()) {
        return Some(Resolved::new(file(p), Source::Flag));
    }
    if let Some(v) = SecretSource::from_env_value(setting.env_value) {
        return Some(Resolved::new(v, Source::Env));
    }
    if let Some(p) = std::env::var_os(setting.env_file).filter(|p| !p.is_empty()) {
        return Some(Resolved::new(file(Path::new(&p)), Source::Env));
    }
    config.map(|p| Resolved::new(file(p), Source::Config))
}

/// A path as the process found it, whatever directory it later runs in.
fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}

/// The host name, from the kernel (no libc needed).
pub(crate) fn host_name() -> Result<String> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .context("cannot tell the host name; set --node or HERO_NODE_ID")
        .map_err(|e| fail(Kind::Config, format!("{e:#}")))?;
    Ok(raw.trim().to_string())
}
