//! The clap argument structs: every flag shared by several binaries is
//! defined once here and flattened into each binary's parser; its doc
//! comment is its `--help` text. Only the faces (`cmd/`) and the resolver
//! read them.

use clap::Args;
use std::path::PathBuf;

/// `--spool`, `--config` and `--node`: every binary takes them.
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

/// The forge settings (push, audit, and the shim's push-now).
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
    /// Trust only the CA certificates (PEM) in FILE for the forge [default: the system's trust store]
    #[arg(long, value_name = "FILE", env = "HERO_USAGE_CA_FILE", value_parser = path_setting())]
    pub ca_file: Option<PathBuf>,
}

/// The shim's own settings.
#[derive(Args, Debug, Clone, Default)]
pub struct ShimArgs {
    /// Address to listen on, HOST:PORT (port 0 picks a free port) [default: 127.0.0.1:9920]
    #[arg(long, value_name = "ADDR", env = "HERO_USAGE_LISTEN")]
    pub listen: Option<String>,
    /// Allow a listen address that is not loopback
    #[arg(long)]
    pub allow_remote: bool,
    /// File holding the admin secret (or set HERO_ONBOARDING_ADMIN_SECRET_FILE / HERO_ONBOARDING_ADMIN_SECRET)
    #[arg(long, value_name = "FILE")]
    pub admin_secret_file: Option<PathBuf>,
}

/// `--signing-key-file` (push, and the shim's push-now).
#[derive(Args, Debug, Clone, Default)]
pub struct SigningArgs {
    /// OpenSSH ed25519 key that signs every hour file [default: $HOME/hero/cfg/hero_usage_signing_key if it exists; none: unsigned]
    #[arg(long, value_name = "FILE", env = "HERO_USAGE_SIGNING_KEY_FILE", value_parser = path_setting())]
    pub signing_key_file: Option<PathBuf>,
}

/// A path setting that may be given empty: clap's own path parser refuses
/// an empty value (exit 64), but an empty environment variable means unset.
fn path_setting() -> impl clap::builder::TypedValueParser<Value = PathBuf> {
    use clap::builder::TypedValueParser;
    clap::builder::OsStringValueParser::new().map(PathBuf::from)
}
