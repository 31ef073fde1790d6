//! The push job (DESIGN.md, "The push job"): the only module that joins the
//! spool and the forge. One run: lock, ingest, group by hour, make sure the
//! repository exists, merge every touched hour file with what the billing
//! repository holds, commit all changed files in one commit, and only then
//! mark the records sent.
//!
//! Exactly once: the billing repository is the source of truth. A record is
//! marked sent only after a commit that holds it succeeded, and a record found
//! in the remote file with identical fields is never committed again, so a
//! crash or a lost reply between commit and marking heals on the next run.

use crate::config::ForgeSettings;
use crate::error::{Kind, fail};
use crate::failpoint::failpoint;
use crate::forgejo::{
    ClientConfig, CommitOptions, FileChange, FileOp, ForgeError, ForgejoClient, RepoRef, Repository,
};
use crate::otoml::{parse_batch, render_batch};
use crate::record::{HourBucket, UsageRecord};
use crate::spool::{PendingId, Spool};
use anyhow::Result;
use chrono::Utc;
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How often one run reads, merges and commits before it gives up (exit 75).
pub const MAX_ATTEMPTS: u32 = 5;
/// Records one run pushes at most unless told otherwise: bounds a run's
/// memory (under 1 KiB a record at its peak) on a large backlog; the rest
/// waits for the next run.
pub const DEFAULT_MAX_RECORDS: usize = 100_000;
/// Days a sent record stays known locally by default.
pub const DEFAULT_RETENTION_DAYS: u32 = 35;
/// The longest retention window accepted (a hundred years): longer ones
/// would overflow the date arithmetic and mean "for ever" anyway.
pub const MAX_RETENTION_DAYS: u32 = 36_500;
/// The file `hero_usage_status` reads, inside the spool's state directory.
pub const OUTCOME_FILE: &str = "last_push.json";

/// What one run is asked to do.
#[derive(Debug, Clone)]
pub struct PushOptions {
    pub node: String,
    pub dry_run: bool,
    /// At most this many pending records per run, oldest hours first.
    pub max_records: usize,
    /// Prune sent records older than this many days; `None` prunes nothing
    /// (a push-now through the shim leaves pruning to the hourly job, whose
    /// window it cannot know).
    pub retention_days: Option<u32>,
    pub forge: ForgeSettings,
}

/// One hour file the run would write or wrote.
#[derive(Debug, Clone, Serialize)]
pub struct FilePlan {
    pub path: String,
    /// Records this run adds to the file.
    pub new_records: usize,
    /// Records in the file after the change.
    pub total_records: usize,
    /// `create` or `update`.
    pub operation: &'static str,
}

/// A record or file set aside, with why.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub what: String,
    pub reason: String,
}

/// What one run did: printed as the summary line or `--json`, and written to
/// the outcome file for `hero_usage_status`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PushSummary {
    /// `pushed`, `nothing-to-push`, `locked`, `dry-run` or `failed`.
    pub outcome: String,
    pub node: String,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub ingested: usize,
    pub ingest_duplicates: usize,
    /// Records committed by this run.
    pub pushed: usize,
    /// Pending records the billing repository already held identically.
    pub already_present: usize,
    pub files: Vec<FilePlan>,
    pub commit: Option<String>,
    pub attempts: u32,
    /// Bad drops and conflicting records moved to `rejected/`.
    pub quarantined: Vec<Problem>,
    /// Hours left pending because their remote file could not be parsed.
    pub unreadable_hours: Vec<Problem>,
    /// Records still pending after the run.
    pub pending_after: usize,
    pub pruned: usize,
    pub exit_code: i32,
    pub error: Option<String>,
}

impl PushSummary {
    /// What the push binary prints: the summary line, and for a dry run the
    /// file each commit would write.
    pub fn text(&self, dry_run: bool) -> String {
        let mut text = format!("{}\n", self.line());
        if dry_run {
            for f in &self.files {
                text.push_str(&format!(
                    "would {} {}: {} new, {} in all\n",
                    f.operation, f.path, f.new_records, f.total_records
                ));
            }
        }
        text
    }

    /// The one summary line.
    pub fn line(&self) -> String {
        let mut s = match self.outcome.as_str() {
            "locked" => return "another push holds the lock; nothing done".to_string(),
            "dry-run" => format!(
                "dry run: would push {} records in {} file(s) ({} already present)",
                self.pushed,
                self.files.len(),
                self.already_present
            ),
            "nothing-to-push" => {
                format!("nothing to push ({} already present)", self.already_present)
            }
            "failed" => format!(
                "push failed{}: {}",
                if self.attempts > 1 {
                    format!(" after {} attempts", self.attempts)
                } else {
                    String::new()
                },
                self.error.as_deref().unwrap_or("unknown error")
            ),
            _ => format!(
                "pushed {} records in {} file(s), commit {} ({} already present)",
                self.pushed,
                self.files.len(),
                self.commit.as_deref().map(short).unwrap_or("none"),
                self.already_present
            ),
        };
        s.push_str(&format!(
            "; ingested {}, quarantined {}, unreadable hours {}, pending {}, pruned {}",
            self.ingested,
            self.quarantined.len(),
            self.unreadable_hours.len(),
            self.pending_after,
            self.pruned
        ));
        s
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// One attempt's plan: the file changes and what they mean for the spool.
#[derive(Default)]
struct Plan {
    changes: Vec<FileChange>,
    files: Vec<FilePlan>,
    /// Pending records the commit holds (new) or the remote holds already.
    done: Vec<PendingId>,
    already_present: usize,
    unreadable: Vec<Problem>,
}

/// Run one push. Errors that end the run early come back as `Err` with their
/// kind; everything else is in the summary (whose `exit_code` is the run's).
pub fn run(spool: &Spool, opts: &PushOptions) -> Result<PushSummary> {
    let started = Instant::now();
    let start_time = Utc::now();
    let mut summary = PushSummary {
        node: opts.node.clone(),
        started_at: start_time.format("%Y-%m-%d %H:%M:%S").to_string(),
        ..Default::default()
    };

    // A bad URL is a configuration error even when there is nothing to push.
    let mut config = ClientConfig::new(&opts.forge.url, opts.forge.token.clone());
    config.insecure_http = opts.forge.insecure_http;
    let client = ForgejoClient::new(config).map_err(forge_err)?;

    // A dry run changes nothing, not even by creating the lock file: it
    // only reads, and reading tolerates records marked sent meanwhile.
    let _push_lock = if opts.dry_run {
        None
    } else {
        let Some(lock) = spool.try_lock_push()? else {
            summary.outcome = "locked".into();
            summary.pending_after = spool.pending_count()?;
            return Ok(finish(summary, started));
        };
        Some(lock)
    };

    if !opts.dry_run {
        let report = spool.ingest_incoming(&opts.node, start_time)?;
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
        failpoint("push-after-ingest");
    }

    let hours = load_pending(spool, opts, &mut summary)?;
    let result = if hours.is_empty() {
        summary.outcome = "nothing-to-push".into();
        Ok(())
    } else {
        push_hours(spool, opts, &client, hours, &mut summary)
    };

    if let Err(err) = result {
        summary.outcome = "failed".into();
        summary.exit_code = crate::error::exit_code_of(&err);
        summary.error = Some(format!("{err:#}"));
    }

    if let Some(days) = opts.retention_days.filter(|_| !opts.dry_run) {
        let horizon = Utc::now() - chrono::Duration::days(i64::from(days));
        summary.pruned = spool.prune_sent(horizon)?;
    }
    summary.pending_after = spool.pending_count()?;
    if summary.exit_code == 0
        && !(summary.quarantined.is_empty() && summary.unreadable_hours.is_empty())
    {
        // Shown to the scheduler once; the quarantined files fail no later run.
        summary.exit_code = Kind::Data.exit_code();
    }
    let summary = finish(summary, started);
    if !opts.dry_run {
        write_outcome(spool, &summary)?;
    }
    Ok(summary)
}

fn finish(mut summary: PushSummary, started: Instant) -> PushSummary {
    summary.finished_at = Utc::now().format("%Y-%m-%d %H:%M:%S").to_string();
    summary.duration_ms = started.elapsed().as_millis() as u64;
    summary
}

/// One hour's pending records, with their spool ids.
type HourRecords = (HourBucket, Vec<(PendingId, UsageRecord)>);

fn push_hours(
    spool: &Spool,
    opts: &PushOptions,
    client: &ForgejoClient,
    hours: Vec<HourRecords>,
    summary: &mut PushSummary,
) -> Result<()> {
    let repo_ref = RepoRef::new(&opts.forge.owner, &opts.forge.repo);
    let repo = ensure_repo(client, &repo_ref, opts.dry_run)?;
    let branch = opts
        .forge
        .branch
        .clone()
        .or_else(|| repo.as_ref().map(|r| r.default_branch.clone()))
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "main".to_string());
    let run = Run {
        spool,
        opts,
        client,
        repo: repo_ref,
        branch,
        repo_exists: repo.is_some(),
    };

    // An attempt consumes the records it merges (each hour's are dropped once
    // rendered, keeping memory to about one copy of the batch); a retry
    // reads them from the spool again, where they are durable.
    let mut first = Some(hours);
    let mut attempt = 0;
    loop {
        attempt += 1;
        summary.attempts = attempt;
        let hours = match first.take() {
            Some(h) => h,
            None => load_pending(spool, opts, summary)?,
        };
        let err = match run.try_once(hours, summary) {
            Ok(()) => return Ok(()),
            Err(err) => err,
        };
        let forge = err.downcast_ref::<ForgeError>();
        match forge {
            Some(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                eprintln!(
                    "hero_usage_push: attempt {attempt} of {MAX_ATTEMPTS} failed ({e}); re-reading and retrying"
                );
                std::thread::sleep(backoff(attempt));
            }
            Some(e) => {
                let retries = if e.is_retryable() {
                    ", retries used up; nothing is lost, the next run retries"
                } else {
                    ""
                };
                return Err(fail(e.kind(), format!("{e}{retries}")));
            }
            None => return Err(err),
        }
    }
}

/// Bounded, jittered exponential backoff: 0.25 s, 0.5 s, 1 s, 2 s, each
/// plus up to half again, so that many nodes do not retry in step.
fn backoff(attempt: u32) -> Duration {
    let base = 250u64 << (attempt - 1).min(4);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let jitter = (nanos ^ u64::from(std::process::id())) % (base / 2 + 1);
    Duration::from_millis(base + jitter)
}

/// The repository, created when missing (not in a dry run: `None` then).
fn ensure_repo(
    client: &ForgejoClient,
    repo: &RepoRef,
    dry_run: bool,
) -> Result<Option<Repository>> {
    match client.get_repo(repo) {
        Ok(r) => return Ok(Some(r)),
        Err(ForgeError::NotFound(_)) if dry_run => return Ok(None),
        Err(ForgeError::NotFound(_)) => {}
        Err(e) => return Err(forge_err(e)),
    }
    match client.create_repo(repo) {
        Ok(r) => Ok(Some(r)),
        // Another node created it first.
        Err(ForgeError::AlreadyExists(_)) => client.get_repo(repo).map(Some).map_err(forge_err),
        Err(ForgeError::NotFound(m)) => Err(fail(
            Kind::Config,
            format!(
                "cannot create repository {repo}: owner {} is neither an organisation nor the token's user ({m}); check --repo",
                repo.owner
            ),
        )),
        Err(e) => Err(forge_err(e)),
    }
}

/// What every step of one run shares, once the repository is known.
struct Run<'a> {
    spool: &'a Spool,
    opts: &'a PushOptions,
    client: &'a ForgejoClient,
    repo: RepoRef,
    /// The branch read and committed to.
    branch: String,
    /// False only in a dry run against a missing repository: nothing to read.
    /// An empty repository is read all the same: after a lost reply it may
    /// no longer be empty.
    repo_exists: bool,
}

impl Run<'_> {
    /// One read-merge-commit-mark attempt. Forge errors come back as a
    /// [`ForgeError`] in the chain so the caller can tell a retryable one.
    fn try_once(&self, hours: Vec<HourRecords>, summary: &mut PushSummary) -> Result<()> {
        let (spool, opts) = (self.spool, self.opts);
        let mut plan = Plan::default();
        for (hour, records) in hours {
            self.plan_hour(hour, records, &mut plan, summary)?;
        }
        failpoint("push-after-read");
        let adding: usize = plan.files.iter().map(|f| f.new_records).sum();
        // `pushed` counts what was committed: only a commit sets it (a dry
        // run reports what it would push).
        summary.pushed = 0;
        summary.already_present = plan.already_present;
        summary.files = plan.files.clone();
        summary.unreadable_hours = plan.unreadable.clone();

        if opts.dry_run {
            summary.pushed = adding;
            summary.outcome = "dry-run".into();
            return Ok(());
        }
        if !plan.changes.is_empty() {
            let message = format!(
                "usage: {adding} records from node {} in {} file(s)",
                opts.node,
                plan.changes.len()
            );
            let commit_opts = CommitOptions {
                branch: Some(self.branch.clone()),
                new_branch_from: None,
                message,
                author_name: format!("hero_usage_push on {}", opts.node),
                author_email: format!("{}@hero-usage.invalid", opts.node),
            };
            let sha = self.commit(&plan.changes, &plan.files, &commit_opts)?;
            failpoint("push-after-commit");
            summary.commit = Some(sha);
            summary.pushed = adding;
        }
        spool.mark_sent(&plan.done)?;
        failpoint("push-after-mark");
        summary.outcome = if plan.changes.is_empty() {
            "nothing-to-push".into()
        } else {
            "pushed".into()
        };
        Ok(())
    }

    /// Merge one hour's pending records with its remote file.
    fn plan_hour(
        &self,
        hour: HourBucket,
        pending: Vec<(PendingId, UsageRecord)>,
        plan: &mut Plan,
        summary: &mut PushSummary,
    ) -> Result<()> {
        let opts = self.opts;
        let path = hour.remote_path(&opts.node);
        let remote = if self.repo_exists {
            self.client.read_file(&self.repo, &path, Some(&self.branch))
        } else {
            Ok(None)
        };
        let parsed = match remote {
            Ok(None) => Ok((Vec::new(), None)),
            Ok(Some(file)) => String::from_utf8(file.content)
                .map_err(|_| "not UTF-8".to_string())
                .and_then(|t| parse_batch(&t))
                .and_then(|records| in_hour(records, hour))
                .map(|records| (records, Some(file.sha))),
            Err(ForgeError::NotAFile(m)) => Err(m),
            Err(e) => return Err(e.into()),
        };
        let (mut records, sha) = match parsed {
            Ok(x) => x,
            Err(reason) => {
                plan.unreadable.push(Problem {
                    what: path,
                    reason: format!(
                        "{reason}; its records stay pending until the file is repaired"
                    ),
                });
                return Ok(());
            }
        };
        let known: HashMap<String, usize> = records
            .iter()
            .enumerate()
            .map(|(i, r)| (r.idempotency_key.clone(), i))
            .collect();

        let mut added = 0;
        let mut fresh: Vec<UsageRecord> = Vec::new();
        for (id, local) in pending {
            if summary
                .quarantined
                .iter()
                .any(|p| p.what == quarantine_name(&id))
            {
                continue; // set aside by an earlier attempt of this run
            }
            match known.get(&local.idempotency_key) {
                Some(&i) => {
                    let differing = records[i].differing_fields(&local, false);
                    if differing.is_empty() {
                        plan.already_present += 1;
                        plan.done.push(id);
                    } else {
                        let reason = format!(
                            "conflict: idempotency key already in {path} of the billing repository with different {}; never pushed",
                            differing.join(", ")
                        );
                        quarantine(self.spool, self.opts, &id, Some(&local), &reason, summary);
                    }
                }
                None => {
                    added += 1;
                    plan.done.push(id);
                    fresh.push(local);
                }
            }
        }
        if added == 0 {
            return Ok(());
        }
        records.extend(fresh);
        let content = render_batch(&records).into_bytes();
        let operation = if sha.is_some() {
            FileOp::Update
        } else {
            FileOp::Create
        };
        plan.files.push(FilePlan {
            path: path.clone(),
            new_records: added,
            total_records: records.len(),
            operation: if sha.is_some() { "update" } else { "create" },
        });
        plan.changes.push(FileChange {
            operation,
            path,
            content,
            sha,
        });
        Ok(())
    }

    /// One commit for all files; one request per file on servers without the
    /// many-files endpoint (before Forgejo/Gitea 1.20).
    fn commit(
        &self,
        changes: &[FileChange],
        files: &[FilePlan],
        commit_opts: &CommitOptions,
    ) -> std::result::Result<String, ForgeError> {
        let (client, repo) = (self.client, &self.repo);
        match client.change_files(repo, changes, commit_opts) {
            Ok(r) => Ok(r.commit_sha),
            Err(ForgeError::Unsupported(_)) => {
                let mut last = String::new();
                for (i, (c, file)) in changes.iter().zip(files).enumerate() {
                    // Each commit's message names its own file and count.
                    let commit_opts = &CommitOptions {
                        message: format!(
                            "usage: {} records from node {} in {} (file {} of {})",
                            file.new_records,
                            self.opts.node,
                            file.path,
                            i + 1,
                            changes.len()
                        ),
                        ..commit_opts.clone()
                    };
                    let r = match (&c.operation, &c.sha) {
                        (FileOp::Update, Some(sha)) => {
                            client.update_file(repo, &c.path, &c.content, sha, commit_opts)?
                        }
                        _ => client.create_file(repo, &c.path, &c.content, commit_opts)?,
                    };
                    last = r.commit_sha;
                }
                Ok(last)
            }
            Err(e) => Err(e),
        }
    }
}

/// The records of an hour's file, all inside that hour
/// (man 5 hero_usage_otoml); otherwise the file is not understood whole.
fn in_hour(
    records: Vec<UsageRecord>,
    hour: HourBucket,
) -> std::result::Result<Vec<UsageRecord>, String> {
    match records.iter().find(|r| r.hour_bucket() != hour) {
        Some(r) => Err(format!(
            "record `{}` occurred at {}, outside the file's hour {hour}",
            r.idempotency_key, r.occurred_at
        )),
        None => Ok(records),
    }
}

fn quarantine_name(id: &PendingId) -> String {
    format!("pending/{}", id.as_str())
}

/// The oldest pending records, at most `--max-records`; damaged entries are
/// quarantined (not in a dry run) and reported.
fn load_pending(
    spool: &Spool,
    opts: &PushOptions,
    summary: &mut PushSummary,
) -> Result<Vec<HourRecords>> {
    let load = spool.load_pending(opts.max_records)?;
    for (id, reason) in &load.damaged {
        quarantine(spool, opts, id, None, reason, summary);
    }
    Ok(load.hours.into_iter().collect())
}

/// Move a pending record to `rejected/` (not in a dry run) and report it
/// once, however many attempts of the run meet it. `record` is the entry's
/// record when it could be read.
fn quarantine(
    spool: &Spool,
    opts: &PushOptions,
    id: &PendingId,
    record: Option<&UsageRecord>,
    reason: &str,
    summary: &mut PushSummary,
) {
    let what = quarantine_name(id);
    if summary.quarantined.iter().any(|p| p.what == what) {
        return;
    }
    if !opts.dry_run
        && let Err(e) = spool.quarantine_pending(id, record, reason)
    {
        summary.unreadable_hours.push(Problem {
            what,
            reason: format!("could not quarantine: {e:#}"),
        });
        return;
    }
    summary.quarantined.push(Problem {
        what,
        reason: reason.to_string(),
    });
}

/// A forge error as an error of its kind, for the exit code.
fn forge_err(e: ForgeError) -> anyhow::Error {
    fail(e.kind(), e.to_string())
}

/// Write the outcome file atomically (tmp + rename) for `hero_usage_status`.
fn write_outcome(spool: &Spool, summary: &PushSummary) -> Result<()> {
    spool.write_state(OUTCOME_FILE, &serde_json::to_vec_pretty(summary)?)
}

/// The last run's summary, from the outcome file (for `hero_usage_status`):
/// `Ok(None)` when no push ran on this spool, `Err(why)` when the file is
/// there but is no summary: monitoring must not take a broken file for a
/// push that never ran.
pub fn read_outcome(spool: &Spool) -> std::result::Result<Option<serde_json::Value>, String> {
    let path = spool.state_dir().join(OUTCOME_FILE);
    let bytes = match spool.read_state(OUTCOME_FILE) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(v) if v.is_object() => Ok(Some(v)),
        Ok(_) => Err(format!("{}: not a JSON object", path.display())),
        Err(e) => Err(format!("{}: not valid JSON ({e})", path.display())),
    }
}
