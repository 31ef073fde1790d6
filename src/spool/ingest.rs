//! The `incoming/` drop box: validate, deduplicate, move into place, or
//! quarantine; and the cleanup of leftovers in `tmp/`.
//!
//! A drop is any entry whose name ends in `.toml` and does not begin with a
//! dot, whatever its other bytes (UTF-8 or not, any length) and whatever it
//! is (file, directory, symlink, fifo, socket): each is ingested or
//! quarantined, never left unseen, and none stops the push. Any other entry
//! not led by a dot (a stray) is counted as waiting and quarantined once it
//! has waited an hour. A drop's mode and its links outside the spool are
//! never changed.

use super::write::outcome_of;
use super::{MAX_RECORD_BYTES, RecordOutcome, Spool, TMP_MAX_AGE, cant};
use crate::fsx;
use crate::record::{Defaults, RecordInput, UsageRecord, Validated, describe};
use crate::text::escape_name;
use anyhow::Result;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

/// What one ingestion did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// Drops that became pending records.
    pub ingested: usize,
    /// Drops whose record was already known identically (removed).
    pub duplicates: usize,
    /// Drops moved to `rejected/`: (file name in `incoming/`, escaped so
    /// that it prints safely; reason).
    pub quarantined: Vec<(String, String)>,
    /// Drops left in `incoming/` because their key cannot be checked (a
    /// damaged ledger shard or stored record): (escaped name, reason).
    pub held_back: Vec<(String, String)>,
}

/// Why a drop is not ingested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reason {
    /// It is no longer there (another ingestion took it).
    Gone,
    /// It is not a valid record: quarantine it with this reason, if its
    /// name still holds the inode judged (`None`: it could not be seen).
    Bad { why: String, judged: Option<u64> },
}

/// Longest name a quarantined drop keeps as it is; a longer one (or one
/// that is not plain text) is renamed, so that `NAME.reason` and a `.N`
/// suffix still fit in a file name (255 bytes).
const MAX_KEPT_NAME: usize = 200;

/// A name in `incoming/` that is a drop: ends in `.toml`, no leading dot.
pub(crate) fn is_drop_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    b.ends_with(b".toml") && !b.starts_with(b".")
}

/// The name a drop is kept under in `rejected/`: its own when that is
/// plain UTF-8 without control characters and short enough; else a
/// readable prefix and a digest of the original bytes.
fn rejected_name(name: &OsStr) -> String {
    if let Some(s) = name.to_str()
        && s.len() <= MAX_KEPT_NAME
        && !s.chars().any(char::is_control)
    {
        return s.to_string();
    }
    let mut prefix = String::new();
    for c in String::from_utf8_lossy(name.as_bytes()).chars() {
        let c = if c.is_control() || c == char::REPLACEMENT_CHARACTER {
            '_'
        } else {
            c
        };
        if prefix.len() + c.len_utf8() > 100 {
            break;
        }
        prefix.push(c);
    }
    let digest = fsx::hex(&Sha256::digest(name.as_bytes()));
    format!("{prefix}~{}.toml", &digest[..16])
}

impl Spool {
    /// Every name in a sub-directory, whatever its bytes (`names` skips
    /// those that are not UTF-8, which no drop and no leftover may hide
    /// behind), sorted; a missing sub-directory is empty.
    fn names_any(&self, sub: &str) -> Result<Vec<OsString>> {
        let dir = self.dir(sub);
        let rd = match fs::read_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            other => other.map_err(|e| cant(format!("cannot list {}", dir.display()))(e))?,
        };
        let mut names = Vec::new();
        for e in rd {
            names.push(
                e.map_err(|e| cant(format!("cannot list {}", dir.display()))(e))?
                    .file_name(),
            );
        }
        names.sort();
        Ok(names)
    }

    /// The drops in `incoming/`, by name (any bytes), sorted.
    pub(crate) fn drop_names(&self) -> Result<Vec<OsString>> {
        let mut names = self.names_any("incoming")?;
        names.retain(|n| is_drop_name(n));
        Ok(names)
    }

    /// Entries in `incoming/` that are neither drops nor dot names (a
    /// script's `mv` that lost the `.toml`, a `.reason` moved back with its
    /// file): never read as drops, yet never to be left unseen.
    fn stray_names(&self) -> Result<Vec<OsString>> {
        let mut names = self.names_any("incoming")?;
        names.retain(|n| !is_drop_name(n) && !n.as_bytes().starts_with(b"."));
        Ok(names)
    }

    /// How many drops (and strays) wait in `incoming/`, and since when the
    /// oldest has waited: the ctime its rename into `incoming/` set (its
    /// mtime is its `occurred_at` by contract, not when it arrived).
    pub(crate) fn incoming_waiting(&self) -> Result<(usize, Option<DateTime<Utc>>)> {
        let incoming = self.dir("incoming");
        let (mut count, mut oldest) = (0, None::<SystemTime>);
        for name in self.drop_names()?.into_iter().chain(self.stray_names()?) {
            let p = incoming.join(&name);
            let m = match fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // ingested meanwhile
                Err(e) => return Err(cant(format!("cannot check {}", p.display()))(e)),
            };
            count += 1;
            let t = fsx::changed_at(&m);
            oldest = Some(oldest.map_or(t, |o| o.min(t)));
        }
        Ok((count, oldest.map(DateTime::<Utc>::from)))
    }

    /// Remove files in `tmp/` older than [`TMP_MAX_AGE`] (left by crashed
    /// writers or abandoned shell drops), judged by ctime: a script may set
    /// its file's mtime (`touch -d`) before it renames the file into
    /// `incoming/`, and must not lose it meanwhile. Returns how many.
    pub fn clean_tmp(&self) -> Result<usize> {
        let dir = self.dir("tmp");
        let limit = SystemTime::now() - TMP_MAX_AGE;
        let mut removed = 0;
        for name in self.names_any("tmp")? {
            let p = dir.join(&name);
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            let old = fsx::changed_at(&m) < limit;
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
        let mut report = IngestReport::default();
        // One group commit (one chunk file) per CHUNK_RECORDS drops: memory
        // stays flat however many wait.
        for chunk in self.drop_names()?.chunks(super::CHUNK_RECORDS) {
            // Each drop read with the inode it was read from.
            let mut names: Vec<(&OsString, u64)> = Vec::new();
            let mut records: Vec<Validated> = Vec::new();
            // A bad drop with the inode judged.
            let mut bad: Vec<(&OsString, Option<u64>, String)> = Vec::new();
            for name in chunk {
                match read_drop(&incoming.join(name), node, now) {
                    Ok((v, ino)) => {
                        names.push((name, ino));
                        records.push(v);
                    }
                    Err(Reason::Gone) => {}
                    Err(Reason::Bad { why, judged }) => bad.push((name, judged, why)),
                }
            }
            let outcomes = self.record_batch(&records)?;
            let mut taken = Vec::new();
            for (((name, ino), v), outcome) in names.into_iter().zip(&records).zip(outcomes) {
                match outcome {
                    RecordOutcome::Recorded => report.ingested += 1,
                    RecordOutcome::Duplicate => report.duplicates += 1,
                    RecordOutcome::Conflict(fields) => {
                        let why = drop_conflict(&v.record.idempotency_key, &fields);
                        bad.push((name, Some(ino), why));
                        continue;
                    }
                    RecordOutcome::Unchecked(why) => {
                        // A good record: it waits in incoming/ until the
                        // ledger is repaired, reported every run.
                        report.held_back.push((escape_name(name), why));
                        continue;
                    }
                }
                taken.push((name, ino));
            }
            self.remove_drops(&taken)?;
            self.quarantine_drops(bad, &mut report)?;
        }
        self.quarantine_strays(now, &mut report)?;
        Ok(report)
    }

    /// What [`Spool::ingest_incoming`] would do, changing nothing (a dry
    /// run): the records it would add (the first drop of each key), and its
    /// report (duplicates, what it would quarantine or hold back).
    pub fn preview_incoming(
        &self,
        node: &str,
        now: DateTime<Utc>,
    ) -> Result<(Vec<UsageRecord>, IngestReport)> {
        let incoming = self.dir("incoming");
        let mut report = IngestReport::default();
        let mut new: Vec<Validated> = Vec::new();
        let mut first: HashMap<String, usize> = HashMap::new();
        for name in self.drop_names()? {
            let shown = escape_name(&name);
            let v = match read_drop(&incoming.join(&name), node, now) {
                Ok((v, _)) => v,
                Err(Reason::Gone) => continue,
                Err(Reason::Bad { why, .. }) => {
                    report.quarantined.push((shown, why));
                    continue;
                }
            };
            let key = v.record.idempotency_key.clone();
            let outcome = match first.get(&key) {
                // A key twice among the drops: the later one meets the first.
                Some(&i) => Some(outcome_of(
                    v.record
                        .differing_fields(&new[i].record, !v.occurred_at_given),
                )),
                None => self.known_outcome(&v)?,
            };
            match outcome {
                None => {
                    first.insert(key, new.len());
                    new.push(v);
                    report.ingested += 1;
                }
                Some(RecordOutcome::Recorded | RecordOutcome::Duplicate) => report.duplicates += 1,
                Some(RecordOutcome::Conflict(fields)) => {
                    report
                        .quarantined
                        .push((shown, drop_conflict(&key, &fields)));
                }
                Some(RecordOutcome::Unchecked(why)) => report.held_back.push((shown, why)),
            }
        }
        Ok((new.into_iter().map(|v| v.record).collect(), report))
    }

    /// Quarantine the strays in `incoming/` that have waited there longer
    /// than [`TMP_MAX_AGE`] (by ctime, as `tmp/`): a writer that misused
    /// `incoming/` as scratch space has long finished by then, and a record
    /// behind a wrong name must reach `rejected/`, where status and the
    /// alert on rejected files show it.
    fn quarantine_strays(&self, now: DateTime<Utc>, report: &mut IngestReport) -> Result<()> {
        let incoming = self.dir("incoming");
        let limit = SystemTime::from(now) - TMP_MAX_AGE;
        let strays = self.stray_names()?;
        let old: Vec<(&OsString, Option<u64>, String)> = strays
            .iter()
            .filter(|n| {
                fs::symlink_metadata(incoming.join(n)).is_ok_and(|m| fsx::changed_at(&m) < limit)
            })
            .map(|n| {
                let why = "drop: its name does not end in `.toml`, so it was never read as a drop \
                           (it waited in incoming/ for over an hour); if it is a record, move it \
                           back into incoming/ under a name ending in .toml";
                (n, None, why.to_string())
            })
            .collect();
        self.quarantine_drops(old, report)
    }

    /// Remove drops whose record the spool now holds, then fsync `incoming/`.
    /// A name that no longer holds the inode read from it is left alone: a
    /// script renamed another drop over it meanwhile (the push may have
    /// waited seconds for the writers' lock since it read the name), which
    /// nobody has read yet; the next run ingests it. (Between this check and
    /// the unlink no rename can be told apart: that window is microseconds.)
    fn remove_drops(&self, names: &[(&OsString, u64)]) -> Result<()> {
        let incoming = self.dir("incoming");
        let mut removed = false;
        for &(name, ino) in names {
            let p = incoming.join(name);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.ino() == ino => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Ok(_) => continue, // another drop now: not ours to remove
                Err(e) => return Err(cant(format!("cannot check {}", p.display()))(e)),
            }
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
        Ok(())
    }

    /// Move bad drops to `rejected/` with their reasons (under the writers'
    /// lock) and list them in `report`. A name that no longer holds the
    /// inode judged is left alone: a script renamed another drop over it
    /// meanwhile, which nobody has read; the next run judges it.
    fn quarantine_drops(
        &self,
        bad: Vec<(&OsString, Option<u64>, String)>,
        report: &mut IngestReport,
    ) -> Result<()> {
        if bad.is_empty() {
            return Ok(());
        }
        let incoming = self.dir("incoming");
        let _lock = self.lock_writers()?;
        for (name, judged, reason) in bad {
            let p = incoming.join(name);
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue; // another ingestion took it
            };
            if judged.is_some_and(|ino| ino != m.ino()) {
                continue;
            }
            let shown = escape_name(name);
            let kept = if is_drop_name(name) {
                rejected_name(name)
            } else {
                // `x.reason` must not pass for the reason of a rejected `x`.
                format!("{}.stray", rejected_name(name))
            };
            let mut reason = reason;
            if kept.as_bytes() != name.as_bytes() {
                reason.push_str(&format!("\noriginal name in incoming/: {shown}"));
            }
            if m.is_file() && m.nlink() > 1 {
                self.unshare_drop(&p);
            }
            match self.quarantine_locked(&p, &kept, &reason) {
                Ok(chosen) if chosen.as_bytes() != name.as_bytes() => {
                    reason.push_str(&format!("; kept as rejected/{chosen}"));
                }
                Ok(_) => {}
                // Not moved (a directory without write permission, a mount
                // point): it stays, reported every run until someone moves
                // it, and stops nothing else.
                Err(err) if fsx::exists_nofollow(&p).unwrap_or(false) => {
                    reason.push_str(&format!(
                        "; it cannot be moved to rejected/ and stays in incoming/ \
                         until it is moved by hand: {err:#}"
                    ));
                }
                Err(err) => return Err(err),
            }
            report.quarantined.push((shown, reason.replace('\n', "; ")));
        }
        Ok(())
    }

    /// Replace a hard-linked drop in `incoming/` by a private copy (0600),
    /// so that quarantining it changes nothing of the inode it shares with
    /// a name outside the spool. A drop that cannot be copied (unreadable)
    /// is left linked: it is then moved as it is, its mode untouched.
    fn unshare_drop(&self, path: &Path) {
        let tmp = self.dir("tmp").join(fsx::unique_name("drop"));
        let copied = fsx::open_regular(path, false).and_then(|mut from| {
            let mut to = fsx::create_new(&tmp)?;
            io::copy(&mut from, &mut to)?;
            to.sync_all()?;
            fs::rename(&tmp, path)
        });
        if copied.is_err() {
            let _ = fs::remove_file(&tmp);
        }
    }
}

/// Why a drop whose key this node recorded with other fields is quarantined.
fn drop_conflict(key: &str, fields: &[&str]) -> String {
    format!(
        "idempotency_key: `{key}` was already recorded on this node with different {}; \
         use a new key for a new record",
        fields.join(", ")
    )
}

/// Read and validate one drop, with the inode it was read from. `node`
/// fills a missing `node_id`; a missing `occurred_at` is the drop's
/// modification time.
pub(crate) fn read_drop(
    path: &Path,
    node: &str,
    now: DateTime<Utc>,
) -> Result<(Validated, u64), Reason> {
    let m = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Reason::Gone),
        Err(e) => {
            return Err(Reason::Bad {
                why: format!("drop: cannot be checked: {e}"),
                judged: None,
            });
        }
    };
    let bad = |why: String| Reason::Bad {
        why,
        judged: Some(m.ino()),
    };
    if m.file_type().is_symlink() {
        return Err(bad(
            "drop: is a symbolic link; a drop must be a regular file (its target was not read)"
                .into(),
        ));
    }
    if !m.is_file() {
        return Err(bad("drop: is not a regular file".into()));
    }
    let (bytes, read) = match fsx::read_regular_meta(path, MAX_RECORD_BYTES) {
        Ok(x) => x,
        Err(e) => {
            return Err(match e.kind() {
                io::ErrorKind::NotFound => Reason::Gone,
                io::ErrorKind::InvalidData => {
                    bad(format!("drop: is larger than {MAX_RECORD_BYTES} bytes"))
                }
                io::ErrorKind::InvalidInput => bad("drop: changed while it was opened".into()),
                // Unreadable (mode 000, an I/O error): quarantined, so that
                // it never stops the push; nothing is lost by moving it.
                _ => bad(format!("drop: cannot be read: {e}")),
            });
        }
    };
    let mtime = read.modified().ok().map(DateTime::<Utc>::from);
    let v = parse_drop(bytes, node, now, mtime).map_err(bad)?;
    Ok((v, read.ino()))
}

/// A drop's bytes as a record, or why it is refused: the drop reader
/// without the file system. `mtime` (the file's modification time) is the
/// `occurred_at` of a drop that gives none.
pub(crate) fn parse_drop(
    bytes: Vec<u8>,
    node: &str,
    now: DateTime<Utc>,
    mtime: Option<DateTime<Utc>>,
) -> Result<Validated, String> {
    let text = String::from_utf8(bytes).map_err(|_| "drop: is not UTF-8 text".to_string())?;
    let input = RecordInput::from_toml(&text).map_err(|p| format!("drop: {p}"))?;
    let defaults = Defaults {
        node: node.to_string(),
        now,
        occurred_at: mtime,
    };
    input.validate(&defaults).map_err(|errs| describe(&errs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn drop_names_are_judged_by_bytes() {
        assert!(is_drop_name(OsStr::new("a.toml")));
        assert!(is_drop_name(&OsString::from_vec(b"caf\xe9.toml".to_vec())));
        assert!(!is_drop_name(OsStr::new(".a.toml")));
        assert!(!is_drop_name(OsStr::new("a.txt")));
    }

    #[test]
    fn names_that_are_not_utf8_are_listed_for_ingestion_and_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let odd = OsString::from_vec(b"caf\xe9".to_vec());
        fs::write(dir.path().join("tmp").join(&odd), "left").unwrap();
        fs::write(dir.path().join("incoming/caf\u{e9}.toml"), "x").unwrap();
        assert_eq!(spool.names_any("tmp").unwrap(), [odd]);
        assert_eq!(spool.drop_names().unwrap().len(), 1);
        assert!(spool.names_any("state").unwrap().is_empty());
    }

    #[test]
    fn rejected_names_are_bounded_and_plain() {
        assert_eq!(rejected_name(OsStr::new("plain.toml")), "plain.toml");
        let long = format!("{}.toml", "x".repeat(240));
        let kept = rejected_name(OsStr::new(&long));
        assert!(kept.len() <= MAX_KEPT_NAME, "{kept}");
        assert!(kept.ends_with(".toml") && kept.starts_with("xxx"), "{kept}");
        let odd = OsString::from_vec(b"caf\xe9\n\x1b[31m.toml".to_vec());
        let kept = rejected_name(&odd);
        assert!(!kept.chars().any(char::is_control), "{kept:?}");
        assert!(kept.starts_with("caf_"), "{kept}");
        assert_ne!(kept, rejected_name(OsStr::new("caf_.toml")));
    }
}
