//! Writing records: tmp file → write → fsync → (writers' lock) check sent/ →
//! link(2) into pending/ (no clobber) → unlink tmp → fsync pending/.
//!
//! A batch is one group commit: its new records go into one chunk file
//! (per [`CHUNK_RECORDS`]), written and fsynced once, then hard-linked under
//! each record's name under one hold of the lock, then the directory is
//! fsynced once. A lone record gets a single-record file.

use super::files::{CHUNK_RECORDS, RecordLookup, render_chunk, render_single};
use super::{RecordOutcome, Spool, cant, file_name_for_key, fsx};
use crate::failpoint::failpoint;
use crate::record::{UsageRecord, Validated};
use anyhow::Result;
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::PathBuf;

/// Temporary files that are removed when dropped (on error paths too).
struct TmpFiles(Vec<PathBuf>);

impl Drop for TmpFiles {
    fn drop(&mut self) {
        for p in &self.0 {
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

        // Each key gets one file to link: the first occurrence's, which
        // repeats within the batch share (their link then finds the name).
        let mut first: HashMap<&str, usize> = HashMap::new();
        let first_of: Vec<usize> = names
            .iter()
            .enumerate()
            .map(|(i, name)| *first.entry(name.as_str()).or_insert(i))
            .collect();
        let mut todo: Vec<usize> = (0..items.len()).filter(|&i| first_of[i] == i).collect();
        // A lone record already known needs no file at all: a retried call
        // costs no fsync. In a batch a known record costs only its bytes in
        // the chunk, less than looking each up twice.
        let mut ledger = self.ledger();
        let ledger_err =
            || cant(|| format!("cannot read the ledger {}", self.dir("ledger").display()));
        if let [only] = todo[..] {
            let known = fsx::exists_nofollow(&pending.join(&names[only]))
                .and_then(|p| Ok(p || fsx::exists_nofollow(&sent.join(&names[only]))?))
                .map_err(cant(|| format!("cannot check {}", pending.display())))?;
            // Read without the lock: at worst a stale answer, which the
            // check under the lock corrects.
            let ledgered = !known
                && ledger
                    .find(&items[only].record.idempotency_key)
                    .map_err(ledger_err())?
                    .is_some();
            if known || ledgered {
                todo.clear();
            }
        }
        // Which tmp file holds item i's record, if one was written for it.
        let mut file_of: Vec<Option<usize>> = vec![None; items.len()];
        let mut tmps = TmpFiles(Vec::new());
        for group in todo.chunks(CHUNK_RECORDS) {
            let records: Vec<&UsageRecord> = group.iter().map(|&i| &items[i].record).collect();
            tmps.0.push(self.write_tmp(&records)?);
            for &i in group {
                file_of[i] = Some(tmps.0.len() - 1);
            }
        }
        failpoint("record-after-fsync");

        let lock = self.lock_writers()?;
        // Fresh reads under the lock.
        let mut ledger = self.ledger();
        let mut lookup = RecordLookup::default();
        let mut outcomes = Vec::with_capacity(items.len());
        let mut changed = false;
        for (i, v) in items.iter().enumerate() {
            let name = &names[i];
            let target = pending.join(name);
            let in_sent = sent.join(name);
            if fsx::exists_nofollow(&in_sent)
                .map_err(cant(|| format!("cannot check {}", sent.display())))?
            {
                outcomes.push(compare(
                    v,
                    &lookup.get(&in_sent, name, &v.record.idempotency_key)?,
                ));
                continue;
            }
            // Pushed and pruned long ago: the ledger still knows the key.
            if let Some(known) = ledger
                .find(&v.record.idempotency_key)
                .map_err(ledger_err())?
            {
                let diff = known.differing_fields(&v.record, !v.occurred_at_given);
                outcomes.push(outcome_of(diff));
                continue;
            }
            let tmp = match file_of[first_of[i]] {
                Some(f) => tmps.0[f].clone(),
                None => {
                    if fsx::exists_nofollow(&target)
                        .map_err(cant(|| format!("cannot check {}", pending.display())))?
                    {
                        changed = true; // make sure what we call a duplicate is durable
                        outcomes.push(compare(
                            v,
                            &lookup.get(&target, name, &v.record.idempotency_key)?,
                        ));
                        continue;
                    }
                    // Known at the pre-check, gone since (pruned): write it now.
                    tmps.0.push(self.write_tmp(&[&v.record])?);
                    tmps.0.last().expect("just pushed").clone()
                }
            };
            let linked = match fs::hard_link(&tmp, &target) {
                // A file system with few links per file: this record alone.
                Err(e) if e.kind() == io::ErrorKind::TooManyLinks => {
                    tmps.0.push(self.write_tmp(&[&v.record])?);
                    fs::hard_link(tmps.0.last().expect("just pushed"), &target)
                }
                other => other,
            };
            match linked {
                Ok(()) => {
                    failpoint("record-after-link");
                    changed = true;
                    outcomes.push(RecordOutcome::Recorded);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    changed = true;
                    outcomes.push(compare(
                        v,
                        &lookup.get(&target, name, &v.record.idempotency_key)?,
                    ));
                }
                Err(e) => {
                    return Err(cant(|| {
                        format!("cannot link a record into {}", pending.display())
                    })(e));
                }
            }
        }
        for t in std::mem::take(&mut tmps.0) {
            fs::remove_file(&t).map_err(cant(|| format!("cannot remove {}", t.display())))?;
        }
        failpoint("record-after-unlink-tmp");
        if changed {
            fsx::sync_dir(&pending)
                .map_err(cant(|| format!("cannot sync {}", pending.display())))?;
        }
        failpoint("record-after-dir-fsync");
        drop(lock);
        Ok(outcomes)
    }

    /// Create a tmp file (O_EXCL, 0600) holding `records` (one is a
    /// single-record file, more a chunk) and fsync it.
    fn write_tmp(&self, records: &[&UsageRecord]) -> Result<PathBuf> {
        let text = match records {
            [one] => render_single(one)?,
            _ => render_chunk(records.iter().copied())?,
        };
        let tmp_dir = self.dir("tmp");
        let path = tmp_dir.join(fsx::unique_name("rec"));
        let mut f = fsx::create_new(&path).map_err(cant(|| {
            format!("cannot create a file in {}", tmp_dir.display())
        }))?;
        let written = io::Write::write_all(&mut f, text.as_bytes());
        failpoint("record-after-tmp-write");
        if let Err(e) = written.and_then(|()| f.sync_all()) {
            let _ = fs::remove_file(&path);
            return Err(cant(|| format!("cannot write {}", path.display()))(e));
        }
        Ok(path)
    }
}

/// Compare a new record with the one already stored under its key.
fn compare(v: &Validated, old: &UsageRecord) -> RecordOutcome {
    outcome_of(v.record.differing_fields(old, !v.occurred_at_given))
}

/// Duplicate when no field differs, else a conflict naming them.
fn outcome_of(diff: Vec<&'static str>) -> RecordOutcome {
    if diff.is_empty() {
        RecordOutcome::Duplicate
    } else {
        RecordOutcome::Conflict(diff)
    }
}
