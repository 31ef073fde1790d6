//! Sending one chunk: commit, and on failure retry, re-read, halve or give up.

use super::{Chunk, Drain, HourMeta, commit_message, file_plan};
use crate::error::Kind;
use crate::failpoint::failpoint;
use crate::forgejo::forge_err;
use crate::forgejo::{FileChange, FileOp, ForgeError, ForgejoClient};
use crate::outcome::{Problem, PushSummary};
use anyhow::Result;
use std::collections::VecDeque;
use std::time::Instant;

impl Drain<'_, '_> {
    /// Commit `chunk`, retrying as the failure calls for; a half of it
    /// after a 413 goes back to the front of `queue`.
    pub(super) fn send(
        &mut self,
        mut chunk: Chunk,
        queue: &mut VecDeque<Chunk>,
        summary: &mut PushSummary,
    ) -> Result<()> {
        let mut failures = 0;
        let mut first_failure = None;
        while !chunk.changes.is_empty() {
            if self.single_files && chunk.changes.len() > 1 {
                // Queued (or halved, or re-read) before the fallback: on an
                // old server a request carries one file, and only the
                // records of the file it carried are marked sent.
                requeue_one_by_one(chunk, queue);
                return Ok(());
            }
            summary.attempts += 1;
            let err = match self.commit(&chunk) {
                Ok(sha) => return self.committed(chunk, sha, summary),
                Err(e) => e,
            };
            match err {
                ForgeError::Unsupported(_) if !self.single_files => {
                    // For the rest of the run, chunks queued already too.
                    self.single_files = true;
                    requeue_one_by_one(chunk, queue);
                    return Ok(());
                }
                ForgeError::TooLarge(m) => {
                    self.too_large(chunk, queue, &m, summary);
                    return Ok(());
                }
                e if e.is_retryable() => {
                    failures += 1;
                    let first = *first_failure.get_or_insert_with(Instant::now);
                    self.wait_or_give_up(&e, failures, first, summary)
                        .map_err(forge_err)?;
                    if e.may_have_applied() {
                        chunk.meta.iter_mut().for_each(|m| m.maybe_landed = true);
                    }
                    if e.needs_reread() {
                        chunk = self.replan(chunk, summary)?;
                    }
                }
                e => return Err(forge_err(e)),
            }
        }
        Ok(())
    }

    /// One request: every change in one commit, or one file on an old server.
    fn commit(&self, chunk: &Chunk) -> Result<String, ForgeError> {
        let (client, node) = (self.ctx.client, &self.ctx.opts.node);
        let n = chunk.records();
        if self.single_files {
            // `send` splits every chunk first: one change, whose records
            // are all that `committed` marks.
            let [c] = chunk.changes.as_slice() else {
                unreachable!("a request to an old server carries one file");
            };
            let opts =
                self.commit_options(format!("usage: {n} records from node {node} in {}", c.path));
            let result = match (c.operation, &c.sha) {
                (FileOp::Update, Some(sha)) => {
                    client.update_file(&self.repo, &c.path, &c.content, sha, &opts)
                }
                _ => client.create_file(&self.repo, &c.path, &c.content, &opts),
            };
            return result.map(|r| r.commit_sha);
        }
        let opts = self.commit_options(commit_message(n, chunk.changes.len(), node));
        client
            .commit_changes(&self.repo, &chunk.files(), &opts)
            .map(|r| r.commit_sha)
    }

    /// The commit landed: mark its records sent, durably, before anything else.
    fn committed(&mut self, chunk: Chunk, sha: String, summary: &mut PushSummary) -> Result<()> {
        failpoint("push-after-commit");
        // The branch exists now: later commits (a signature's too) go on it.
        self.create_from = None;
        if self.single_files
            && let Some(sig) = chunk.meta.first().and_then(|m| m.signature.as_ref())
        {
            self.sign_alone(sig, summary)?;
        }
        summary.commits += 1;
        // Files it wrote are this spool's: no need to read who wrote them.
        self.writers.insert(sha.clone(), self.ctx.spool_id.clone());
        // A commit naming the spools it adopts landed: remembered, so that
        // their other hours need no --adopt-node again.
        let newly: Vec<&String> = self
            .adopted
            .iter()
            .filter(|id| !self.adopted_before.contains(*id))
            .collect();
        if !newly.is_empty() {
            self.ctx.spool.add_adopted_spools(newly.iter().copied())?;
            let done: Vec<String> = newly.into_iter().cloned().collect();
            self.adopted_before.extend(done);
        }
        summary.commit = Some(sha);
        for (change, meta) in chunk.changes.iter().zip(&chunk.meta) {
            summary.pushed += meta.fresh.len();
            summary
                .files
                .push(file_plan(change, meta, meta.fresh.len()));
        }
        let records = chunk.meta.into_iter().flat_map(|m| m.fresh).collect();
        self.marker.mark(self.ctx.spool, records)
    }

    /// On a server without the many-files endpoint, an hour file's signature
    /// cannot share its commit: it follows in the very next request, the
    /// hour's records marked sent only after it (a crash in between leaves
    /// them pending: the next run finds them present and signs the hour
    /// again). A signature that cannot be written is reported (75), never
    /// the reason to send the hour file again.
    pub(super) fn sign_alone(&mut self, sig: &FileChange, summary: &mut PushSummary) -> Result<()> {
        let (repo, branch) = (self.repo.clone(), self.branch.clone());
        let mut sha = sig.sha.clone();
        let mut result = Err(ForgeError::Network(String::new()));
        for _ in 0..3 {
            let opts = self.commit_options(format!(
                "usage: signature of {} from node {}",
                sig.path, self.ctx.opts.node
            ));
            summary.attempts += 1;
            result = self.retrying(summary, |c| match &sha {
                Some(sha) => c.update_file(&repo, &sig.path, &sig.content, sha, &opts),
                None => c.create_file(&repo, &sig.path, &sig.content, &opts),
            });
            match result {
                Err(e) if e.needs_reread() => {
                    sha = self
                        .retrying(summary, |c| c.read_file(&repo, &sig.path, Some(&branch)))
                        .map_err(forge_err)?
                        .map(|f| f.sha);
                    result = Err(e);
                }
                // Retries used up: the run ends and the hour stays pending,
                // so that the next run signs it (not just reported).
                Err(e) if e.is_retryable() => return Err(forge_err(e)),
                _ => break,
            }
        }
        match result {
            Ok(r) => {
                summary.commits += 1;
                summary.commit = Some(r.commit_sha);
            }
            Err(e) => {
                summary.unreadable_hours.push(Problem {
                    what: sig.path.clone(),
                    reason: format!(
                        "the hour file was committed, but its signature could not be: {e}; it is written when the hour next changes"
                    ),
                });
                summary.failure.get_or_insert(Kind::TempFail);
            }
        }
        Ok(())
    }

    /// A 413: halve the chunk and keep the smaller size for the rest of the
    /// run; a file refused alone leaves its hour pending (exit 75).
    fn too_large(
        &mut self,
        mut chunk: Chunk,
        queue: &mut VecDeque<Chunk>,
        message: &str,
        summary: &mut PushSummary,
    ) {
        let bytes = self.request_bytes(&chunk);
        if chunk.changes.len() > 1 {
            self.limit = self.limit.min(bytes / 2).max(1);
            let second = chunk.split_half();
            queue.push_front(second);
            queue.push_front(chunk);
            self.note(
                summary,
                format!(
                    "the server refused a request of about {bytes} bytes (413); sending at most {} bytes a request from now on",
                    self.limit
                ),
            );
            return;
        }
        let meta: &HourMeta = &chunk.meta[0];
        let mib = bytes.div_ceil(1024 * 1024);
        self.stuck.insert(meta.hour, meta.fresh.len());
        summary.unreadable_hours.push(Problem {
            what: chunk.changes[0].path.clone(),
            reason: format!(
                "{message}; this file alone needs a request body of about {bytes} bytes: raise the server's body limit to at least {mib} MiB (nginx: client_max_body_size {mib}m); its records stay pending"
            ),
        });
        summary.failure = Some(Kind::TempFail);
    }

    /// Wait before the next try, or give up when the retry window would
    /// pass: then `e`, saying so.
    fn wait_or_give_up(
        &mut self,
        e: &ForgeError,
        failures: u32,
        first: Instant,
        summary: &mut PushSummary,
    ) -> Result<(), ForgeError> {
        let policy = self.ctx.opts.retry;
        let asked = e.retry_after().unwrap_or_default();
        let wait = policy.wait(failures, &mut self.rng).max(asked);
        // Saturating: a Retry-After may name any wait, u64::MAX seconds too.
        if first.elapsed().saturating_add(wait) > policy.window {
            return Err(e.clone().noting(&format!(
                "{failures} attempt(s) over {} s, retries used up; nothing is lost, the next run retries",
                first.elapsed().as_secs()
            )));
        }
        let then = if e.needs_reread() {
            "re-reading and retrying"
        } else {
            "sending again"
        };
        self.note(
            summary,
            format!(
                "attempt {failures} failed ({e}); {then} in {:.1} s",
                wait.as_secs_f64()
            ),
        );
        std::thread::sleep(wait);
        Ok(())
    }

    /// A call, retried while it fails for a while (5xx, network, timeout)
    /// within the retry window; any other answer is the caller's. So a
    /// retryable error that comes back (but a stale sha) means the retries
    /// are used up.
    pub(super) fn retrying<T>(
        &mut self,
        summary: &mut PushSummary,
        mut call: impl FnMut(&ForgejoClient) -> Result<T, ForgeError>,
    ) -> Result<T, ForgeError> {
        let mut failures = 0;
        let mut first_failure = None;
        loop {
            match call(self.ctx.client) {
                Err(e) if e.is_retryable() && !e.needs_reread() => {
                    failures += 1;
                    let first = *first_failure.get_or_insert_with(Instant::now);
                    self.wait_or_give_up(&e, failures, first, summary)?;
                }
                other => return other,
            }
        }
    }

    /// After a stale sha: read the chunk's hours again and merge afresh.
    fn replan(&mut self, chunk: Chunk, summary: &mut PushSummary) -> Result<Chunk> {
        let (repo, branch) = (self.repo.clone(), self.branch.clone());
        if self.create_from.is_some()
            && self
                .retrying(summary, |c| c.branch_exists(&repo, &branch))
                .map_err(forge_err)?
        {
            self.create_from = None; // a lost reply created it
        }
        let mut out = Chunk::default();
        for (change, meta) in chunk.changes.into_iter().zip(chunk.meta) {
            let landed = meta.maybe_landed.then_some(change.operation);
            drop(change);
            let reread = true;
            if let Some((c, mut m)) =
                self.plan_hour(meta.hour, meta.fresh, landed, reread, summary)?
            {
                m.maybe_landed = meta.maybe_landed;
                out.push(c, m);
            }
        }
        Ok(out)
    }
}

/// An old server: every change of `chunk` becomes a request of its own,
/// ahead of the rest of the queue.
fn requeue_one_by_one(chunk: Chunk, queue: &mut VecDeque<Chunk>) {
    let singles: Vec<Chunk> = chunk
        .changes
        .into_iter()
        .zip(chunk.meta)
        .map(|(c, m)| {
            let mut one = Chunk::default();
            one.push(c, m);
            one
        })
        .collect();
    for one in singles.into_iter().rev() {
        queue.push_front(one);
    }
}
