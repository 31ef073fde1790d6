//! hero_usage: per-node usage metering for Hero nodes.
//!
//! Records are validated ([`record`]), dropped into a durable local spool
//! ([`spool`]), and pushed hourly ([`push`]) as canonical OTOML batch files
//! ([`otoml`]) to a Forgejo billing repository ([`forgejo`]). The arrows go one
//! way: record and otoml know no files or network, the spool knows no network,
//! the client knows no spool, and only push joins them.

pub(crate) mod audit;
pub(crate) mod cli;
pub mod cmd;
pub(crate) mod console;
pub mod error;
pub(crate) mod failpoint;
pub mod forgejo;
pub(crate) mod fsx;
pub mod layout;
pub mod otoml;
pub(crate) mod outcome;
#[doc(hidden)]
pub mod props;
pub mod push;
pub mod record;
pub mod recording;
pub mod secret;
pub mod settings;
pub(crate) mod shim;
pub mod signing;
pub mod spool;
pub(crate) mod status;
pub(crate) mod text;
pub mod trailer;
pub(crate) mod users;
