//! The command layer: one module per binary, each with its clap `Cli`, its
//! `BINARY` name, `run(Cli)` and the `main` its `src/bin/*.rs` calls. The
//! rest of the library never prints a binary's name.

pub mod audit;
pub mod push;
pub mod record;
pub mod shim;
pub mod status;

/// A binary's whole command line: its `Cli` and the shared `--completions`.
pub use crate::cli::command;
