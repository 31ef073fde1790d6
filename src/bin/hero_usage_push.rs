//! `hero_usage_push`: the hourly job. Thin: flags, then `hero_usage::push`.

use anyhow::Result;
use clap::Parser;
use hero_usage::cli::out;
use hero_usage::config::{Common, ConfigFile, ForgeArgs, ForgeSettings, SpoolArgs};
use hero_usage::error::one_line;
use hero_usage::push::{self, PushOptions, PushSummary};
use hero_usage::schedule::{self, Scheduler};
use hero_usage::spool::Spool;

const BINARY: &str = "hero_usage_push";

/// Push pending usage records, bundled per UTC hour, to the billing repository in one commit.
#[derive(Parser, Debug)]
#[command(name = BINARY, version)]
struct Cli {
    #[command(flatten)]
    spool: SpoolArgs,
    #[command(flatten)]
    forge: ForgeArgs,
    /// Accepted for schedulers configured with it; every run is one-shot
    #[arg(long)]
    once: bool,
    /// Read and print what a push would commit; change nothing anywhere
    #[arg(long)]
    dry_run: bool,
    /// Print the summary as one JSON object
    #[arg(long)]
    json: bool,
    /// Push at most N pending records this run, oldest hours first (bounds memory)
    #[arg(long, value_name = "N", default_value_t = push::DEFAULT_MAX_RECORDS as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_records: u64,
    /// Keep sent records (for duplicate detection) this many days, at most 36500
    #[arg(long, value_name = "N", default_value_t = push::DEFAULT_RETENTION_DAYS,
          value_parser = clap::value_parser!(u32).range(0..=push::MAX_RETENTION_DAYS as i64))]
    retention_days: u32,
    /// Print what a scheduler needs to run this job hourly, then exit
    #[arg(long, value_name = "SCHEDULER")]
    print_schedule: Option<Scheduler>,
}

fn run() -> Result<i32> {
    let cli = hero_usage::cli::parse::<Cli>(BINARY);
    let common = Common::resolve(&cli.spool)?;
    if let Some(scheduler) = cli.print_schedule {
        // The scheduler's environment is not this shell's: name the spool,
        // the node and the config file (none of them secret) on the line.
        let mut command = vec![
            std::env::current_exe()?.display().to_string(),
            "--once".into(),
            "--spool".into(),
            common.spool.display().to_string(),
            "--node".into(),
            common.node.clone(),
        ];
        if let Some(config) =
            ConfigFile::locate(hero_usage::config::given(&cli.spool.config).as_deref())
        {
            command.extend(["--config".into(), config.display().to_string()]);
        }
        out(&schedule::render(scheduler, &common.node, &command))?;
        return Ok(0);
    }
    let forge = ForgeSettings::resolve(&cli.forge, &common.file)?;
    let summary = if cli.dry_run && !common.spool.exists() {
        // A dry run creates nothing, not even the spool: nothing to push.
        PushSummary {
            outcome: "dry-run".into(),
            node: common.node.clone(),
            ..Default::default()
        }
    } else {
        push::run(
            &Spool::open(&common.spool)?,
            &PushOptions {
                node: common.node.clone(),
                dry_run: cli.dry_run,
                max_records: usize::try_from(cli.max_records).unwrap_or(usize::MAX),
                retention_days: Some(cli.retention_days),
                forge,
            },
        )?
    };
    if cli.json {
        out(&format!("{}\n", serde_json::to_string(&summary)?))?;
    } else {
        let mut text = format!("{}\n", summary.line());
        if cli.dry_run {
            for f in &summary.files {
                text.push_str(&format!(
                    "would {} {}: {} new, {} in all\n",
                    f.operation, f.path, f.new_records, f.total_records
                ));
            }
        }
        out(&text)?;
    }
    for q in &summary.quarantined {
        eprintln!("{BINARY}: quarantined {}: {}", q.what, one_line(&q.reason));
    }
    for u in &summary.unreadable_hours {
        eprintln!("{BINARY}: left pending {}: {}", u.what, one_line(&u.reason));
    }
    if let Some(e) = &summary.error {
        eprintln!("{BINARY}: error: {}", one_line(e));
    }
    Ok(summary.exit_code)
}

fn main() {
    hero_usage::error::main_with(BINARY, run)
}
