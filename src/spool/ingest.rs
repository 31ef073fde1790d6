//! The `incoming/` drop box: validate, deduplicate, move into place, or
//! quarantine; and the cleanup of leftovers in `tmp/`.

use super::{MAX_RECORD_BYTES, RecordOutcome, Spool, TMP_MAX_AGE, cant, fsx};
use crate::record::{Defaults, RecordInput, Validated, describe};
use anyhow::Result;
use chrono::{DateTime, Utc};
use std::fs;
use std::io;
use std::time::SystemTime;

/// What one ingestion did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Drops that became pending records.
    pub ingested: usize,
    /// Drops whose record was already known identically (removed).
    pub duplicates: usize,
    /// Drops moved to `rejected/`: (file name in `incoming/`, reason).
    pub quarantined: Vec<(String, String)>,
}

/// A name in `incoming/` that is a drop: ends in `.toml`, no leading dot.
pub(crate) fn is_drop_name(name: &str) -> bool {
    name.ends_with(".toml") && !name.starts_with('.')
}

impl Spool {
    /// Remove files in `tmp/` older than [`TMP_MAX_AGE`] (left by crashed
    /// writers or abandoned shell drops). Returns how many.
    pub fn clean_tmp(&self) -> Result<usize> {
        let dir = self.dir("tmp");
        let limit = SystemTime::now() - TMP_MAX_AGE;
        let mut removed = 0;
        for name in self.names("tmp")? {
            let p = dir.join(&name);
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            let old = m.modified().map(|t| t < limit).unwrap_or(false);
            if old && (m.is_file() || m.file_type().is_symlink()) {
                match fs::remove_file(&p) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(cant(format!("cannot remove {}", p.display()))(e)),
                }
            }
        }
        Ok(removed)
    }

    /// Ingest every drop in `incoming/`: a valid one becomes a pending record
    /// exactly as `record` makes one (then the drop is removed); a duplicate
    /// is removed; anything else is moved to `rejected/` with a `.reason`.
    /// `node` fills a missing `node_id`; a missing `occurred_at` is the
    /// drop's modification time. Also cleans old `tmp/` leftovers.
    pub fn ingest_incoming(&self, node: &str, now: DateTime<Utc>) -> Result<IngestReport> {
        self.clean_tmp()?;
        let incoming = self.dir("incoming");
        let names: Vec<String> = self
            .names("incoming")?
            .into_iter()
            .filter(|n| is_drop_name(n))
            .collect();
        let mut report = IngestReport::default();
        // One group commit (one chunk file) per CHUNK_RECORDS drops: memory
        // stays flat however many wait.
        for chunk in names.chunks(super::CHUNK_RECORDS) {
            let mut valid: Vec<(&String, Validated)> = Vec::new();
            let mut bad: Vec<(String, String)> = Vec::new();
            for name in chunk {
                let p = incoming.join(name);
                let m = match fs::symlink_metadata(&p) {
                    Ok(m) => m,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(cant(format!("cannot check {}", p.display()))(e)),
                };
                if m.file_type().is_symlink() {
                    bad.push((
                        name.clone(),
                        "drop: is a symbolic link; a drop must be a regular file (its target was not read)".into(),
                    ));
                    continue;
                }
                if !m.is_file() {
                    bad.push((name.clone(), "drop: is not a regular file".into()));
                    continue;
                }
                let bytes = match fsx::read_regular(&p, MAX_RECORD_BYTES) {
                    Ok(b) => b,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                        bad.push((
                            name.clone(),
                            format!("drop: is larger than {MAX_RECORD_BYTES} bytes"),
                        ));
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                        bad.push((name.clone(), "drop: changed while it was opened".into()));
                        continue;
                    }
                    Err(e) => return Err(cant(format!("cannot read {}", p.display()))(e)),
                };
                let Ok(text) = String::from_utf8(bytes) else {
                    bad.push((name.clone(), "drop: is not UTF-8 text".into()));
                    continue;
                };
                let input = match RecordInput::from_toml(&text) {
                    Ok(i) => i,
                    Err(problem) => {
                        bad.push((name.clone(), format!("drop: {problem}")));
                        continue;
                    }
                };
                let defaults = Defaults {
                    node: node.to_string(),
                    now,
                    occurred_at: m.modified().ok().map(DateTime::<Utc>::from),
                };
                match input.validate(&defaults) {
                    Ok(v) => valid.push((name, v)),
                    Err(errs) => bad.push((name.clone(), describe(&errs))),
                }
            }

            let records: Vec<Validated> = valid.iter().map(|(_, v)| v.clone()).collect();
            let outcomes = self.record_batch(&records)?;
            let mut removed = false;
            for ((name, v), outcome) in valid.iter().zip(outcomes) {
                match outcome {
                    RecordOutcome::Recorded => report.ingested += 1,
                    RecordOutcome::Duplicate => report.duplicates += 1,
                    RecordOutcome::Conflict(fields) => {
                        bad.push((
                            (*name).clone(),
                            format!(
                                "idempotency_key: `{}` was already recorded on this node with different {}; \
                                 use a new key for a new record",
                                v.record.idempotency_key,
                                fields.join(", ")
                            ),
                        ));
                        continue;
                    }
                }
                let p = incoming.join(name);
                match fs::remove_file(&p) {
                    Ok(()) => removed = true,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(cant(format!("cannot remove {}", p.display()))(e)),
                }
            }
            if removed {
                fsx::sync_dir(&incoming)
                    .map_err(cant(format!("cannot sync {}", incoming.display())))?;
            }
            if !bad.is_empty() {
                let _lock = self.lock_writers()?;
                for (name, reason) in bad {
                    let p = incoming.join(&name);
                    if !fsx::exists_nofollow(&p)
                        .map_err(cant(format!("cannot check {}", p.display())))?
                    {
                        continue; // another ingestion took it
                    }
                    self.quarantine_locked(&p, &name, &reason)?;
                    report.quarantined.push((name, reason));
                }
            }
        }
        Ok(report)
    }
}
