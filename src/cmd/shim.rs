//! `hero_usage_shim`: flags here, the server in [`crate::shim`].
//! See `man 1 hero_usage_shim`.

use crate::error::Exit;
use crate::settings::{ForgeArgs, Resolver, ShimArgs, SigningArgs, SpoolArgs};
use crate::shim;
use anyhow::Result;
use clap::Parser;
use std::process::ExitCode;

pub(crate) use crate::shim::BINARY;

/// Minimal HTTP shim on loopback: record usage over HTTP, trigger a push,
/// health and status.
#[derive(Parser, Debug)]
#[command(name = BINARY, version, after_help = "See man 1 hero_usage_shim.")]
pub struct Cli {
    #[command(flatten)]
    pub shim: ShimArgs,
    #[command(flatten)]
    pub spool: SpoolArgs,
    #[command(flatten)]
    pub forge: ForgeArgs,
    #[command(flatten)]
    pub signing: SigningArgs,
}

/// The binary's `main`.
pub fn main() -> ExitCode {
    crate::cli::main_with(BINARY, || run(crate::cli::parse(BINARY)))
}

/// Serve until SIGTERM or SIGINT.
pub(crate) fn run(cli: Cli) -> Result<Exit> {
    shim::run(
        &Resolver::load(&cli.spool, &cli.forge)?
            .with_shim(&cli.shim)
            .with_signing(&cli.signing),
    )?;
    Ok(Exit::Ok)
}
