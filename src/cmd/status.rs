//! `hero_usage_status`: what the spool holds and how the last push went.
//! See `man 1 hero_usage_status`.

use crate::console::{err_line, out};
use crate::error::Exit;
use crate::settings::{ForgeArgs, Resolver, SpoolArgs};
use crate::status::StatusReport;
use crate::text::one_line;
use anyhow::Result;
use clap::Parser;
use std::process::ExitCode;

pub(crate) const BINARY: &str = "hero_usage_status";

/// Show what the spool holds and how the last push went.
#[derive(Parser, Debug)]
#[command(name = BINARY, version, after_help = "See man 1 hero_usage_status.")]
pub struct Cli {
    #[command(flatten)]
    pub spool: SpoolArgs,
    /// Print one JSON object
    #[arg(long, conflicts_with = "prometheus")]
    pub json: bool,
    /// Print Prometheus text exposition (for node_exporter's textfile collector)
    #[arg(long)]
    pub prometheus: bool,
    /// Exit 1 when the oldest pending record or incoming drop has waited longer than SECONDS
    #[arg(long, value_name = "SECONDS")]
    pub max_age: Option<u64>,
}

/// The binary's `main`.
pub fn main() -> ExitCode {
    crate::cli::main_with(BINARY, || run(crate::cli::parse(BINARY)))
}

/// Print the report; exit 1 when `--max-age` is exceeded.
pub(crate) fn run(cli: Cli) -> Result<Exit> {
    let common = Resolver::load(&cli.spool, &ForgeArgs::default())?.common()?;
    let report = StatusReport::gather(&common.spool, &common.node, chrono::Utc::now())?;
    if cli.json {
        out(&format!("{}\n", serde_json::to_string(&report)?))?;
    } else if cli.prometheus {
        out(&report.prometheus())?;
    } else {
        out(&report.text())?;
    }
    // A warning that stderr cannot take changes no exit code: the report
    // itself went to stdout.
    if let Some(why) = &report.last_push_unreadable {
        let _ = err_line(&format!(
            "{BINARY}: cannot read the last push's outcome: {}",
            one_line(why)
        ));
    }
    match cli.max_age {
        Some(max) if report.too_old(max) => {
            let _ = err_line(&format!(
                "{BINARY}: the oldest pending record or incoming drop has waited {} s, more than {max} s: check hero_usage_push",
                report.oldest_pending_age_seconds.unwrap_or(0)
            ));
            Ok(Exit::Stale)
        }
        _ => Ok(Exit::Ok),
    }
}
