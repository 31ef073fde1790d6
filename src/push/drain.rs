//! Draining the spool: batch after batch (each at most `--max-records`),
//! every batch read, merged and committed in requests of at most
//! `--max-request-bytes`, until nothing is pending or `--max-seconds` have
//! passed (man 1 hero_usage_push, DESCRIPTION, steps 4 to 7).
//!
//! Failures of a commit request:
//! - a lost race (500, 403 `PushRejected`) or a lost reply: wait at random,
//!   then send the same request again without re-reading (the other
//!   writer's commit cannot have changed this node's files; the sha check
//!   catches the rare case that it did);
//! - a stale sha (409, 422): re-read the chunk's hours, merge again, resend;
//! - 413 (or a large body cut off while sending): halve the chunk, and keep
//!   the smaller size for the rest of the run; a file refused alone leaves
//!   its hour pending (exit 75) while the other hours go;
//! - anything else ends the run.

mod mark;
mod send;
mod writer;

use super::merge::{Conflict, Pending, merge_hour, parse_hour_file};
use super::{Event, Log, Outcome, Problem, PushOptions, PushSummary};
use crate::error::{Kind, fail};
use crate::failpoint::{failpoint, test_knob};
use crate::forgejo::{
    CommitOptions, FileChange, FileOp, ForgeError, ForgejoClient, RepoRef, Repository, change_size,
    forge_err, request_overhead,
};
use crate::layout;
use crate::otoml::render_batch;
use crate::outcome::FilePlan;
use crate::record::{HourBucket, UsageRecord};
use crate::spool::{PendingId, PendingIndex, Spool};
use crate::trailer;
use anyhow::Result;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

/// What every step of a run shares.
pub(super) struct Ctx<'a> {
    pub spool: &'a Spool,
    pub opts: &'a PushOptions,
    pub client: &'a ForgejoClient,
    /// The branch setting resolved (`None`: the repository's default).
    pub branch: Option<String>,
    pub per_node: bool,
    pub log: Log<'a>,
    pub started: Instant,
    /// A dry run's records of drops still in `incoming/` (a push would
    /// ingest them first): planned with the first batch.
    pub previewed: Vec<UsageRecord>,
    /// This spool's id (`None` only in a dry run of a spool that has none
    /// yet: every other spool's commit is then another's).
    pub spool_id: Option<String>,
}

/// One hour's change and what it means for the spool.
struct HourMeta {
    hour: HourBucket,
    /// The records the change adds (kept to merge again after a stale sha).
    fresh: Vec<Pending>,
    total_records: usize,
    /// A request holding this change lost its reply or got a 5xx: it may
    /// have landed.
    maybe_landed: bool,
    /// The hour file's signature, written in the same commit (with a key).
    signature: Option<FileChange>,
}

impl HourMeta {
    /// The request bytes of the hour's change and its signature.
    fn bytes(&self, change: &FileChange) -> usize {
        change_size(change) + self.signature.as_ref().map_or(0, change_size)
    }
}

/// Changes that go in one request, with their hours.
#[derive(Default)]
struct Chunk {
    changes: Vec<FileChange>,
    meta: Vec<HourMeta>,
}

impl Chunk {
    fn bytes(&self) -> usize {
        self.changes
            .iter()
            .zip(&self.meta)
            .map(|(c, m)| m.bytes(c))
            .sum()
    }
    /// Every file the chunk writes: each hour file, then its signature.
    fn files(&self) -> Vec<&FileChange> {
        self.changes
            .iter()
            .zip(&self.meta)
            .flat_map(|(c, m)| std::iter::once(c).chain(m.signature.as_ref()))
            .collect()
    }
    fn records(&self) -> usize {
        self.meta.iter().map(|m| m.fresh.len()).sum()
    }
    fn push(&mut self, change: FileChange, meta: HourMeta) {
        self.changes.push(change);
        self.meta.push(meta);
    }
    /// The second half, leaving the first.
    fn split_half(&mut self) -> Chunk {
        let at = self.changes.len().div_ceil(2);
        Chunk {
            changes: self.changes.split_off(at),
            meta: self.meta.split_off(at),
        }
    }
}

/// The state of one run's drain.
struct Drain<'a, 'c> {
    ctx: &'c Ctx<'a>,
    repo: RepoRef,
    /// The branch read and committed to.
    branch: String,
    /// Set while `branch` does not exist yet: the first commit creates it
    /// from this branch (Forgejo's `new_branch`).
    create_from: Option<String>,
    /// False only in a dry run against a missing repository: nothing to read.
    repo_exists: bool,
    /// The request size in force (halved by a 413, for the rest of the run).
    limit: usize,
    /// An old server without the many-files endpoint: one file a request.
    single_files: bool,
    /// Hours left pending this run (unreadable, too large), with their records.
    stuck: HashMap<HourBucket, usize>,
    rng: super::retry::Rng,
    /// Marks committed records sent on a thread of its own.
    marker: mark::Marker,
    /// Commits this run's requests made though their answers were lost (or
    /// 5xx), found by re-reading: counted once each.
    landed: HashSet<String>,
    /// The spool each commit read so far names (its `Hero-Usage-Spool:`
    /// trailer; `None`: it has none), so that a commit is read once.
    writers: HashMap<String, Option<String>>,
    /// Spools of this node whose hour files this run takes over
    /// (`--adopt-node`): named in every commit it makes from then on.
    adopted: std::collections::BTreeSet<String>,
    /// Spools an earlier run adopted (`state/adopted`): their files are
    /// this spool's, no flag needed.
    adopted_before: HashSet<String>,
    /// Branches this spool committed to before `branch` (`state/branches`):
    /// a pending record found there is done, never committed again.
    other_branches: Vec<String>,
}

/// Drain the spool into the billing repository.
pub(super) fn drain(ctx: &Ctx, summary: &mut PushSummary) -> Result<()> {
    let mut source = Source::default();
    let mut first = source.next(ctx, &HashMap::new(), &mut mark::Marker::default(), summary)?;
    add_previewed(&mut first, &ctx.previewed);
    if first.is_empty() {
        source.report_reads();
        summary.outcome = Outcome::NothingToPush;
        return Ok(());
    }
    let mut d = Drain::start(ctx, summary)?;
    let mut batch = Some(first);
    let mut batches = 0;
    loop {
        let hours = match batch.take() {
            Some(h) => h,
            None => source.next(ctx, &d.stuck, &mut d.marker, summary)?,
        };
        if hours.is_empty() {
            break;
        }
        let before = progress(summary);
        d.batch(hours, summary)?;
        if ctx.opts.dry_run || progress(summary) == before {
            break;
        }
        batches += 1;
        (ctx.log)(Event::Progress {
            batches,
            pushed: summary.pushed,
            commits: summary.commits,
        });
        if ctx.started.elapsed() >= ctx.opts.max_seconds {
            d.note(
                summary,
                format!(
                    "stopped draining after --max-seconds {}; the rest waits for the next run",
                    ctx.opts.max_seconds.as_secs()
                ),
            );
            break;
        }
    }
    d.marker.finish()?;
    if !d.other_branches.is_empty() && !ctx.opts.dry_run && ctx.spool.pending_count()? == 0 {
        super::branch::remember(ctx.spool, &[d.branch.as_str()])?;
    }
    source.report_reads();
    summary.outcome = if ctx.opts.dry_run {
        Outcome::DryRun
    } else if summary.pushed > 0 {
        Outcome::Pushed
    } else {
        Outcome::NothingToPush
    };
    Ok(())
}

/// What a batch can change: a batch that changes none of it is the last.
/// An hour newly left pending counts: the next batch skips it.
fn progress(s: &PushSummary) -> (usize, usize, usize, usize) {
    (
        s.pushed,
        s.already_present,
        s.quarantined.len(),
        s.unreadable_hours.len(),
    )
}

/// One hour's pending records, with their spool ids.
type HourRecords = (HourBucket, Vec<Pending>);

/// Add a dry run's previewed drops to a batch, each to its hour (hours in
/// order, as the spool gives them).
fn add_previewed(batch: &mut Vec<HourRecords>, drops: &[UsageRecord]) {
    for rec in drops {
        let hour = rec.hour_bucket();
        let at = match batch.binary_search_by(|(h, _)| h.cmp(&hour)) {
            Ok(at) => at,
            Err(at) => {
                batch.insert(at, (hour, Vec::new()));
                at
            }
        };
        let id = PendingId::for_key(&rec.idempotency_key);
        batch[at].1.push((id, rec.clone()));
    }
}

/// Where batches come from: an index of `pending/` read once (hours and
/// names, not records), each batch loading only its own records; scanned
/// again when used up, for records that arrived meanwhile. Reading every
/// pending record for every batch made a backlog's drain quadratic.
#[derive(Default)]
struct Source {
    index: PendingIndex,
    /// Entries read from the spool so far (scans and batches): a test knob
    /// shows it, so that a test sees each record read a bounded number of times.
    reads: usize,
}

impl Source {
    /// The next batch: the oldest indexed records, at most `--max-records`,
    /// skipping hours stuck this run; empty when a fresh scan has nothing
    /// more. Damaged entries are quarantined (not in a dry run) and reported.
    /// `marker` finishes before a scan: it must not see committed records
    /// pending.
    fn next(
        &mut self,
        ctx: &Ctx,
        stuck: &HashMap<HourBucket, usize>,
        marker: &mut mark::Marker,
        summary: &mut PushSummary,
    ) -> Result<Vec<HourRecords>> {
        let mut scanned = false;
        loop {
            if self.index.remaining() == 0 {
                if scanned {
                    return Ok(Vec::new());
                }
                marker.finish()?;
                let scan = ctx.spool.index_pending()?;
                self.reads += scan.index.remaining() + scan.damaged.len();
                quarantine_damaged(ctx, &scan.damaged, summary);
                self.index = scan.index;
                scanned = true;
            }
            let slots = self
                .index
                .next_batch(ctx.opts.max_records.max(1), |h| stuck.contains_key(&h));
            self.reads += slots.len();
            let load = ctx.spool.load_indexed(&slots)?;
            quarantine_damaged(ctx, &load.damaged, summary);
            let hours: Vec<HourRecords> = load
                .hours
                .into_iter()
                .filter(|(hour, _)| !stuck.contains_key(hour))
                .collect();
            if !hours.is_empty() {
                return Ok(hours);
            }
        }
    }

    /// Tell a test how many entries the run read (debug builds only).
    fn report_reads(&self) {
        if let Some(path) = test_knob("HERO_USAGE_TEST_READS_FILE") {
            let _ = std::fs::write(path, self.reads.to_string());
        }
    }
}

fn quarantine_damaged(ctx: &Ctx, damaged: &[(PendingId, String)], summary: &mut PushSummary) {
    for (id, reason) in damaged {
        quarantine(ctx, id, None, reason, summary);
    }
}

impl<'a, 'c> Drain<'a, 'c> {
    /// Make sure the repository and the branch are there (not in a dry run).
    fn start(ctx: &'c Ctx<'a>, summary: &mut PushSummary) -> Result<Drain<'a, 'c>> {
        let opts = ctx.opts;
        let repo = RepoRef::new(&opts.forge.owner, &opts.forge.repo);
        let found = ensure_repo(ctx.client, &repo, opts.dry_run)?;
        if let Some(why) = found.as_ref().and_then(|r| r.read_only)
            && !opts.dry_run
        {
            return Err(fail(
                Kind::Config,
                format!(
                    "the billing repository {repo} is {why}: Forgejo takes no commit to it; nothing was pushed and the records stay pending. Make it writable again (unarchive it, or convert the mirror to a regular repository), or set --repo to the billing repository in use"
                ),
            ));
        }
        let default = found
            .as_ref()
            .map(|r| r.default_branch.clone())
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "main".to_string());
        let branch = ctx.branch.clone().unwrap_or_else(|| default.clone());
        let other_branches = remember_branch(ctx, &branch, summary)?;
        let mut d = Drain {
            ctx,
            repo,
            create_from: None,
            repo_exists: found.is_some(),
            limit: opts.max_request_bytes.max(1),
            single_files: false,
            stuck: HashMap::new(),
            rng: super::retry::Rng::new(&opts.node),
            marker: mark::Marker::default(),
            landed: HashSet::new(),
            writers: HashMap::new(),
            adopted: Default::default(),
            adopted_before: ctx.spool.adopted_spools()?.into_iter().collect(),
            other_branches,
            branch,
        };
        if let Some(found) = found.filter(|_| d.branch != default && !opts.dry_run) {
            d.prepare_branch(&found, summary)?;
        }
        Ok(d)
    }

    /// A branch other than the default that does not exist yet is created
    /// by the first commit, from the default branch. In an empty repository
    /// the default branch is set up first (a README commit), so that the
    /// node's branch does not become the default. A per-node branch must
    /// not carry other nodes' files: when the default branch holds `nodes/`,
    /// refuse (78) rather than copy them.
    fn prepare_branch(&mut self, found: &Repository, summary: &mut PushSummary) -> Result<()> {
        let (repo, branch) = (self.repo.clone(), self.branch.clone());
        if self
            .retrying(summary, |c| c.branch_exists(&repo, &branch))
            .map_err(forge_err)?
        {
            return Ok(());
        }
        let default = found.default_branch.clone();
        if found.empty {
            self.set_up_default_branch(&default, summary)?;
        } else if self.ctx.per_node {
            match self.retrying(summary, |c| {
                c.read_file(&repo, layout::NODES, Some(&default))
            }) {
                Err(ForgeError::NotAFile(_)) => {
                    return Err(fail(
                        Kind::Config,
                        format!(
                            "branch {} does not exist, and creating it from the default branch {default} would copy other nodes' files (it holds nodes/); create {} from a commit without nodes/ (git push origin <commit>:refs/heads/{}), or use the shared branch",
                            self.branch, self.branch, self.branch
                        ),
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(forge_err(e)),
            }
        }
        self.create_from = Some(default);
        Ok(())
    }

    /// The first commit of an empty repository: a README on the default
    /// branch. Another node may have made it first (422 already exists).
    fn set_up_default_branch(&mut self, default: &str, summary: &mut PushSummary) -> Result<()> {
        let node = &self.ctx.opts.node;
        let readme = "# Usage billing\n\nHourly usage records of Hero nodes, written by hero_usage_push \
            (see man 7 hero_usage). Each node commits to its own branch; nodes/<node>/ holds its hour files.\n";
        let opts = CommitOptions {
            branch: Some(default.to_string()),
            ..self.commit_options(format!("Set up the billing repository (by node {node})"))
        };
        let repo = self.repo.clone();
        // A lost race is retried; "already exists": another node was first.
        match self.retrying(summary, |c| {
            c.create_file(&repo, "README.md", readme.as_bytes(), &opts)
        }) {
            Ok(_) | Err(ForgeError::AlreadyExists(_)) => Ok(()),
            Err(e) => Err(forge_err(e)),
        }
    }

    /// The bytes of a many-files request besides its files, at most: the
    /// options of a commit whose message names the largest counts.
    fn request_overhead(&self) -> usize {
        let message = commit_message(usize::MAX, usize::MAX, &self.ctx.opts.node);
        request_overhead(&self.commit_options(message))
    }

    /// The request body `chunk` makes, about.
    fn request_bytes(&self, chunk: &Chunk) -> usize {
        self.request_overhead() + chunk.bytes()
    }

    /// The branch whose files the next commit starts from: the run's
    /// branch, or while it does not exist yet, the branch it will be
    /// created from (whose hour files it then holds).
    fn read_branch(&self) -> String {
        self.create_from
            .clone()
            .unwrap_or_else(|| self.branch.clone())
    }

    fn commit_options(&self, message: String) -> CommitOptions {
        let node = &self.ctx.opts.node;
        CommitOptions {
            branch: Some(self.branch.clone()),
            new_branch_from: self.create_from.clone(),
            message: match &self.ctx.spool_id {
                Some(id) => trailer::with_trailers(&message, id, &self.adopted),
                None => message,
            },
            author_name: format!("hero_usage_push on {node}"),
            author_email: format!("{node}@hero-usage.invalid"),
        }
    }

    fn note(&self, summary: &mut PushSummary, note: String) {
        (self.ctx.log)(Event::Note(&note));
        summary.notes.push(note);
    }
}

/// The subject of a many-files commit: the node and the counts.
fn commit_message(records: usize, files: usize, node: &str) -> String {
    format!("usage: {records} records from node {node} in {files} file(s)")
}

/// The branches this spool committed to before, `branch` aside; `branch`
/// is remembered first (not in a dry run). When it cannot be (a full disk),
/// the run still pushes, as it does when it cannot ingest, and exits 73:
/// records waiting for room would be worse than the rare double commit a
/// change of branch could then make of this run's lost reply.
fn remember_branch(ctx: &Ctx, branch: &str, summary: &mut PushSummary) -> Result<Vec<String>> {
    let known = super::branch::remembered(ctx.spool)?;
    if !ctx.opts.dry_run && !known.iter().any(|b| b == branch) {
        let all: Vec<&str> = known.iter().map(String::as_str).chain([branch]).collect();
        if let Err(e) = super::branch::remember(ctx.spool, &all) {
            super::late_error(
                summary,
                &e.context(format!("cannot remember branch {branch}")),
            );
        }
    }
    Ok(known.into_iter().filter(|b| b != branch).collect())
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
        // Forgejo refuses a name it reserves (api, admin, ...) or one that
        // ends in .git or .wiki: every run would meet it.
        Err(ForgeError::Invalid {
            status: 422,
            message,
        }) => Err(fail(
            Kind::Config,
            format!(
                "cannot create repository {repo}: the forge refuses the name ({message}); names ending in .git or .wiki and reserved ones (api, admin, ...) are not allowed: set --repo to another name"
            ),
        )),
        Err(e) => Err(forge_err(e)),
    }
}

impl Drain<'_, '_> {
    /// Read, merge and commit one batch.
    fn batch(&mut self, hours: Vec<HourRecords>, summary: &mut PushSummary) -> Result<()> {
        let mut planned = Vec::new();
        for (hour, pending) in hours {
            if let Some(p) = self.plan_hour(hour, pending, None, false, summary)? {
                planned.push(p);
            }
        }
        failpoint("push-after-read");
        if self.ctx.opts.dry_run {
            for (change, meta) in &planned {
                summary.pushed += meta.fresh.len();
                summary
                    .files
                    .push(file_plan(change, meta, meta.fresh.len()));
            }
            return Ok(());
        }
        let mut queue = self.chunks(planned);
        while let Some(chunk) = queue.pop_front() {
            if chunk.changes.len() > 1 && self.request_bytes(&chunk) > self.limit {
                // Made before a 413 lowered the limit: cut it to the new size.
                let pairs = chunk.changes.into_iter().zip(chunk.meta).collect();
                for piece in self.chunks(pairs).into_iter().rev() {
                    queue.push_front(piece);
                }
                continue;
            }
            self.send(chunk, &mut queue, summary)?;
        }
        Ok(())
    }

    /// Changes in request-sized chunks, in order; a file larger than the
    /// limit goes alone.
    fn chunks(&self, planned: Vec<(FileChange, HourMeta)>) -> VecDeque<Chunk> {
        let mut queue = VecDeque::new();
        let mut chunk = Chunk::default();
        let overhead = self.request_overhead();
        let mut bytes = overhead;
        for (change, meta) in planned {
            let size = meta.bytes(&change);
            let full = bytes + size > self.limit || self.single_files;
            if !chunk.changes.is_empty() && full {
                queue.push_back(std::mem::take(&mut chunk));
                bytes = overhead;
            }
            bytes += size;
            chunk.push(change, meta);
        }
        if !chunk.changes.is_empty() {
            queue.push_back(chunk);
        }
        queue
    }

    /// Merge one hour's pending records with its remote file: records there
    /// already are marked sent, conflicts quarantined; the rest make the
    /// change. `landed`: a request with this hour's change lost its reply,
    /// so records found there now were committed by this run. `reread`: a
    /// request failed on a stale sha, which may have been the signature's.
    fn plan_hour(
        &mut self,
        hour: HourBucket,
        pending: Vec<Pending>,
        landed: Option<FileOp>,
        reread: bool,
        summary: &mut PushSummary,
    ) -> Result<Option<(FileChange, HourMeta)>> {
        let path = layout::hour_file_path(&self.ctx.opts.node, hour);
        let mut pending: Vec<Pending> = pending
            .into_iter()
            .filter(|(id, _)| !already_quarantined(id, summary))
            .collect();
        if !reread {
            let Some(left) = self.done_elsewhere(&path, hour, pending, summary)? else {
                return Ok(None);
            };
            pending = left;
        }
        let RemoteHour {
            records,
            sha,
            last_commit,
            bytes,
        } = match self.read_hour(&path, hour, summary)? {
            HourRead::Found(found) => found,
            HourRead::Unreadable(reason) => {
                self.stuck.insert(hour, pending.len());
                summary.unreadable_hours.push(Problem {
                    what: path,
                    reason: format!(
                        "{reason}; its records stay pending until the file is repaired"
                    ),
                });
                return Ok(None);
            }
        };
        let writer = last_commit.clone();
        let merge = merge_hour(&records, pending);
        quarantine_conflicts(self.ctx, &path, &merge.conflicts, summary);
        if merge.fresh.is_empty() && !merge.present.is_empty() {
            self.heal_signature(hour, bytes, summary)?;
        }
        self.present(
            &path,
            &merge.present,
            landed,
            last_commit,
            records.len(),
            summary,
        )?;
        if merge.fresh.is_empty() {
            return Ok(None);
        }
        if sha.is_some() {
            self.check_writer(&path, writer.as_deref(), summary)?;
        }
        let content = render_batch(records.iter().chain(merge.fresh.iter().map(|(_, r)| r)));
        let signature = self.sign_hour(hour, &content, sha.is_some() || reread, summary)?;
        let change = FileChange {
            operation: if sha.is_some() {
                FileOp::Update
            } else {
                FileOp::Create
            },
            path,
            content: content.into_bytes(),
            sha,
        };
        let meta = HourMeta {
            hour,
            total_records: records.len() + merge.fresh.len(),
            fresh: merge.fresh,
            maybe_landed: false,
            signature,
        };
        Ok(Some((change, meta)))
    }

    /// The records of `pending` that no branch this spool committed to
    /// before holds: those found there (a commit whose reply was lost
    /// before the branch changed) are done, marked sent; conflicts are
    /// quarantined. `None`: an earlier branch's file cannot be read, so
    /// the hour waits (reported).
    fn done_elsewhere(
        &mut self,
        path: &str,
        hour: HourBucket,
        mut pending: Vec<Pending>,
        summary: &mut PushSummary,
    ) -> Result<Option<Vec<Pending>>> {
        for other in self.other_branches.clone() {
            let read = self.read_hour_on(path, hour, &other, summary)?;
            let found = match read {
                HourRead::Found(found) => found,
                HourRead::Unreadable(reason) => {
                    self.stuck.insert(hour, pending.len());
                    summary.unreadable_hours.push(Problem {
                        what: format!("{path} on branch {other}"),
                        reason: format!(
                            "{reason}; this spool committed to {other} before, so its records stay pending until the file is repaired"
                        ),
                    });
                    return Ok(None);
                }
            };
            let merge = merge_hour(&found.records, pending);
            quarantine_conflicts(self.ctx, path, &merge.conflicts, summary);
            self.present(path, &merge.present, None, None, 0, summary)?;
            pending = merge.fresh;
        }
        Ok(Some(pending))
    }

    /// Records found already in their hour file mean a commit whose reply
    /// or marking was lost, or (on a server without the many-files
    /// endpoint) a signature request that never came: make sure the file
    /// as it is carries this node's signature, before the records are
    /// marked sent.
    fn heal_signature(
        &mut self,
        hour: HourBucket,
        bytes: Option<Vec<u8>>,
        summary: &mut PushSummary,
    ) -> Result<()> {
        let (Some(bytes), Some(signer)) = (bytes, self.ctx.opts.signer.clone()) else {
            return Ok(());
        };
        if self.ctx.opts.dry_run {
            return Ok(());
        }
        let path = layout::signature_path(&self.ctx.opts.node, hour);
        let (repo, branch) = (self.repo.clone(), self.read_branch());
        let found = self
            .retrying(summary, |c| c.read_file(&repo, &path, Some(&branch)))
            .map_err(forge_err)?;
        let signed = signer.sign(&bytes)?;
        if found.as_ref().is_some_and(|f| f.content == signed) {
            return Ok(());
        }
        let change = FileChange {
            operation: if found.is_some() {
                FileOp::Update
            } else {
                FileOp::Create
            },
            path,
            content: signed,
            sha: found.map(|f| f.sha),
        };
        self.note(
            summary,
            format!(
                "{} did not carry this node's signature of the file as it is: signing it",
                change.path
            ),
        );
        self.sign_alone(&change, summary)
    }

    /// The signature of an hour file's new `content`, as a change of its
    /// signature file (with a key; not in a dry run). The signature file is
    /// read for its sha only when it may exist: when the hour file exists,
    /// or after a stale sha (`look`); a new hour has none.
    fn sign_hour(
        &mut self,
        hour: HourBucket,
        content: &str,
        look: bool,
        summary: &mut PushSummary,
    ) -> Result<Option<FileChange>> {
        let Some(signer) = self
            .ctx
            .opts
            .signer
            .as_ref()
            .filter(|_| !self.ctx.opts.dry_run)
        else {
            return Ok(None);
        };
        let signed = signer.sign(content.as_bytes())?;
        let path = layout::signature_path(&self.ctx.opts.node, hour);
        let sha = if look && self.repo_exists {
            let (repo, branch) = (self.repo.clone(), self.read_branch());
            match self.retrying(summary, |c| c.read_file(&repo, &path, Some(&branch))) {
                Ok(found) => found.map(|f| f.sha),
                Err(ForgeError::NotAFile(m)) => {
                    return Err(fail(
                        Kind::Data,
                        format!(
                            "{path} in the billing repository is not a file ({m}); remove it, only signatures belong there"
                        ),
                    ));
                }
                Err(e) => return Err(forge_err(e)),
            }
        } else {
            None
        };
        Ok(Some(FileChange {
            operation: if sha.is_some() {
                FileOp::Update
            } else {
                FileOp::Create
            },
            path,
            content: signed,
            sha,
        }))
    }

    /// Records the remote file holds already: marked sent. After a lost
    /// reply (or a 5xx) they are this run's: counted as pushed, with the
    /// commit found, itself counted once.
    fn present(
        &mut self,
        path: &str,
        ids: &[PendingId],
        landed: Option<FileOp>,
        last_commit: Option<String>,
        total: usize,
        summary: &mut PushSummary,
    ) -> Result<()> {
        if ids.is_empty() || self.ctx.opts.dry_run {
            summary.already_present += ids.len();
            return Ok(());
        }
        self.ctx.spool.mark_sent(ids)?;
        match landed {
            None => summary.already_present += ids.len(),
            Some(operation) => {
                summary.pushed += ids.len();
                if let Some(sha) = &last_commit
                    && self.landed.insert(sha.clone())
                {
                    summary.commits += 1;
                }
                summary.commit = last_commit.or(summary.commit.take());
                summary.files.push(FilePlan {
                    path: path.to_string(),
                    new_records: ids.len(),
                    total_records: total,
                    operation,
                });
            }
        }
        Ok(())
    }

    /// An hour's remote file as it is now (with its bytes when hour files
    /// are signed). A read that fails for a while (5xx, network) is retried.
    fn read_hour(
        &mut self,
        path: &str,
        hour: HourBucket,
        summary: &mut PushSummary,
    ) -> Result<HourRead> {
        let branch = self.read_branch();
        self.read_hour_on(path, hour, &branch, summary)
    }

    /// [`Self::read_hour`] on `branch`.
    fn read_hour_on(
        &mut self,
        path: &str,
        hour: HourBucket,
        branch: &str,
        summary: &mut PushSummary,
    ) -> Result<HourRead> {
        if !self.repo_exists {
            return Ok(HourRead::Found(RemoteHour::missing()));
        }
        let (repo, branch) = (self.repo.clone(), branch.to_string());
        let read = self.retrying(summary, |c| c.read_file(&repo, path, Some(&branch)));
        let signing = self.ctx.opts.signer.is_some();
        match read {
            Ok(None) => Ok(HourRead::Found(RemoteHour::missing())),
            Ok(Some(file)) => {
                let bytes = signing.then(|| file.content.clone());
                Ok(match parse_hour_file(file.content, hour) {
                    Ok(records) => HourRead::Found(RemoteHour {
                        records,
                        sha: Some(file.sha),
                        last_commit: file.last_commit,
                        bytes,
                    }),
                    Err(reason) => HourRead::Unreadable(reason),
                })
            }
            Err(ForgeError::NotAFile(m)) => Ok(HourRead::Unreadable(m)),
            Err(e) => Err(forge_err(e)),
        }
    }
}

/// An hour's file in the billing repository, as read before a merge.
struct RemoteHour {
    /// Its records (none when the file is missing).
    records: Vec<UsageRecord>,
    /// Its blob sha, for the update (none: create it).
    sha: Option<String>,
    /// The last commit that wrote it, if the server said.
    last_commit: Option<String>,
    /// Its bytes, kept only when hour files are signed (to check that the
    /// file as it is carries this node's signature).
    bytes: Option<Vec<u8>>,
}

impl RemoteHour {
    fn missing() -> RemoteHour {
        RemoteHour {
            records: Vec::new(),
            sha: None,
            last_commit: None,
            bytes: None,
        }
    }
}

/// What reading an hour's remote file came to.
enum HourRead {
    Found(RemoteHour),
    /// The file is there but cannot be understood: why. Its records stay
    /// pending.
    Unreadable(String),
}

/// Pending records whose key the billing repository holds with other fields.
fn quarantine_conflicts(ctx: &Ctx, path: &str, conflicts: &[Conflict], summary: &mut PushSummary) {
    for c in conflicts {
        let reason = format!(
            "conflict: idempotency key already in {path} of the billing repository with different {}; never pushed",
            c.fields.join(", ")
        );
        quarantine(ctx, &c.id, Some(&c.record), &reason, summary);
    }
}

/// What the summary says of a change.
fn file_plan(change: &FileChange, meta: &HourMeta, new_records: usize) -> FilePlan {
    FilePlan {
        path: change.path.clone(),
        new_records,
        total_records: meta.total_records,
        operation: change.operation,
    }
}

fn quarantine_name(id: &PendingId) -> String {
    format!("pending/{}", id.as_str())
}

fn already_quarantined(id: &PendingId, summary: &PushSummary) -> bool {
    let name = quarantine_name(id);
    summary.quarantined.iter().any(|p| p.what == name)
}

/// Move a pending record to `rejected/` (not in a dry run) and report it
/// once, however often the run meets it. `record` is the entry's record when
/// it could be read.
fn quarantine(
    ctx: &Ctx,
    id: &PendingId,
    record: Option<&UsageRecord>,
    reason: &str,
    summary: &mut PushSummary,
) {
    if already_quarantined(id, summary) {
        return;
    }
    let what = quarantine_name(id);
    if summary.unreadable_hours.iter().any(|p| p.what == what) {
        return; // could not be quarantined earlier in this run: reported once
    }
    if !ctx.opts.dry_run
        && let Err(e) = ctx.spool.quarantine_pending(id, record, reason)
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
