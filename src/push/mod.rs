//! The push job (man 1 hero_usage_push, DESCRIPTION): the only module that joins the
//! spool and the forge. One run: lock, ingest, then drain the spool batch
//! after batch ([`drain`]): group by hour, merge every touched hour file with
//! what the billing repository holds ([`merge`]), commit the changed files in
//! as few commits as the request size allows, and only then mark the records
//! sent. Retries follow a [`RetryPolicy`]; the outcome goes to
//! [`crate::outcome`].
//!
//! Exactly once: the billing repository is the source of truth. A record is
//! marked sent only after a commit that holds it succeeded, and a record found
//! in the remote file with identical fields is never committed again, so a
//! crash or a lost reply between commit and marking heals on the next run.

mod branch;
mod drain;
pub mod merge;
mod retry;

pub use crate::outcome::{FilePlan, OUTCOME_FILE, Outcome, Problem, PushSummary};
pub use retry::{
    DEFAULT_RETRY_SECONDS, PUSH_NOW_RETRY_SECONDS, RetryPolicy, TEST_WAITS_ENV, splay_delay,
};

use crate::error::{Kind, fail, kind_of};
use crate::failpoint::failpoint;
use crate::forgejo::{ForgejoClient, forge_err};
use crate::outcome;
use crate::record::UsageRecord;
use crate::settings::ForgeSettings;
use crate::spool::Spool;
use anyhow::Result;
use chrono::Utc;
use std::time::{Duration, Instant};

/// Records one commit holds at most unless told otherwise (`--max-records`):
/// bounds a run's memory (under 1 KiB a record at its peak).
pub const DEFAULT_MAX_RECORDS: usize = 100_000;
/// Largest request body unless told otherwise (`--max-request-bytes`).
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 8 * 1024 * 1024;
/// How long a run drains the spool unless told otherwise (`--max-seconds`).
pub const DEFAULT_MAX_SECONDS: u64 = 1800;
/// Days a sent record stays known locally by default.
pub const DEFAULT_RETENTION_DAYS: u32 = 35;
/// The longest retention window accepted (a hundred years): longer ones
/// would overflow the date arithmetic and mean "for ever" anyway.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// What one run is asked to do.
#[derive(Debug, Clone)]
pub struct PushOptions {
    pub node: String,
    pub dry_run: bool,
    /// At most this many records per commit (and per batch read from the spool).
    pub max_records: usize,
    /// Request bodies stay at most this large; a single larger file goes alone.
    pub max_request_bytes: usize,
    /// Start no new batch after this long.
    pub max_seconds: Duration,
    pub retry: RetryPolicy,
    /// Prune sent records older than this many days; `None` prunes nothing
    /// (a push-now through the shim leaves pruning to the hourly job, whose
    /// window it cannot know).
    pub retention_days: Option<u32>,
    /// Forget ledgered keys sent more than this many days ago; `None`: never.
    pub ledger_days: Option<u32>,
    /// Take the node name over from another spool that pushed it last
    /// (`--adopt-node`; man 1 hero_usage_push, ONE NODE, ONE SPOOL).
    pub adopt_node: bool,
    pub forge: ForgeSettings,
    /// Signs every hour file written (man 1 hero_usage_push, SIGNED HOUR
    /// FILES); `None`:
    /// hour files go unsigned.
    pub signer: Option<crate::signing::Signer>,
}

impl PushOptions {
    /// The shipped defaults for `node` and `forge`.
    pub fn new(node: &str, forge: ForgeSettings) -> PushOptions {
        PushOptions {
            node: node.to_string(),
            dry_run: false,
            max_records: DEFAULT_MAX_RECORDS,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES as usize,
            max_seconds: Duration::from_secs(DEFAULT_MAX_SECONDS),
            retry: RetryPolicy::for_window(Duration::from_secs(DEFAULT_RETRY_SECONDS)),
            retention_days: Some(DEFAULT_RETENTION_DAYS),
            ledger_days: None,
            adopt_node: false,
            forge,
            signer: None,
        }
    }
}

/// What a run tells while it runs.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A retry, a stop: kept in the summary's notes too.
    Note(&'a str),
    /// A batch was committed: the run's totals so far.
    Progress {
        batches: usize,
        pushed: usize,
        commits: usize,
    },
}

/// Where a run tells what it is doing while it does it: the binary prints
/// it with its name, the shim keeps the notes in the summary only.
pub type Log<'a> = &'a dyn Fn(Event<'_>);

/// Run one push, telling nobody along the way (the notes are in the summary).
pub fn run(spool: &Spool, opts: &PushOptions) -> Result<PushSummary> {
    run_logged(spool, opts, &|_| {})
}

/// Run one push. Errors that end the run before it could push come back as
/// `Err` with their kind; everything else is in the summary (whose
/// `exit_code` is the run's).
pub fn run_logged(spool: &Spool, opts: &PushOptions, log: Log) -> Result<PushSummary> {
    let started = Instant::now();
    let start_time = Utc::now();
    let mut summary = PushSummary {
        node: opts.node.clone(),
        started_at: start_time.format(crate::record::TIME_FORMAT).to_string(),
        ..Default::default()
    };
    spool.bind_node_unless_dry(&opts.node, opts.dry_run)?;
    let spool_id = if opts.dry_run {
        spool.existing_spool_id()?
    } else {
        Some(spool.spool_id()?)
    };
    // Bad settings are configuration errors even when there is nothing to push.
    let branch = branch::resolve(opts.forge.branch.as_deref(), &opts.node)?;
    let client = ForgejoClient::new(opts.forge.client_config()).map_err(forge_err)?;

    // A dry run changes nothing, not even by creating the lock file: it
    // only reads, and reading tolerates records marked sent meanwhile.
    let _push_lock = if opts.dry_run {
        None
    } else {
        let Some(lock) = spool.try_lock_push()? else {
            summary.outcome = Outcome::Locked;
            summary.pending_after = spool.pending_count()?;
            return Ok(finish(summary, started));
        };
        Some(lock)
    };
    // An error while ingesting (a full disk, the writers' lock busy past
    // its wait) leaves the drops in incoming/ for a later run: what is
    // pending is pushed all the same, and the run fails with that error
    // (like a drop held back by a damaged ledger shard).
    let previewed = ingest(spool, opts, start_time, &mut summary).unwrap_or_else(|e| {
        late_error(&mut summary, &e);
        Vec::new()
    });
    let ctx = drain::Ctx {
        spool,
        opts,
        client: &client,
        branch,
        per_node: branch::is_per_node(opts.forge.branch.as_deref()),
        log,
        started,
        previewed,
        spool_id,
    };
    if let Err(err) = drain::drain(&ctx, &mut summary) {
        // The error that ended the run decides the exit code.
        summary.outcome = Outcome::Failed;
        late_error(&mut summary, &err);
        summary.failure = Some(kind_of(&err));
    }
    Ok(close(spool, opts, summary, started))
}

/// Ingest `incoming/`, or in a dry run tell what ingesting would do and
/// return the records it would add (the dry run plans them with the
/// pending ones): either way the summary counts drops alike.
fn ingest(
    spool: &Spool,
    opts: &PushOptions,
    now: chrono::DateTime<Utc>,
    summary: &mut PushSummary,
) -> Result<Vec<UsageRecord>> {
    let (previewed, report) = if opts.dry_run {
        spool.preview_incoming(&opts.node, now)?
    } else {
        (Vec::new(), spool.ingest_incoming(&opts.node, now)?)
    };
    summary.ingested = report.ingested;
    summary.ingest_duplicates = report.duplicates;
    summary.quarantined.extend(
        report
            .quarantined
            .into_iter()
            .map(|(what, reason)| Problem {
                what: format!("incoming/{what}"),
                reason,
            }),
    );
    // A good drop whose key cannot be checked (a damaged ledger shard or
    // stored record)
    // waits in incoming/; the rest goes on, and the run fails (73).
    let held = report.held_back.len();
    summary
        .unreadable_hours
        .extend(report.held_back.into_iter().map(|(what, reason)| Problem {
            what: format!("incoming/{what}"),
            reason,
        }));
    failpoint("push-after-ingest");
    if held > 0 {
        summary.failure = Some(Kind::CantCreate);
        summary.error = Some(format!(
            "{held} drop(s) left in incoming/: their keys cannot be checked against a damaged ledger file or stored record (see above)"
        ));
    }
    Ok(previewed)
}

/// After the commits: prune, count, pick the exit code and write the
/// outcome. Whatever fails here is reported in the summary, which is still
/// printed: the commits happened.
fn close(
    spool: &Spool,
    opts: &PushOptions,
    mut summary: PushSummary,
    started: Instant,
) -> PushSummary {
    if let Some(days) = opts.retention_days.filter(|_| !opts.dry_run) {
        let horizon = Utc::now() - chrono::Duration::days(i64::from(days));
        match spool.prune_sent(horizon, opts.ledger_days) {
            Ok(report) => {
                summary.pruned = report.pruned;
                summary.quarantined.extend(
                    report
                        .quarantined
                        .into_iter()
                        .map(|(what, reason)| Problem { what, reason }),
                );
                if !report.held_back.is_empty() {
                    let held = fail(Kind::CantCreate, report.held_back.join("; "));
                    late_error(&mut summary, &held);
                }
            }
            Err(e) => late_error(&mut summary, &e),
        }
    }
    match spool.pending_count() {
        Ok(n) => summary.pending_after = n,
        Err(e) => late_error(&mut summary, &e),
    }
    if summary.failure.is_none()
        && !(summary.quarantined.is_empty() && summary.unreadable_hours.is_empty())
    {
        // Shown to the scheduler once; the quarantined files fail no later run.
        summary.failure = Some(Kind::Data);
    }
    let mut summary = finish(summary, started);
    if !opts.dry_run
        && let Err(e) = outcome::write(spool, &summary)
    {
        late_error(&mut summary, &e);
    }
    summary
}

/// An error after the run's work: kept in the summary; it decides the exit
/// code unless a failure already did.
fn late_error(summary: &mut PushSummary, e: &anyhow::Error) {
    let text = format!("{e:#}");
    summary.error = Some(match summary.error.take() {
        Some(first) => format!("{first}; then: {text}"),
        None => text,
    });
    if matches!(summary.failure, None | Some(Kind::Data)) {
        summary.failure = Some(kind_of(e));
    }
}

fn finish(mut summary: PushSummary, started: Instant) -> PushSummary {
    summary.finished_at = Utc::now().format(crate::record::TIME_FORMAT).to_string();
    summary.duration_ms = started.elapsed().as_millis() as u64;
    summary
}
