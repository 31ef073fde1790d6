//! `hero_usage_shim`: the HTTP shim. Thin: flags, then `hero_usage::shim`.
//! See `man 1 hero_usage_shim`.

use clap::Parser;
use hero_usage::config::{ForgeArgs, SpoolArgs};
use hero_usage::shim::{self, BINARY, ShimArgs};

/// Minimal HTTP shim on loopback: record usage over HTTP, trigger a push,
/// health and status.
#[derive(Parser, Debug)]
#[command(name = "hero_usage_shim", version)]
struct Cli {
    #[command(flatten)]
    shim: ShimArgs,
    #[command(flatten)]
    spool: SpoolArgs,
    #[command(flatten)]
    forge: ForgeArgs,
}

fn main() {
    let cli: Cli = hero_usage::cli::parse(BINARY);
    hero_usage::error::main_with(BINARY, || shim::run(&cli.spool, &cli.forge, &cli.shim))
}
