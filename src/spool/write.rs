//! Writing records: tmp file → write → fsync → (writers' lock) check sent/ →
//! link(2) into pending/ (no clobber) → unlink tmp → fsync pending/.
//!
//! A batch is one group commit: its new records go into one chunk file
//! (per [`CHUNK_RECORDS`]), written and fsynced once, then hard-linked under
//! each record's name under one hold of the lock, then the directory is
//! fsynced once. A lone record gets a single-record file.

use super::files::{CHUNK_RECORDS, RecordLookup, render_chunk, render_single};
use super::{Ledger, RecordOutcome, Spool, cant, file_name_for_key};
use crate::failpoint::failpoint;
use crate::fsx;
use crate::record::{UsageRecord, Validated};
use anyhow::Result;
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

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
    /// this returns Ok, every `Recorded` (and `Duplicate`) is durable. A
    /// record whose key cannot be checked (a damaged ledger shard or stored
    /// record) is `Unchecked`, and the others go on.
    /// Steps: name each record, skip a lone known one, write the chunks
    /// (fsynced), then under the writers' lock check and link each, remove
    /// the tmp files and fsync `pending/`.
    pub fn record_batch(&self, items: &[Validated]) -> Result<Vec<RecordOutcome>> {
        let names: Vec<String> = items
            .iter()
            .map(|v| file_name_for_key(&v.record.idempotency_key))
            .collect();
        let first_of = first_occurrences(&names);
        let mut todo: Vec<usize> = (0..items.len()).filter(|&i| first_of[i] == i).collect();
        if let [only] = todo[..]
            && self.known_without_lock(&names[only], &items[only].record.idempotency_key)?
        {
            todo.clear();
        }
        let (tmps, file_of) = self.write_chunks(items, &todo)?;
        failpoint("record-after-fsync");

        let lock = self.lock_writers()?;
        let mut batch = Linker {
            spool: self,
            pending: self.dir("pending"),
            sent: self.dir("sent"),
            // Fresh reads under the lock.
            ledger: self.ledger(),
            lookup: RecordLookup::default(),
            tmps,
            changed: false,
        };
        let mut outcomes = Vec::with_capacity(items.len());
        for (i, v) in items.iter().enumerate() {
            outcomes.push(batch.link(v, &names[i], file_of[first_of[i]])?);
        }
        batch.finish()?;
        drop(lock);
        Ok(outcomes)
    }

    /// Whether a lone record's key is known already (pending, sent or in the
    /// ledger): a retried call then writes no file and costs no fsync. In a
    /// batch a known record costs only its bytes in the chunk, less than
    /// looking each up twice. Read without the lock: at worst a stale
    /// answer, which the check under the lock corrects.
    fn known_without_lock(&self, name: &str, key: &str) -> Result<bool> {
        let (pending, sent) = (self.dir("pending"), self.dir("sent"));
        let known = fsx::exists_nofollow(&pending.join(name))
            .and_then(|p| Ok(p || fsx::exists_nofollow(&sent.join(name))?))
            .map_err(cant(|| format!("cannot check {}", pending.display())))?;
        if known {
            return Ok(true);
        }
        // A ledger that cannot be read: the check under the lock says so.
        Ok(matches!(self.ledger().find(key), Ok(Some(_))))
    }

    /// What recording `v` would come to, read without the lock and
    /// changing nothing (a dry run's preview of `incoming/`): `None` when it
    /// would be recorded; the same checks as under the lock.
    pub(crate) fn known_outcome(&self, v: &Validated) -> Result<Option<RecordOutcome>> {
        let key = &v.record.idempotency_key;
        let name = file_name_for_key(key);
        let mut lookup = RecordLookup::default();
        for sub in ["sent", "pending"] {
            let path = self.dir(sub).join(&name);
            if fsx::exists_nofollow(&path)
                .map_err(cant(|| format!("cannot check {}", path.display())))?
            {
                return compare_stored(v, &mut lookup, &path, &name).map(Some);
            }
        }
        Ok(match self.ledger().find(key) {
            Ok(None) => None,
            Ok(Some(known)) => Some(outcome_of(
                known.differing_fields(&v.record, !v.occurred_at_given),
            )),
            Err(e) => Some(RecordOutcome::Unchecked(format!(
                "idempotency key `{key}` not recorded: cannot read the ledger {}: {e}",
                self.dir("ledger").display()
            ))),
        })
    }

    /// Write the records `todo` names as chunks of at most [`CHUNK_RECORDS`]
    /// (each fsynced); returns the files and, for each item, its file's index.
    fn write_chunks(
        &self,
        items: &[Validated],
        todo: &[usize],
    ) -> Result<(TmpFiles, Vec<Option<usize>>)> {
        let mut file_of: Vec<Option<usize>> = vec![None; items.len()];
        let mut tmps = TmpFiles(Vec::new());
        for group in todo.chunks(CHUNK_RECORDS) {
            let records: Vec<&UsageRecord> = group.iter().map(|&i| &items[i].record).collect();
            tmps.0.push(self.write_tmp(&records)?);
            for &i in group {
                file_of[i] = Some(tmps.0.len() - 1);
            }
        }
        Ok((tmps, file_of))
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

/// For each name, the index of its first occurrence: each key gets one
/// file to link, the first occurrence's, which repeats within the batch
/// share (their link then finds the name).
fn first_occurrences(names: &[String]) -> Vec<usize> {
    let mut first: HashMap<&str, usize> = HashMap::new();
    names
        .iter()
        .enumerate()
        .map(|(i, name)| *first.entry(name.as_str()).or_insert(i))
        .collect()
}

/// The part of a group commit done under the writers' lock.
struct Linker<'a> {
    spool: &'a Spool,
    pending: PathBuf,
    sent: PathBuf,
    ledger: Ledger,
    lookup: RecordLookup,
    tmps: TmpFiles,
    /// Whether `pending/` must be fsynced.
    changed: bool,
}

impl Linker<'_> {
    /// Check one record against what the spool knows, and link it into
    /// `pending/` when it is new. `file` is the tmp file holding it, if any.
    fn link(&mut self, v: &Validated, name: &str, file: Option<usize>) -> Result<RecordOutcome> {
        let key = &v.record.idempotency_key;
        let (target, in_sent) = (self.pending.join(name), self.sent.join(name));
        if fsx::exists_nofollow(&in_sent)
            .map_err(cant(|| format!("cannot check {}", self.sent.display())))?
        {
            return compare_stored(v, &mut self.lookup, &in_sent, name);
        }
        // Pushed and pruned long ago: the ledger still knows the key.
        let ledger_dir = || {
            format!(
                "cannot read the ledger {}",
                self.spool.dir("ledger").display()
            )
        };
        match self.ledger.find(key) {
            Ok(Some(known)) => {
                return Ok(outcome_of(
                    known.differing_fields(&v.record, !v.occurred_at_given),
                ));
            }
            Ok(None) => {}
            // Its shard is damaged: the key cannot be told from one pushed
            // long ago. Pending, it is not in the ledger; else this record
            // alone is held back, and the others of the batch go on.
            Err(e) => {
                if fsx::exists_nofollow(&target)
                    .map_err(cant(|| format!("cannot check {}", self.pending.display())))?
                {
                    self.changed = true;
                    return compare_stored(v, &mut self.lookup, &target, name);
                }
                return Ok(RecordOutcome::Unchecked(format!(
                    "idempotency key `{key}` not recorded: {}: {e}",
                    ledger_dir()
                )));
            }
        }
        let tmp = match file {
            Some(f) => self.tmps.0[f].clone(),
            None => {
                if fsx::exists_nofollow(&target)
                    .map_err(cant(|| format!("cannot check {}", self.pending.display())))?
                {
                    self.changed = true; // make sure what we call a duplicate is durable
                    return compare_stored(v, &mut self.lookup, &target, name);
                }
                // Known at the pre-check, gone since (pruned): write it now.
                self.single_tmp(&v.record)?
            }
        };
        let linked = match fs::hard_link(&tmp, &target) {
            // A file system with few links per file: this record alone.
            Err(e) if e.kind() == io::ErrorKind::TooManyLinks => {
                fs::hard_link(self.single_tmp(&v.record)?, &target)
            }
            other => other,
        };
        match linked {
            Ok(()) => {
                failpoint("record-after-link");
                self.changed = true;
                Ok(RecordOutcome::Recorded)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                self.changed = true;
                compare_stored(v, &mut self.lookup, &target, name)
            }
            Err(e) => Err(cant(|| {
                format!("cannot link a record into {}", self.pending.display())
            })(e)),
        }
    }

    fn single_tmp(&mut self, rec: &UsageRecord) -> Result<PathBuf> {
        let path = self.spool.write_tmp(&[rec])?;
        self.tmps.0.push(path.clone());
        Ok(path)
    }

    /// Remove the tmp files, then fsync `pending/` if anything changed.
    fn finish(mut self) -> Result<()> {
        for t in std::mem::take(&mut self.tmps.0) {
            fs::remove_file(&t).map_err(cant(|| format!("cannot remove {}", t.display())))?;
        }
        failpoint("record-after-unlink-tmp");
        if self.changed {
            fsx::sync_dir(&self.pending)
                .map_err(cant(|| format!("cannot sync {}", self.pending.display())))?;
        }
        failpoint("record-after-dir-fsync");
        Ok(())
    }
}

/// Compare a new record with the one stored at `path` (named `name`).
/// A stored record that cannot be read (damaged) holds back this record
/// alone, as a damaged ledger shard does, never the rest of its batch: the
/// push quarantines the entry (a pending one at its next run; a sent one
/// when pruned, its key kept in the ledger).
fn compare_stored(
    v: &Validated,
    lookup: &mut RecordLookup,
    path: &Path,
    name: &str,
) -> Result<RecordOutcome> {
    let key = &v.record.idempotency_key;
    Ok(match lookup.get(path, name, key)? {
        Ok(old) => outcome_of(v.record.differing_fields(&old, !v.occurred_at_given)),
        Err(why) => RecordOutcome::Unchecked(format!(
            "idempotency key `{key}` not recorded: the record stored under it cannot be read: {why}"
        )),
    })
}

/// Duplicate when no field differs, else a conflict naming them.
pub(super) fn outcome_of(diff: Vec<&'static str>) -> RecordOutcome {
    if diff.is_empty() {
        RecordOutcome::Duplicate
    } else {
        RecordOutcome::Conflict(diff)
    }
}
