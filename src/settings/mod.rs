//! Settings: flag > environment > config file > default (`man 1
//! hero_usage_push`, SETTINGS).
//!
//! - [`args`]: the clap argument structs the binaries flatten in (the faces
//!   only; use cases never see them);
//! - [`file`]: the config file;
//! - [`resolve`]: the one layered resolver, which yields every value with
//!   its source: the values the use cases get, and `--check`'s table;
//! - [`secret`]: secrets (the Forgejo token, the admin secret), resolved by
//!   the same chain and only ever from files or the environment;
//! - [`values`]: the rules a value must follow (branch, repository, token).
//!
//! Adding a setting: its flag in `args.rs`, its key in `file.rs`, its
//! lookup (one `layer` call) and its row in `resolve.rs`; then the docs.

pub mod args;
pub(crate) mod file;
pub(crate) mod resolve;
pub(crate) mod secret;
pub(crate) mod values;

pub use args::{ForgeArgs, ShimArgs, SigningArgs, SpoolArgs};
pub use resolve::{Common, ForgeSettings, Resolver, ShimSettings};
pub(crate) use resolve::{Resolved, Setting, Source};
pub(crate) use secret::{SecretSource, exposed_secret_warning};
pub(crate) use values::check_branch;

/// The billing repository when none is configured.
pub(crate) const DEFAULT_REPO: &str = "lhumina_code/hero_onboarding_billing";
/// The shim's listen address when none is configured.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:9920";
