//! The ledger (man 5 hero_usage_spool, LEDGER): every key this spool ever pushed
//! stays known for ever, after its full record was pruned from `sent/`, as a
//! fixed 64-byte entry of digests.
//!
//! ```text
//! ledger/XX.base   sorted entries (XX = the key digest's first byte, hex),
//!                  replaced whole (tmp, fsync, rename) when merged
//! ledger/XX.log    entries appended since, unsorted, at most LOG_MAX
//! ```
//!
//! A lookup is a binary search of one base (about log2(n/256) reads of 64
//! bytes) and a scan of one log of at most 64 KiB: it does not slow down as
//! the ledger grows. A log that would pass [`LOG_MAX`] entries is merged into
//! its base. Crash safety: a base only ever appears whole (rename), a log's
//! torn tail (a partial last entry, or zeroed entries after the last good
//! one: what a crash mid-append leaves) is ignored, and the next append
//! replaces the log whole; an entry seen twice is harmless. Any other entry
//! that fails its check is damage: its key could no longer be told from a
//! new one, so the shard is refused (73, naming the file), never read past
//! and never rewritten; the other shards go on. Every caller holds the
//! writers' lock. Knows no network; the records come from `sent/`.

use crate::fsx;
use crate::record::{Field, UsageRecord};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes of one entry on disk.
pub const ENTRY_BYTES: usize = 64;
/// Entries a shard's log holds before it is merged into its base.
pub const LOG_MAX: usize = 1024;

/// Layout of an entry: key digest (its first byte names the shard), digest
/// of the string fields but the key, one hint byte per string field (to
/// name which differ), amount, occurred_at, day sent, check.
const KEY: std::ops::Range<usize> = 0..21;
const FIELDS: std::ops::Range<usize> = 21..37;
const HINTS: std::ops::Range<usize> = 37..41;
const AMOUNT: std::ops::Range<usize> = 41..49;
const OCCURRED: std::ops::Range<usize> = 49..57;
const DAY: std::ops::Range<usize> = 57..60;
const CHECK: std::ops::Range<usize> = 60..64;

/// The amount of a key-only entry: more than any record's (10^12), so no
/// record's entry has it.
const FIELDS_UNKNOWN: u64 = u64::MAX;

/// The string fields an entry keeps as digests, in hint order.
const STRING_FIELDS: [Field; 4] = [
    Field::Description,
    Field::NodeId,
    Field::ResourceKind,
    Field::UserSid,
];

/// One key as the ledger knows it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LedgerEntry([u8; ENTRY_BYTES]);

/// The digest a key is filed under (a prefix of its SHA-256).
pub fn key_digest(key: &str) -> [u8; 21] {
    let d = Sha256::digest(key.as_bytes());
    let mut out = [0; 21];
    out.copy_from_slice(&d[KEY]);
    out
}

fn string_fields(rec: &UsageRecord) -> [&str; 4] {
    [
        &rec.description,
        &rec.node_id,
        &rec.resource_kind,
        &rec.user_sid,
    ]
}

impl LedgerEntry {
    /// The entry of `rec`, sent on `sent_day` (days since 1970-01-01).
    pub fn of(rec: &UsageRecord, sent_day: u32) -> LedgerEntry {
        let mut e = [0u8; ENTRY_BYTES];
        e[KEY].copy_from_slice(&key_digest(&rec.idempotency_key));
        let mut all = Sha256::new();
        for (i, value) in string_fields(rec).into_iter().enumerate() {
            // Length-prefixed, so that no two field lists hash alike.
            all.update((value.len() as u64).to_le_bytes());
            all.update(value.as_bytes());
            e[HINTS.start + i] = Sha256::digest(value.as_bytes())[0];
        }
        e[FIELDS].copy_from_slice(&all.finalize()[..FIELDS.len()]);
        e[AMOUNT].copy_from_slice(&rec.amount_cents.to_le_bytes());
        let at = rec.occurred_at.0.and_utc().timestamp();
        e[OCCURRED].copy_from_slice(&at.to_le_bytes());
        e[DAY].copy_from_slice(&sent_day.min(0xFF_FFFF).to_le_bytes()[..3]);
        let check = Sha256::digest(&e[..CHECK.start]);
        e[CHECK].copy_from_slice(&check[..CHECK.len()]);
        LedgerEntry(e)
    }

    /// The entry of a key whose record could not be read (a damaged file
    /// in `sent/`, named after the key's SHA-256 in hex): the key stays
    /// known, its fields are unknown. `None` when `name_hex` is not such a name.
    pub fn key_only(name_hex: &str, sent_day: u32) -> Option<LedgerEntry> {
        let mut e = [0u8; ENTRY_BYTES];
        for (i, byte) in e[KEY].iter_mut().enumerate() {
            *byte = u8::from_str_radix(name_hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        e[AMOUNT].copy_from_slice(&FIELDS_UNKNOWN.to_le_bytes());
        e[DAY].copy_from_slice(&sent_day.min(0xFF_FFFF).to_le_bytes()[..3]);
        let check = Sha256::digest(&e[..CHECK.start]);
        e[CHECK].copy_from_slice(&check[..CHECK.len()]);
        Some(LedgerEntry(e))
    }

    /// Whether only the key is known (see [`LedgerEntry::key_only`]).
    pub fn fields_unknown(&self) -> bool {
        self.0[AMOUNT] == FIELDS_UNKNOWN.to_le_bytes()
    }

    fn from_bytes(b: &[u8]) -> Option<LedgerEntry> {
        let e = LedgerEntry(b.try_into().ok()?);
        let check = Sha256::digest(&e.0[..CHECK.start]);
        (e.0[CHECK] == check[..CHECK.len()]).then_some(e)
    }

    fn key(&self) -> &[u8] {
        &self.0[KEY]
    }

    fn shard(&self) -> u8 {
        self.0[0]
    }

    /// The day it was sent (days since 1970-01-01).
    pub fn sent_day(&self) -> u32 {
        u32::from_le_bytes([
            self.0[DAY.start],
            self.0[DAY.start + 1],
            self.0[DAY.start + 2],
            0,
        ])
    }

    /// The fields of `rec` (same key) that differ from this entry's record;
    /// `occurred_at` is left out when `ignore_occurred_at`. When only the
    /// digest of the string fields tells them apart, the list is
    /// `["content"]`. A key-only entry differs in nothing that can be told:
    /// its key was pushed, so a record with it is a duplicate.
    pub fn differing_fields(
        &self,
        rec: &UsageRecord,
        ignore_occurred_at: bool,
    ) -> Vec<&'static str> {
        if self.fields_unknown() {
            return Vec::new();
        }
        let new = LedgerEntry::of(rec, 0);
        let mut out = Vec::new();
        if new.0[AMOUNT] != self.0[AMOUNT] {
            out.push(Field::AmountCents.name());
        }
        if new.0[FIELDS] != self.0[FIELDS] {
            let named: Vec<&'static str> = (0..STRING_FIELDS.len())
                .filter(|&i| new.0[HINTS.start + i] != self.0[HINTS.start + i])
                .map(|i| STRING_FIELDS[i].name())
                .collect();
            out.extend(if named.is_empty() {
                vec!["content"]
            } else {
                named
            });
        }
        if !ignore_occurred_at && new.0[OCCURRED] != self.0[OCCURRED] {
            out.push(Field::OccurredAt.name());
        }
        out
    }
}

/// The ledger of one spool (`SPOOL/ledger`). Reads are cached for the life
/// of the handle, which lives under one hold of the writers' lock.
pub struct Ledger {
    dir: PathBuf,
    /// Each shard's base (None: no base yet) and log, once read.
    shards: HashMap<u8, Shard>,
}

struct Shard {
    /// Where its base is, to name it when it is damaged.
    base_path: PathBuf,
    base: Option<File>,
    base_len: u64,
    log: Vec<LedgerEntry>,
    /// Bytes of the log file, a torn tail included.
    log_bytes: u64,
}

fn shard_path(dir: &Path, shard: u8, ext: &str) -> PathBuf {
    dir.join(format!("{shard:02x}.{ext}"))
}

fn not_found_ok<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl Ledger {
    /// The ledger in `dir`; nothing is created until something is appended.
    pub fn open(dir: PathBuf) -> Ledger {
        Ledger {
            dir,
            shards: HashMap::new(),
        }
    }

    fn shard(&mut self, shard: u8) -> io::Result<&mut Shard> {
        if self.shards.is_empty() {
            // Nothing in the spool follows a symbolic link, the ledger
            // directory included (its files are opened without following).
            match fs::symlink_metadata(&self.dir) {
                Ok(m) if !m.is_dir() => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "{} is not a directory; the spool never follows symbolic links",
                            self.dir.display()
                        ),
                    ));
                }
                _ => {}
            }
        }
        if !self.shards.contains_key(&shard) {
            let loaded = Shard::load(&self.dir, shard)?;
            self.shards.insert(shard, loaded);
        }
        Ok(self.shards.get_mut(&shard).expect("just loaded"))
    }

    /// The entry of `key`, if the ledger knows it.
    pub fn find(&mut self, key: &str) -> io::Result<Option<LedgerEntry>> {
        let mut probe = [0u8; ENTRY_BYTES];
        probe[KEY].copy_from_slice(&key_digest(key));
        self.find_entry(&LedgerEntry(probe))
    }

    /// The entry stored for the key of `e`, if any.
    pub fn find_entry(&mut self, e: &LedgerEntry) -> io::Result<Option<LedgerEntry>> {
        let shard = self.shard(e.shard())?;
        if let Some(found) = shard.log.iter().find(|x| x.key() == e.key()) {
            return Ok(Some(*found));
        }
        shard.search_base(e.key())
    }

    /// Append entries durably (fsynced before this returns Ok): a shard's
    /// log takes them, or is merged with them into its base when it would
    /// pass [`LOG_MAX`].
    pub fn append(&mut self, entries: &[LedgerEntry]) -> io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        if fsx::ensure_dir(&self.dir)?
            && let Some(spool) = self.dir.parent()
        {
            fsx::sync_dir(spool)?; // the new directory's own entry
        }
        let mut by_shard: HashMap<u8, Vec<LedgerEntry>> = HashMap::new();
        for e in entries {
            by_shard.entry(e.shard()).or_default().push(*e);
        }
        let dir = self.dir.clone();
        for (n, new) in by_shard {
            let shard = self.shard(n)?;
            if shard.log.len() + new.len() > LOG_MAX {
                shard.merge(&dir, n, new, |_| true)?;
            } else {
                shard.append_log(&dir, n, &new)?;
            }
        }
        fsx::sync_dir(&self.dir)
    }

    /// Drop the entries sent before `day`; returns how many were dropped,
    /// and the damage of shards left as they are (see [`is_damage`]).
    /// Reads every shard: only run when `--ledger-days` bounds the ledger.
    pub fn expire(&mut self, day: u32) -> io::Result<(usize, Vec<String>)> {
        if !fsx::exists_nofollow(&self.dir)? {
            return Ok((0, Vec::new()));
        }
        let dir = self.dir.clone();
        let mut dropped = 0;
        let mut damage = Vec::new();
        for n in 0..=255u8 {
            let shard = match self.shard(n) {
                Ok(shard) => shard,
                Err(e) if is_damage(&e) => {
                    damage.push(e.to_string());
                    continue;
                }
                Err(e) => return Err(e),
            };
            let before = shard.base_len as usize / ENTRY_BYTES + shard.log.len();
            let mut all = match shard.read_base() {
                Ok(all) => all,
                Err(e) if is_damage(&e) => {
                    damage.push(e.to_string());
                    continue;
                }
                Err(e) => return Err(e),
            };
            all.extend_from_slice(&shard.log);
            if all.iter().all(|e| e.sent_day() >= day) {
                continue;
            }
            let kept = shard.merge(&dir, n, Vec::new(), |e| e.sent_day() >= day)?;
            dropped += before.saturating_sub(kept);
        }
        if dropped > 0 {
            fsx::sync_dir(&self.dir)?;
        }
        Ok((dropped, damage))
    }

    /// Bytes the ledger's files take (their lengths), and entries it holds.
    pub fn size(&mut self) -> io::Result<(u64, u64)> {
        let (mut bytes, mut entries) = (0, 0);
        for n in 0..=255u8 {
            let shard = self.shard(n)?;
            bytes += shard.base_len + shard.log_bytes;
            entries += shard.base_len / ENTRY_BYTES as u64 + shard.log.len() as u64;
        }
        Ok((bytes, entries))
    }
}

/// Whether `e` is a damaged ledger file (see [`damaged`]): only its shard
/// is held back, the others go on.
pub fn is_damage(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidData
}

/// A damaged base or log: a key it held can no longer be told from a new
/// one, so recording in its shard stops (73) rather than risk billing a key
/// twice. The message names the file and the two ways on.
fn damaged(path: &Path, entry: u64) -> io::Error {
    let p = path.display();
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "ledger file {p} is damaged at entry {entry} (byte {}): keys pushed long ago \
             cannot be told from new ones. Restore {p} from a backup; or, accepting that a \
             retry of a key it held is recorded (and billed) again, move it aside \
             (mv {p} {p}.damaged) and run again (man 5 hero_usage_spool, LEDGER)",
            entry * ENTRY_BYTES as u64
        ),
    )
}

/// Replace `path` whole with `bytes`: a new file in `dir` (named after
/// `tmp_stem`), fsynced, renamed over it. The caller fsyncs `dir`.
fn replace_synced(dir: &Path, path: &Path, tmp_stem: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(fsx::unique_name(tmp_stem));
    fsx::write_new_synced(&tmp, bytes)
        .and_then(|()| fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
}

/// A log's entries. A torn tail, which a crash mid-append can leave (a
/// partial last entry, zeroed entries after the last good one), is left
/// out: the next append replaces the log whole without it. Any other entry
/// that fails its check is damage: skipping it would forget its key, and
/// rewriting the log without it would erase the evidence.
fn read_log(path: &Path, bytes: &[u8]) -> io::Result<Vec<LedgerEntry>> {
    let entries: Vec<Option<LedgerEntry>> = bytes
        .chunks_exact(ENTRY_BYTES)
        .map(LedgerEntry::from_bytes)
        .collect();
    let last_good = entries.iter().rposition(Option::is_some);
    for (i, (e, raw)) in entries
        .iter()
        .zip(bytes.chunks_exact(ENTRY_BYTES))
        .enumerate()
    {
        let torn = last_good.is_none_or(|l| i > l) && raw.iter().all(|&b| b == 0);
        if e.is_none() && !torn {
            return Err(damaged(path, i as u64));
        }
    }
    Ok(entries.into_iter().flatten().collect())
}

impl Shard {
    fn load(dir: &Path, n: u8) -> io::Result<Shard> {
        let base_path = shard_path(dir, n, "base");
        let base = not_found_ok(fsx::open_regular(&base_path, false))?;
        let base_len = match &base {
            Some(f) => f.metadata()?.len(),
            None => 0,
        };
        // A base only ever appears whole (rename): a partial entry is damage,
        // and dropping it would forget a key.
        if base_len % ENTRY_BYTES as u64 != 0 {
            return Err(damaged(&base_path, base_len / ENTRY_BYTES as u64));
        }
        let limit = ((LOG_MAX + 1) * ENTRY_BYTES) as u64;
        let log_path = shard_path(dir, n, "log");
        let bytes = not_found_ok(fsx::read_regular(&log_path, limit))?;
        let bytes = bytes.unwrap_or_default();
        let log = read_log(&log_path, &bytes)?;
        Ok(Shard {
            base_path,
            base,
            base_len,
            log,
            log_bytes: bytes.len() as u64,
        })
    }

    fn entry_at(&self, file: &File, i: u64) -> io::Result<LedgerEntry> {
        let mut buf = [0u8; ENTRY_BYTES];
        file.read_exact_at(&mut buf, i * ENTRY_BYTES as u64)?;
        LedgerEntry::from_bytes(&buf).ok_or_else(|| damaged(&self.base_path, i))
    }

    fn search_base(&self, digest: &[u8]) -> io::Result<Option<LedgerEntry>> {
        let Some(file) = &self.base else {
            return Ok(None);
        };
        let (mut lo, mut hi) = (0u64, self.base_len / ENTRY_BYTES as u64);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let e = self.entry_at(file, mid)?;
            match e.key().cmp(digest) {
                std::cmp::Ordering::Equal => return Ok(Some(e)),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        Ok(None)
    }

    fn read_base(&self) -> io::Result<Vec<LedgerEntry>> {
        let Some(file) = &self.base else {
            return Ok(Vec::new());
        };
        let mut bytes = vec![0u8; self.base_len as usize];
        file.read_exact_at(&mut bytes, 0)?;
        bytes
            .chunks_exact(ENTRY_BYTES)
            .enumerate()
            .map(|(i, b)| {
                LedgerEntry::from_bytes(b).ok_or_else(|| damaged(&self.base_path, i as u64))
            })
            .collect()
    }

    /// Append to the log; fsynced. A log with torn entries is replaced
    /// whole (its valid entries and the new ones: tmp, fsync, rename), never
    /// rewritten in place: moving durable entries within the file would risk
    /// them in a crash, and their `sent/` records are gone.
    fn append_log(&mut self, dir: &Path, n: u8, new: &[LedgerEntry]) -> io::Result<()> {
        let path = shard_path(dir, n, "log");
        let whole = (self.log.len() * ENTRY_BYTES) as u64;
        let bytes: Vec<u8> = new.iter().flat_map(|e| e.0).collect();
        if self.log_bytes != whole {
            let mut all: Vec<u8> = self.log.iter().flat_map(|e| e.0).collect();
            all.extend_from_slice(&bytes);
            replace_synced(dir, &path, &format!(".{n:02x}.log"), &all)?;
        } else {
            let f = match fsx::create_new(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    fsx::open_regular(&path, true)?
                }
                Err(e) => return Err(e),
            };
            f.write_all_at(&bytes, whole)?;
            crate::failpoint::failpoint("ledger-after-write");
            f.sync_data()?;
        }
        self.log.extend_from_slice(new);
        self.log_bytes = whole + bytes.len() as u64;
        Ok(())
    }

    /// Write base + log + `new` (those `keep` accepts) as the new base,
    /// then empty the log; returns the entries kept.
    fn merge(
        &mut self,
        dir: &Path,
        n: u8,
        new: Vec<LedgerEntry>,
        keep: impl Fn(&LedgerEntry) -> bool,
    ) -> io::Result<usize> {
        let mut all = self.read_base()?;
        all.extend_from_slice(&self.log);
        all.extend(new);
        all.retain(|e| keep(e));
        all.sort_by(|a, b| a.key().cmp(b.key()));
        all.dedup_by(|a, b| a.key() == b.key());
        let path = shard_path(dir, n, "base");
        let bytes: Vec<u8> = all.iter().flat_map(|e| e.0).collect();
        replace_synced(dir, &path, &format!(".{n:02x}.base"), &bytes)?;
        crate::failpoint::failpoint("ledger-after-base");
        // The new base must be durable before the log it absorbed empties.
        fsx::sync_dir(dir)?;
        if let Some(log) = not_found_ok(fsx::open_regular(&shard_path(dir, n, "log"), true))? {
            log.set_len(0)?;
            log.sync_data()?;
        }
        self.base = Some(fsx::open_regular(&path, false)?);
        self.base_len = bytes.len() as u64;
        self.log.clear();
        self.log_bytes = 0;
        Ok(all.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::UtcSecond;
    use std::io::Write;

    fn rec(key: &str) -> UsageRecord {
        crate::record::sample_record(key, 7)
    }

    #[test]
    fn entries_are_64_bytes_and_name_what_differs() {
        let e = LedgerEntry::of(&rec("a"), 20_000);
        assert_eq!(e.sent_day(), 20_000);
        assert!(e.differing_fields(&rec("a"), false).is_empty());
        let mut b = rec("a");
        b.amount_cents = 8;
        b.user_sid = "0a1c".into();
        b.occurred_at = UtcSecond::parse("2026-11-26 11:00:00").unwrap();
        assert_eq!(
            e.differing_fields(&b, false),
            ["amount_cents", "user_sid", "occurred_at"]
        );
        assert_eq!(e.differing_fields(&b, true), ["amount_cents", "user_sid"]);
        assert_eq!(LedgerEntry::from_bytes(&e.0), Some(e));
        let mut torn = e.0;
        torn[30] ^= 1;
        assert_eq!(LedgerEntry::from_bytes(&torn), None);
    }

    /// A damaged base never forgets a key: every lookup either finds the
    /// right entry or fails naming the file and the fix.
    #[test]
    fn a_damaged_base_is_named_never_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger");
        let keys: Vec<String> = (0..)
            .map(|i| format!("k{i}"))
            .filter(|k| key_digest(k)[0] == 7)
            .take(LOG_MAX + 1)
            .collect();
        let entries: Vec<LedgerEntry> = keys.iter().map(|k| LedgerEntry::of(&rec(k), 1)).collect();
        let mut l = Ledger::open(path.clone());
        l.append(&entries[..LOG_MAX]).unwrap();
        l.append(&entries[LOG_MAX..]).unwrap(); // merged into the base
        let base = shard_path(&path, 7, "base");
        let whole = fs::read(&base).unwrap();
        assert_eq!(whole.len(), (LOG_MAX + 1) * ENTRY_BYTES);
        let check = |what: &str| {
            let mut l = Ledger::open(path.clone());
            let mut refused = 0;
            for (k, e) in keys.iter().zip(&entries) {
                match l.find(k) {
                    Ok(found) => assert_eq!(found, Some(*e), "{what}: {k} forgotten"),
                    Err(err) => {
                        let msg = err.to_string();
                        assert!(msg.contains("07.base") && msg.contains("mv "), "{msg}");
                        refused += 1;
                    }
                }
            }
            assert!(refused > 0, "{what}: the damage went unnoticed");
        };
        // One flipped bit in the middle entry.
        let mut flipped = whole.clone();
        flipped[(LOG_MAX / 2) * ENTRY_BYTES + 30] ^= 1;
        fs::write(&base, &flipped).unwrap();
        check("a flipped bit");
        // A base cut short (a base only ever appears whole).
        fs::write(&base, &whole[..whole.len() - 10]).unwrap();
        check("a short base");
        // Expiring leaves a damaged shard as it is and names it.
        let (dropped, damage) = Ledger::open(path.clone()).expire(0).unwrap();
        assert_eq!(dropped, 0);
        assert!(
            damage.len() == 1 && damage[0].contains("07.base"),
            "{damage:?}"
        );
        assert_eq!(fs::read(&base).unwrap(), &whole[..whole.len() - 10]);
    }

    /// A damaged log entry (not a torn tail) is refused like a damaged
    /// base, the log is never rewritten without it, and other shards go on.
    #[test]
    fn a_damaged_log_entry_is_refused_and_the_log_never_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger");
        let keys = |shard: u8, n: usize| -> Vec<String> {
            (0..)
                .map(|i| format!("k{i}"))
                .filter(|k| key_digest(k)[0] == shard)
                .take(n)
                .collect()
        };
        let in_3 = keys(3, 4);
        let entries: Vec<LedgerEntry> = in_3.iter().map(|k| LedgerEntry::of(&rec(k), 1)).collect();
        let mut l = Ledger::open(path.clone());
        l.append(&entries[..3]).unwrap();
        l.append(&[LedgerEntry::of(&rec(&keys(4, 1)[0]), 1)])
            .unwrap();
        let log = shard_path(&path, 3, "log");
        let mut bytes = fs::read(&log).unwrap();
        bytes[ENTRY_BYTES + 30] ^= 1; // the second of three: not a torn tail
        fs::write(&log, &bytes).unwrap();
        let mut l = Ledger::open(path.clone());
        let err = l.find(&in_3[1]).unwrap_err();
        assert!(is_damage(&err), "{err}");
        assert!(err.to_string().contains("03.log") && err.to_string().contains("mv "));
        assert!(l.find(&in_3[0]).is_err(), "the whole shard is held back");
        assert!(l.append(&entries[3..]).is_err());
        assert_eq!(fs::read(&log).unwrap(), bytes, "never rewritten");
        // Another shard is unaffected.
        assert!(l.find(&keys(4, 1)[0]).unwrap().is_some());
        // The last entry damaged is damage too; zeroed tail entries and a
        // partial entry are a torn tail.
        let mut last = fs::read(&log).unwrap();
        last[ENTRY_BYTES + 30] ^= 1;
        last[2 * ENTRY_BYTES + 5] ^= 1;
        fs::write(&log, &last).unwrap();
        assert!(Ledger::open(path.clone()).find(&in_3[0]).is_err());
        last[2 * ENTRY_BYTES + 5] ^= 1;
        last.extend_from_slice(&[0; ENTRY_BYTES * 2]);
        last.extend_from_slice(&[0; 20]);
        fs::write(&log, &last).unwrap();
        let mut l = Ledger::open(path.clone());
        for (k, e) in in_3.iter().zip(&entries).take(3) {
            assert_eq!(l.find(k).unwrap(), Some(*e));
        }
    }

    #[test]
    fn a_key_only_entry_knows_the_key_and_no_fields() {
        let name = crate::spool::file_name_for_key("gone");
        let e = LedgerEntry::key_only(&name[..64], 5).unwrap();
        assert!(e.fields_unknown() && e.sent_day() == 5);
        assert!(!LedgerEntry::of(&rec("gone"), 5).fields_unknown());
        assert_eq!(LedgerEntry::from_bytes(&e.0), Some(e));
        assert!(e.differing_fields(&rec("gone"), false).is_empty());
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::open(dir.path().join("ledger"));
        l.append(&[e]).unwrap();
        assert_eq!(l.find("gone").unwrap(), Some(e));
        assert_eq!(LedgerEntry::key_only("zz", 5), None);
    }

    #[test]
    fn appends_merge_and_expire_and_a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger");
        let mut l = Ledger::open(path.clone());
        assert_eq!(l.find("k0").unwrap(), None);
        assert!(!path.exists(), "a lookup creates nothing");
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        assert!(
            Ledger::open(path.clone()).find("k0").is_err(),
            "a symlink is refused"
        );
        fs::remove_file(&path).unwrap();
        // Keys of four shards only (an append fsyncs each shard it
        // touches), so that logs fill and merge into their bases.
        let keys: Vec<String> = (0..)
            .map(|i| format!("k{i}"))
            .filter(|k| key_digest(k)[0] < 4)
            .take(5000)
            .collect();
        let entries: Vec<LedgerEntry> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| LedgerEntry::of(&rec(k), if i < 1000 { 10 } else { 20 }))
            .collect();
        for batch in entries.chunks(900) {
            l.append(batch).unwrap();
        }
        // A crash mid-append: half an entry at the end of one log.
        let mut fresh = Ledger::open(path.clone());
        let log = shard_path(&path, entries[0].shard(), "log");
        fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .unwrap()
            .write_all(&[9; 40])
            .unwrap();
        for (k, e) in keys.iter().zip(&entries) {
            assert_eq!(fresh.find(k).unwrap(), Some(*e), "{k}");
        }
        assert_eq!(fresh.find("nope").unwrap(), None);
        // The torn log is replaced whole (a new file), not rewritten in place.
        use std::os::unix::fs::MetadataExt;
        let inode = fs::metadata(&log).unwrap().ino();
        let mut late = rec("late");
        while key_digest(&late.idempotency_key)[0] != entries[0].shard() {
            late.idempotency_key.push('x');
        }
        fresh.append(&[LedgerEntry::of(&late, 30)]).unwrap();
        assert_ne!(fs::metadata(&log).unwrap().ino(), inode);
        assert_eq!(fs::metadata(&log).unwrap().len() % ENTRY_BYTES as u64, 0);
        assert!(fs::read_dir(&path).unwrap().all(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            !name.starts_with('.')
        }));
        let mut again = Ledger::open(path.clone());
        assert!(again.find(&late.idempotency_key).unwrap().is_some());
        assert_eq!(again.size().unwrap().1, 5001);
        assert_eq!(again.expire(15).unwrap(), (1000, Vec::new()));
        let mut after = Ledger::open(path);
        assert_eq!(after.find(&keys[0]).unwrap(), None);
        assert!(after.find(&keys[4999]).unwrap().is_some());
        assert_eq!(after.size().unwrap(), (4001 * 64, 4001));
    }
}
