//! `hero_usage_status`: what the spool holds and how the last push went.

use anyhow::Result;
use clap::Parser;
use hero_usage::cli::out;
use hero_usage::config::{Common, SpoolArgs};
use hero_usage::status::StatusReport;

const BINARY: &str = "hero_usage_status";

/// Show what the spool holds and how the last push went.
#[derive(Parser, Debug)]
#[command(name = BINARY, version)]
struct Cli {
    #[command(flatten)]
    spool: SpoolArgs,
    /// Print one JSON object
    #[arg(long, conflicts_with = "prometheus")]
    json: bool,
    /// Print Prometheus text exposition (for node_exporter's textfile collector)
    #[arg(long)]
    prometheus: bool,
    /// Exit 1 when the oldest pending record or incoming drop has waited longer than SECONDS
    #[arg(long, value_name = "SECONDS")]
    max_age: Option<u64>,
}

fn run() -> Result<i32> {
    let cli = hero_usage::cli::parse::<Cli>(BINARY);
    let common = Common::resolve(&cli.spool)?;
    let report = StatusReport::gather(&common.spool, &common.node, chrono::Utc::now())?;
    if cli.json {
        out(&format!("{}\n", serde_json::to_string(&report)?))?;
    } else if cli.prometheus {
        out(&report.prometheus())?;
    } else {
        out(&report.text())?;
    }
    if let Some(why) = &report.last_push_unreadable {
        eprintln!("{BINARY}: cannot read the last push's outcome: {why}");
    }
    match cli.max_age {
        Some(max) if report.too_old(max) => {
            eprintln!(
                "{BINARY}: the oldest pending record or incoming drop has waited {} s, more than {max} s: check hero_usage_push",
                report.oldest_pending_age_seconds.unwrap_or(0)
            );
            Ok(1)
        }
        _ => Ok(0),
    }
}

fn main() {
    hero_usage::error::main_with(BINARY, run)
}
