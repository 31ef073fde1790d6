//! `hero_usage_audit`: read the billing repository, prove it holds what the
//! contract says, and sum the totals for billing. Flags here, the audit in
//! [`crate::audit`]. See `man 1 hero_usage_audit`.

use crate::audit::filter::Filter;
use crate::audit::totals::Period;
use crate::audit::{self, Options, Source};
use crate::console::{err_line, out, output_error};
use crate::error::{Exit, Kind, fail};
use crate::layout::parse_hour;
use crate::record::{HourBucket, check_node_name};
use crate::settings::{ForgeArgs, Resolver, SpoolArgs};
use anyhow::Result;
use clap::Parser;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

pub(crate) const BINARY: &str = "hero_usage_audit";

/// Audit the billing repository: every file canonical and in place, no key twice, history append-only; totals for billing.
#[derive(Parser, Debug)]
#[command(name = BINARY, version)]
pub struct Cli {
    /// A clone of the billing repository, bare or not (reads history too); without it the forge's API is read (heads only)
    #[arg(long, value_name = "PATH")]
    pub git_dir: Option<PathBuf>,
    /// The default branch, when the clone cannot tell (a clone without origin/HEAD, a mirror whose HEAD is on a node's branch)
    #[arg(long, value_name = "NAME")]
    pub default_branch: Option<String>,
    #[command(flatten)]
    pub forge: ForgeArgs,
    /// Config file (TOML) for the forge settings [default: $HOME/hero/cfg/hero_usage.toml if it exists]
    #[arg(long, value_name = "FILE", env = "HERO_USAGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Accepted like every binary's; the audit reads no spool
    #[arg(long, value_name = "DIR", hide = true)]
    pub spool: Option<PathBuf>,
    /// Audit only this node (repeatable) [default: every node]
    #[arg(long = "node", value_name = "NAME", value_parser = node_name)]
    pub nodes: Vec<String>,
    /// First hour to audit, YYYY-MM-DD-HH (UTC, inclusive)
    #[arg(long, value_name = "HOUR", value_parser = hour)]
    pub from: Option<HourBucket>,
    /// Last hour to audit, YYYY-MM-DD-HH (UTC, inclusive)
    #[arg(long, value_name = "HOUR", value_parser = hour)]
    pub to: Option<HourBucket>,
    /// Skip the history walk: heads and totals only (a quicker check)
    #[arg(long)]
    pub no_history: bool,
    /// Remember in DIR what a clean run proved (branch tips, keys per node); later runs read only what is newer, and a branch rewritten or deleted since is a violation
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// OpenSSH allowed_signers file: every hour file must carry a valid signature by its node (the principal) in namespace hero-usage
    #[arg(long, value_name = "FILE")]
    pub allowed_signers: Option<PathBuf>,
    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
    /// Sum amount_cents and count records per user_sid, resource_kind and period
    #[arg(long, value_name = "PERIOD")]
    pub totals: Option<Period>,
    /// Also write the totals as CSV to FILE (needs --totals)
    #[arg(long, value_name = "FILE", requires = "totals")]
    pub csv: Option<PathBuf>,
}

fn node_name(s: &str) -> Result<String, String> {
    check_node_name(s).map(|()| s.to_string())
}

fn hour(s: &str) -> Result<HourBucket, String> {
    parse_hour(s)
        .ok_or_else(|| "must be an hour as YYYY-MM-DD-HH in UTC, e.g. 2026-11-26-16".to_string())
}

/// `--state` remembers what the whole repository's history proved: not
/// with a part of it, nor from the API (no history there).
fn refuse_partial_state(cli: &Cli) -> Result<()> {
    let partial = [
        (
            cli.git_dir.is_none(),
            "without --git-dir (the API source reads no history)",
        ),
        (!cli.nodes.is_empty(), "with --node"),
        (
            cli.from.is_some() || cli.to.is_some(),
            "with --from or --to",
        ),
        (cli.no_history, "with --no-history"),
    ];
    match partial.iter().find(|(bad, _)| *bad) {
        Some((_, what)) => Err(fail(
            Kind::Usage,
            format!("--state remembers what the whole history proved, so it cannot be used {what}"),
        )),
        None => Ok(()),
    }
}

/// The binary's `main`.
pub fn main() -> ExitCode {
    crate::cli::main_with(BINARY, || run(crate::cli::parse(BINARY)))
}

/// Audit; exit 0 when clean, 65 when anything was found.
pub(crate) fn run(cli: Cli) -> Result<Exit> {
    if let (Some(f), Some(t)) = (cli.from, cli.to)
        && f > t
    {
        return Err(fail(
            Kind::Usage,
            format!("--from {f} lies after --to {t}; swap them"),
        ));
    }
    if cli.state.is_some() {
        refuse_partial_state(&cli)?;
    }
    let source = match &cli.git_dir {
        Some(path) => Source::Git(path.clone()),
        None => {
            let config = SpoolArgs {
                config: cli.config.clone(),
                ..SpoolArgs::default()
            };
            Source::Forge(Resolver::load(&config, &cli.forge)?.forge()?)
        }
    };
    let opts = Options {
        source,
        filter: Filter {
            nodes: cli.nodes.clone(),
            from: cli.from,
            to: cli.to,
        },
        period: cli.totals,
        history: !cli.no_history,
        now: chrono::Utc::now().naive_utc(),
        default_branch: cli.default_branch.clone(),
        state: cli.state.clone(),
        allowed_signers: cli
            .allowed_signers
            .as_deref()
            .map(crate::signing::AllowedSigners::load)
            .transpose()?,
        progress: if std::io::stderr().is_terminal() {
            |what| {
                let _ = err_line(&format!("{BINARY}: {}", crate::text::one_line(what)));
            }
        } else {
            |_| {}
        },
    };
    let report = audit::run(&opts)?;
    if let (Some(path), Some(t)) = (&cli.csv, &report.totals) {
        std::fs::write(path, t.csv())
            .map_err(|e| output_error(&format!("the totals file {}", path.display()), &e))?;
    }
    if cli.json {
        out(&format!("{}\n", report.json()?))?;
    } else {
        out(&report.text())?;
    }
    if report.clean() {
        return Ok(Exit::Ok);
    }
    // The report went to stdout; a stderr that cannot take this line
    // changes no exit code.
    let _ = err_line(&format!(
        "{BINARY}: violations found: {}",
        report.findings.summary()
    ));
    Ok(Exit::Failed(Kind::Data))
}
