//! Writing records: tmp file → write → fsync → (writers' lock) check sent/ →
//! link(2) into pending/ (no clobber) → unlink tmp → fsync pending/.
//!
//! A batch is one group commit: every file is written and fsynced (in
//! parallel, so the file system can fold the fsyncs into few journal
//! commits), then all are linked under one lock hold, then the directory is
//! fsynced once.

use super::{RecordOutcome, Spool, cant, file_name_for_key, fsx, render};
use crate::failpoint::failpoint;
use crate::record::Validated;
use anyhow::Result;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// At most this many threads write and fsync a batch's files.
const SYNC_THREADS: usize = 8;

/// What one writer thread made, and the error that stopped it.
type ThreadResult = (Vec<(usize, PathBuf)>, Option<anyhow::Error>);

/// Temporary files that are removed when dropped (on error paths).
struct TmpFiles(Vec<Option<PathBuf>>);

impl Drop for TmpFiles {
    fn drop(&mut self) {
        for p in self.0.iter().flatten() {
            let _ = fs::remove_file(p);
        }
    }
}

impl Spool {
    /// Record one validated record durably: `Recorded` only once the file is
    /// fsynced, linked into `pending/` and the directory fsynced.
    pub fn record(&self, v: &Validated) -> Result<RecordOutcome> {
        let mut out = self.record_batch(std::slice::from_ref(v))?;
        Ok(out.pop().expect("one outcome per item"))
    }

    /// Record many records as one group commit; outcomes in input order. When
    /// this returns Ok, every `Recorded` (and `Duplicate`) is durable.
    pub fn record_batch(&self, items: &[Validated]) -> Result<Vec<RecordOutcome>> {
        let pending = self.dir("pending");
        let sent = self.dir("sent");
        let names: Vec<String> = items
            .iter()
            .map(|v| file_name_for_key(&v.record.idempotency_key))
            .collect();

        // Lock-free pre-check: a key already known needs no tmp file (records
        // only ever move pending → sent, and the locked check below decides).
        let mut todo = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let known = fsx::exists_nofollow(&pending.join(name))
                .and_then(|p| Ok(p || fsx::exists_nofollow(&sent.join(name))?))
                .map_err(cant(format!("cannot check {}", pending.display())))?;
            if !known {
                todo.push(i);
            }
        }
        let mut tmps = TmpFiles(vec![None; items.len()]);
        self.write_tmps(items, &todo, &mut tmps)?;
        failpoint("record-after-fsync");

        let lock = self.lock_writers()?;
        let mut outcomes = Vec::with_capacity(items.len());
        let mut changed = false;
        for (i, v) in items.iter().enumerate() {
            let target = pending.join(&names[i]);
            let in_sent = sent.join(&names[i]);
            if fsx::exists_nofollow(&in_sent)
                .map_err(cant(format!("cannot check {}", sent.display())))?
            {
                outcomes.push(compare(v, &in_sent)?);
                continue;
            }
            let tmp = match &tmps.0[i] {
                Some(t) => t.clone(),
                None => {
                    if fsx::exists_nofollow(&target)
                        .map_err(cant(format!("cannot check {}", pending.display())))?
                    {
                        changed = true; // make sure what we call a duplicate is durable
                        outcomes.push(compare(v, &target)?);
                        continue;
                    }
                    // Known at the pre-check, pruned since: write it now.
                    let t = self.write_one_tmp(v)?;
                    tmps.0[i] = Some(t.clone());
                    t
                }
            };
            match fs::hard_link(&tmp, &target) {
                Ok(()) => {
                    failpoint("record-after-link");
                    changed = true;
                    outcomes.push(RecordOutcome::Recorded);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    changed = true;
                    outcomes.push(compare(v, &target)?);
                }
                Err(e) => {
                    return Err(cant(format!(
                        "cannot link a record into {}",
                        pending.display()
                    ))(e));
                }
            }
        }
        for p in tmps.0.iter_mut() {
            if let Some(t) = p.take() {
                fs::remove_file(&t).map_err(cant(format!("cannot remove {}", t.display())))?;
            }
        }
        failpoint("record-after-unlink-tmp");
        if changed {
            fsx::sync_dir(&pending).map_err(cant(format!("cannot sync {}", pending.display())))?;
        }
        failpoint("record-after-dir-fsync");
        drop(lock);
        Ok(outcomes)
    }

    /// Write and fsync the tmp files of `items[todo]`, in parallel.
    fn write_tmps(&self, items: &[Validated], todo: &[usize], tmps: &mut TmpFiles) -> Result<()> {
        if todo.is_empty() {
            return Ok(());
        }
        let threads = todo.len().div_ceil(8).clamp(1, SYNC_THREADS);
        if threads == 1 {
            for &i in todo {
                tmps.0[i] = Some(self.write_one_tmp(&items[i])?);
            }
            return Ok(());
        }
        let results: Vec<ThreadResult> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || {
                        let mut done = Vec::new();
                        for &i in todo.iter().skip(t).step_by(threads) {
                            match self.write_one_tmp(&items[i]) {
                                Ok(p) => done.push((i, p)),
                                Err(e) => return (done, Some(e)),
                            }
                        }
                        (done, None)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("writer thread panicked"))
                .collect()
        });
        let mut first_err = None;
        for (done, err) in results {
            for (i, p) in done {
                tmps.0[i] = Some(p);
            }
            if first_err.is_none() {
                first_err = err;
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Create a tmp file (O_EXCL, 0600) with the record, fsync it.
    fn write_one_tmp(&self, v: &Validated) -> Result<PathBuf> {
        let text = render(&v.record)?;
        let tmp_dir = self.dir("tmp");
        let path = tmp_dir.join(fsx::unique_name("rec"));
        let mut f = fsx::create_new(&path).map_err(cant(format!(
            "cannot create a file in {}",
            tmp_dir.display()
        )))?;
        let written = io::Write::write_all(&mut f, text.as_bytes());
        failpoint("record-after-tmp-write");
        if let Err(e) = written.and_then(|()| f.sync_all()) {
            let _ = fs::remove_file(&path);
            return Err(cant(format!("cannot write {}", path.display()))(e));
        }
        Ok(path)
    }
}

/// Compare a new record with the one already stored under its key.
fn compare(v: &Validated, existing: &Path) -> Result<RecordOutcome> {
    let old = Spool::read_record_file(existing)?;
    let diff = v.record.differing_fields(&old, !v.occurred_at_given);
    Ok(if diff.is_empty() {
        RecordOutcome::Duplicate
    } else {
        RecordOutcome::Conflict(diff)
    })
}
