//! `hero_usage_status`: what the spool holds and how the last push went.
//! See `man 1 hero_usage_status`.

use crate::console::{err_line, out};
use crate::error::{Exit, Kind, fail};
use crate::settings::{ForgeArgs, Resolver, SpoolArgs};
use crate::status::StatusReport;
use crate::text::{escape_controls, one_line};
use anyhow::Result;
use clap::Parser;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
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
    /// Write the report to FILE atomically (mode 0644) instead of stdout
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
}

/// The binary's `main`.
pub fn main() -> ExitCode {
    crate::cli::main_with(BINARY, || run(crate::cli::parse(BINARY)))
}

/// Print the report; exit 1 when `--max-age` is exceeded.
pub(crate) fn run(cli: Cli) -> Result<Exit> {
    let common = Resolver::load(&cli.spool, &ForgeArgs::default())?.common()?;
    let report = StatusReport::gather(&common.spool, &common.node, chrono::Utc::now())?;
    let text = if cli.json {
        format!("{}\n", serde_json::to_string(&report)?)
    } else if cli.prometheus {
        report.prometheus()
    } else {
        report.text()
    };
    match &cli.out {
        Some(file) => write_atomically(file, &text)?,
        None => out(&text)?,
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

/// Write `text` to `file` as a whole or not at all: a temporary file beside
/// it (a dot name, which node_exporter's `*.prom` glob never reads), synced,
/// then renamed over it. Mode 0644 whatever the umask: the metrics are no
/// secret, and node_exporter runs as another user.
fn write_atomically(file: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let cannot = |e: std::io::Error| {
        fail(
            Kind::Output,
            format!(
                "cannot write {}: {e}; the report was not written (can this user write its directory?)",
                escape_controls(&file.display().to_string())
            ),
        )
    };
    let name = file
        .file_name()
        .ok_or_else(|| fail(Kind::Usage, "--out needs a file name, not a directory"))?;
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(cannot)
}
