//! `hero_usage_push`: the hourly job. Flags here, the job in [`crate::push`].
//! See `man 1 hero_usage_push`. `--check` is [`check`], `--print-schedule`
//! is [`schedule`].

mod check;
mod schedule;
mod systemd;

use crate::console::{err_line, out};
use crate::error::{Exit, kind_of};
use crate::push::{self, Outcome, PushOptions, PushSummary, RetryPolicy};
use crate::settings::{ForgeArgs, ForgeSettings, Resolver, SigningArgs, SpoolArgs};
use crate::signing;
use crate::spool::Spool;
use crate::text::one_line;
use anyhow::Result;
use clap::Parser;
use schedule::Scheduler;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

pub(crate) const BINARY: &str = "hero_usage_push";

/// Push pending usage records, bundled per UTC hour, to the billing repository.
#[derive(Parser, Debug)]
#[command(name = BINARY, version, after_help = "See man 1 hero_usage_push.")]
pub struct Cli {
    #[command(flatten)]
    pub spool: SpoolArgs,
    #[command(flatten)]
    pub forge: ForgeArgs,
    #[command(flatten)]
    pub signing: SigningArgs,
    /// Create the node's signing key if it is missing (mode 0600, never overwrites one); print its allowed_signers line
    #[arg(long, conflicts_with_all = ["print_schedule", "check", "dry_run", "print_public_key"])]
    pub init_signing_key: bool,
    /// Print the signing key's allowed_signers line (<node> namespaces="hero-usage" ssh-ed25519 ...)
    #[arg(long, conflicts_with_all = ["print_schedule", "check", "dry_run"])]
    pub print_public_key: bool,
    /// Accepted for schedulers configured with it; every run is one-shot
    #[arg(long)]
    pub once: bool,
    /// Read and print what a push would commit; change nothing anywhere
    #[arg(long)]
    pub dry_run: bool,
    /// Print the summary as one JSON object (also on errors)
    #[arg(long)]
    pub json: bool,
    /// At most N records per commit; a run commits batch after batch
    #[arg(long, value_name = "N", default_value_t = push::DEFAULT_MAX_RECORDS as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_records: u64,
    /// Request bodies of at most N bytes (a single larger file goes alone)
    #[arg(long, value_name = "N", default_value_t = push::DEFAULT_MAX_REQUEST_BYTES,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_request_bytes: u64,
    /// Start no new batch after N seconds of the run
    #[arg(long, value_name = "N", default_value_t = push::DEFAULT_MAX_SECONDS)]
    pub max_seconds: u64,
    /// Retry a lost race, a lost reply or a server error for N seconds, then exit 75
    #[arg(long, value_name = "N", default_value_t = push::DEFAULT_RETRY_SECONDS)]
    pub retry_seconds: u64,
    /// First sleep a delay in 0..SECONDS derived from the node name (the same every run)
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub splay: u64,
    /// Keep sent records (for duplicate detection) this many days, at most 36500
    #[arg(long, value_name = "N", default_value_t = push::DEFAULT_RETENTION_DAYS,
          value_parser = clap::value_parser!(u32).range(0..=push::MAX_RETENTION_DAYS as i64))]
    pub retention_days: u32,
    /// Forget pushed keys (the ledger) sent more than N days ago [default: never]
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u32).range(0..=push::MAX_RETENTION_DAYS as i64))]
    pub ledger_days: Option<u32>,
    /// Take the node name over from another spool that pushed it last (see man 7 hero_usage, MOVING A NODE)
    #[arg(long, conflicts_with_all = ["print_schedule", "check"])]
    pub adopt_node: bool,
    /// Print what a scheduler needs to run this job hourly, then exit
    #[arg(long, value_name = "SCHEDULER")]
    pub print_schedule: Option<Scheduler>,
    /// With --print-schedule hero_proc: the action's name
    #[arg(long, value_name = "NAME", default_value = schedule::ACTION_NAME, requires = "print_schedule")]
    pub action_name: String,
    /// With --print-schedule systemd: system units that run as this user (sandboxed)
    #[arg(long, value_name = "NAME", requires = "print_schedule")]
    pub service_user: Option<String>,
    /// With --print-schedule systemd: also a minutely timer writing hero_usage_status --prometheus to FILE
    #[arg(long, value_name = "FILE", requires = "print_schedule")]
    pub status_out: Option<std::path::PathBuf>,
    /// With --print-schedule: write the files into DIR and print how to install them
    #[arg(long, value_name = "DIR", requires = "print_schedule")]
    pub out: Option<std::path::PathBuf>,
    /// Print the effective settings with their sources and probe the forge; change nothing
    #[arg(long, conflicts_with_all = ["print_schedule", "dry_run"])]
    pub check: bool,
    /// Print only on failure (for cron, which mails any output)
    #[arg(long)]
    pub quiet: bool,
}

/// The binary's `main`.
pub fn main() -> ExitCode {
    crate::cli::main_with(BINARY, || {
        let cli: Cli = crate::cli::parse(BINARY);
        let json = cli.json;
        run(cli).or_else(|err| if json { failed_json(&err) } else { Err(err) })
    })
}

/// With `--json` a run that ends early still prints one object, with its
/// exit code and error (the error line goes to stderr as always).
fn failed_json(err: &anyhow::Error) -> Result<Exit> {
    let exit = crate::cli::report(BINARY, err);
    let summary = PushSummary {
        outcome: Outcome::Failed,
        failure: Some(kind_of(err)),
        error: Some(format!("{err:#}")),
        ..Default::default()
    };
    out(&format!("{}\n", serde_json::to_string(&summary)?))?;
    Ok(exit)
}

/// One push run (or a printed schedule); returns how it ends.
pub(crate) fn run(cli: Cli) -> Result<Exit> {
    let settings = Resolver::load(&cli.spool, &cli.forge)?.with_signing(&cli.signing);
    let common = settings.common()?;
    if let Some(scheduler) = cli.print_schedule {
        let request = schedule::Request {
            scheduler,
            action_name: &cli.action_name,
            service_user: cli.service_user.as_deref(),
            status_out: cli.status_out.as_deref(),
        };
        let prepared = schedule::prepare(&request, &settings, &common)?;
        let (text, notes) = schedule::print(scheduler, &prepared, cli.out.as_deref())?;
        out(&text)?;
        // The notes say what the scheduler will lack: not news to drop.
        for n in &notes {
            err_line(&format!("{BINARY}: {n}"))?;
        }
        return Ok(Exit::Ok);
    }
    if cli.init_signing_key || cli.print_public_key {
        return public_key(&cli, &settings, &common.node);
    }
    if cli.check {
        return check::run(&settings, &common);
    }
    if let Some(w) = settings.token_file_warning() {
        let _ = err_line(&format!("{BINARY}: warning: {w}"));
    }
    let forge = settings.forge()?;
    let signer = settings.signer()?;
    let summary = if cli.dry_run && !common.spool.exists() {
        // A dry run creates nothing, not even the spool: nothing to push.
        PushSummary {
            outcome: Outcome::DryRun,
            node: common.node.clone(),
            ..Default::default()
        }
    } else {
        if !cli.dry_run {
            splay(&common.node, cli.splay, cli.quiet);
        }
        let mut opts = options(&cli, &common.node, forge);
        opts.signer = signer;
        // Retries are told as they happen, but not by a quiet run: cron
        // mails whatever it prints. They stay in the summary's notes.
        let quiet = cli.quiet;
        // Progress only for a person watching: a terminal, not a log.
        let watched = !quiet && std::io::stderr().is_terminal();
        let log = |event: push::Event| match event {
            push::Event::Note(note) if !quiet => {
                let _ = err_line(&format!("{BINARY}: {}", one_line(note)));
            }
            push::Event::Progress {
                batches,
                pushed,
                commits,
            } if watched => {
                let _ = err_line(&format!(
                    "{BINARY}: batch {batches} done: {pushed} records pushed in {commits} commit(s) so far"
                ));
            }
            _ => {}
        };
        // A dry run creates nothing in the spool, not even its sub-directories.
        let spool = if cli.dry_run {
            Spool::open_read_only(&common.spool)?
        } else {
            Spool::open(&common.spool)?
        };
        push::run_logged(&spool, &opts, &log)?
    };
    if cli.quiet && summary.exit() == Exit::Ok {
        // Nothing to report: cron mails only what a failed run printed.
    } else if cli.json {
        out(&format!("{}\n", serde_json::to_string(&summary)?))?;
    } else {
        out(&summary.text())?;
    }
    report(&summary);
    Ok(summary.exit())
}

/// `--splay`: sleep this node's delay, saying how long and why first (a
/// silent wait of minutes looks like a hang), unless `--quiet`.
fn splay(node: &str, splay: u64, quiet: bool) {
    let delay = push::splay_delay(node, splay);
    if delay.is_zero() {
        return;
    }
    if !quiet {
        let _ = err_line(&format!(
            "{BINARY}: waiting {:.1} s before pushing (--splay {splay}: node {node}'s place in \
             the window, the same every run, so that a fleet started at once does not commit \
             at once)",
            delay.as_secs_f64()
        ));
    }
    std::thread::sleep(delay);
}

/// `--init-signing-key` (create the key unless it exists) and
/// `--print-public-key`: the allowed_signers line on stdout.
fn public_key(cli: &Cli, settings: &Resolver, node: &str) -> Result<Exit> {
    let located = settings.signing_key().map(|k| k.value);
    let signer = if cli.init_signing_key {
        let path = match located {
            Some(p) => p,
            None => signing::default_key_path().ok_or_else(|| {
                crate::error::fail(
                    crate::error::Kind::Config,
                    "no place for the signing key: set --signing-key-file, HERO_USAGE_SIGNING_KEY_FILE or HOME",
                )
            })?,
        };
        let (signer, created) = signing::init_key(&path, node)?;
        err_line(&format!(
            "{BINARY}: {} {}; put this line into the billing side's allowed_signers file:",
            if created {
                "created the signing key (mode 0600)"
            } else {
                "kept the existing signing key"
            },
            path.display()
        ))?;
        signer
    } else {
        match located {
            Some(p) => signing::Signer::load(&p)?,
            None => {
                return Err(crate::error::fail(
                    crate::error::Kind::Config,
                    "no signing key: create one with --init-signing-key, or set --signing-key-file, HERO_USAGE_SIGNING_KEY_FILE or signing_key_file in the config file",
                ));
            }
        }
    };
    out(&format!("{}\n", signer.allowed_signers_line(node)))?;
    Ok(Exit::Ok)
}

fn options(cli: &Cli, node: &str, forge: ForgeSettings) -> PushOptions {
    PushOptions {
        dry_run: cli.dry_run,
        max_records: usize::try_from(cli.max_records).unwrap_or(usize::MAX),
        max_request_bytes: usize::try_from(cli.max_request_bytes).unwrap_or(usize::MAX),
        max_seconds: Duration::from_secs(cli.max_seconds),
        retry: RetryPolicy::for_window(Duration::from_secs(cli.retry_seconds)),
        retention_days: Some(cli.retention_days),
        ledger_days: cli.ledger_days,
        adopt_node: cli.adopt_node,
        ..PushOptions::new(node, forge)
    }
}

/// What was set aside, and the error, on stderr. A stderr that cannot take
/// them changes no exit code: the push's own code is the news.
fn report(summary: &PushSummary) {
    for q in &summary.quarantined {
        let _ = err_line(&format!(
            "{BINARY}: quarantined {}: {}",
            q.what,
            one_line(&q.reason)
        ));
    }
    for u in &summary.unreadable_hours {
        let _ = err_line(&format!(
            "{BINARY}: left pending {}: {}",
            u.what,
            one_line(&u.reason)
        ));
    }
    if let Some(e) = &summary.error {
        let _ = err_line(&format!("{BINARY}: error: {}", one_line(e)));
    }
}
