//! Marking committed records sent on a thread of its own.
//!
//! A backlog's drain renames one directory entry per record; done inline,
//! those renames (and freeing the records) came after every commit, adding
//! their time to the run's. Handed to this thread they overlap with the
//! next batch's reading, merging and commit. Step 7 of man 1
//! hero_usage_push holds: only records whose commit landed are handed over,
//! and a crash before the thread is done leaves records pending that the
//! next run finds in the billing repository and marks (step 5), never
//! commits again.

use super::super::merge::Pending;
use crate::failpoint::failpoint;
use crate::spool::{PendingId, Spool};
use anyhow::{Result, anyhow};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

/// The marking thread, started by the first commit and finished before the
/// spool is scanned again (a scan must not see committed records pending)
/// and before the run ends.
#[derive(Default)]
pub(super) struct Marker {
    running: Option<Running>,
}

/// The thread's inbox (bounded) and the thread.
type Running = (SyncSender<Vec<Pending>>, JoinHandle<Result<()>>);

impl Marker {
    /// Mark the records of a landed commit sent (durably, in order).
    pub(super) fn mark(&mut self, spool: &Spool, records: Vec<Pending>) -> Result<()> {
        let (tx, _) = self.running.get_or_insert_with(|| start(spool.clone()));
        if let Err(returned) = tx.send(records) {
            // The thread stopped on an error: report it, or mark here.
            self.finish()?;
            return mark_now(spool, &returned.0);
        }
        Ok(())
    }

    /// Wait until everything handed over is marked; its error, if any.
    pub(super) fn finish(&mut self) -> Result<()> {
        let Some((tx, thread)) = self.running.take() else {
            return Ok(());
        };
        drop(tx);
        thread
            .join()
            .map_err(|_| anyhow!("the thread marking records sent panicked (a bug)"))?
    }
}

impl Drop for Marker {
    /// A run that ends on an error still marks what it committed.
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

fn start(spool: Spool) -> Running {
    // One commit's records waiting at most: when marking is slower than
    // committing, the drain waits instead of holding batch after batch.
    let (tx, rx) = sync_channel::<Vec<Pending>>(1);
    let thread = std::thread::spawn(move || {
        for records in rx {
            mark_now(&spool, &records)?;
        }
        Ok(())
    });
    (tx, thread)
}

fn mark_now(spool: &Spool, records: &[Pending]) -> Result<()> {
    let ids: Vec<&PendingId> = records.iter().map(|(id, _)| id).collect();
    spool.mark_sent(&ids)?;
    failpoint("push-after-mark");
    Ok(())
}
