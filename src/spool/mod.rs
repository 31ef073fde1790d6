//! The spool on disk (layout and protocol: `man 5 hero_usage_spool`).
//!
//! ```text
//! SPOOL/                         0700, created on first use
//!   lock                         writers' flock(2), exclusive (interoperates with flock(1))
//!   push.lock                    the push job's own flock
//!   tmp/                         scratch: writers create files here first
//!   incoming/                    drop box for shell scripts (*.toml, dot names ignored)
//!   pending/<sha256(key)>.toml   accepted, not yet pushed (a single record, or a
//!                                hard link to a chunk of a group commit: see `files`)
//!   sent/<sha256(key)>.toml      pushed; kept for the retention window (ctime = when sent)
//!   rejected/NAME, NAME.reason   quarantine, never deleted, never pushed
//!   ledger/XX.base, XX.log       every key ever pushed, as 64-byte digests (see `ledger`)
//!   state/                       the push job's outcome file; `node`, the node
//!                                name the spool belongs to (see `node`)
//! ```
//!
//! Knows no network. Every record file holds full [`UsageRecord`]s as TOML.

mod files;
mod index;
mod ingest;
pub mod ledger;
mod node;
mod write;

use crate::error::{Kind, fail};
use crate::failpoint::failpoint;
use crate::fsx;
use crate::record::{HourBucket, UsageRecord, UtcSecond};
use anyhow::Result;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use files::CHUNK_RECORDS;
pub(crate) use files::{record_in_file, render_chunk, render_single};
pub use index::{IndexScan, IndexSlot, PendingIndex};
pub use ingest::IngestReport;
pub(crate) use ingest::parse_drop;
pub use ledger::{Ledger, LedgerEntry};

/// What pruning `sent/` did (see [`Spool::prune_sent`]).
#[derive(Debug, Default)]
pub struct PruneReport {
    /// Records removed, their keys in the ledger.
    pub pruned: usize,
    /// Damaged records moved to `rejected/` (their keys kept in the
    /// ledger): (`sent/NAME`, reason).
    pub quarantined: Vec<(String, String)>,
    /// Why records past retention were kept: their ledger shard is damaged
    /// (each damaged file named once).
    pub held_back: Vec<String>,
}

/// How long a writer waits for the writers' lock before giving up (exit 75).
pub const LOCK_WAIT: Duration = Duration::from_secs(10);
/// Largest drop read from `incoming/` (a record is far smaller).
pub const MAX_RECORD_BYTES: u64 = 64 * 1024;
/// Files in `tmp/` older than this are leftovers of crashed writers.
pub const TMP_MAX_AGE: Duration = Duration::from_secs(3600);

const SUBDIRS: [&str; 6] = ["tmp", "incoming", "pending", "sent", "rejected", "state"];

/// A spool directory whose layout exists.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
    /// How long a writer waits for the writers' lock ([`LOCK_WAIT`]).
    lock_wait: Duration,
}

/// An exclusive flock(2) on a spool lock file (the writers' `SPOOL/lock`
/// or the push job's `SPOOL/push.lock`), held until dropped.
#[derive(Debug)]
pub struct SpoolLock {
    file: File,
}

impl Drop for SpoolLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// What became of one record handed to the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Newly accepted, durable.
    Recorded,
    /// The key is known with identical fields: nothing changed.
    Duplicate,
    /// The key is known with these fields different: nothing changed.
    Conflict(Vec<&'static str>),
    /// The key could not be checked (its ledger shard, or the record file
    /// stored under it, is damaged): nothing changed, this record alone is
    /// held back (73), with why.
    Unchecked(String),
}

/// A pending record: its file name in `pending/` (`<sha256-hex(key)>.toml`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PendingId(String);

impl PendingId {
    /// The id a record with this idempotency key has.
    pub fn for_key(key: &str) -> PendingId {
        PendingId(file_name_for_key(key))
    }
    /// The file name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PendingId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Pending records loaded for a push (see [`Spool::load_indexed`]): by hour,
/// oldest hour first, each hour's records in id order.
pub type PendingByHour = BTreeMap<HourBucket, Vec<(PendingId, UsageRecord)>>;

/// What [`Spool::load_indexed`] found.
#[derive(Debug, Default)]
pub struct PendingLoad {
    pub hours: PendingByHour,
    /// Entries that are not valid records, with why: the caller quarantines
    /// them (reading changes nothing, so a dry run can read too).
    pub damaged: Vec<(PendingId, String)>,
}

/// Sent entries past retention (see `Spool::old_sent`).
#[derive(Default)]
struct OldSent {
    by_inode: BTreeMap<u64, Vec<String>>,
    /// The day each was sent (days since 1970-01-01).
    days: HashMap<String, u32>,
}

impl OldSent {
    fn add(&mut self, name: &str, ino: u64, day: u32) {
        self.days.insert(name.to_string(), day);
        self.by_inode.entry(ino).or_default().push(name.to_string());
    }
}

/// What the spool holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolCounts {
    pub pending: usize,
    pub sent: usize,
    /// Quarantined files (not counting their `.reason` files).
    pub rejected: usize,
    /// Drops waiting in `incoming/` (names ending in `.toml`, not dot
    /// names, whatever their other bytes).
    pub incoming: usize,
    /// The oldest `occurred_at` among pending records.
    pub oldest_pending_occurred_at: Option<UtcSecond>,
    /// The oldest modification time (when it was accepted) among pending records.
    pub oldest_pending_mtime: Option<DateTime<Utc>>,
    /// When the oldest drop in `incoming/` arrived there: the ctime of the
    /// entry itself (a symbolic link is not followed), which its rename
    /// set; its mtime is its `occurred_at`.
    pub oldest_incoming_ctime: Option<DateTime<Utc>>,
}

/// `<sha256-hex(key)>.toml`: keys are never file names as they are.
pub fn file_name_for_key(key: &str) -> String {
    format!("{}.toml", fsx::hex(&Sha256::digest(key.as_bytes())))
}

fn is_record_name(name: &str) -> bool {
    name.len() == 69 && name.ends_with(".toml") && name[..64].bytes().all(|b| b.is_ascii_hexdigit())
}

/// What failed, for a spool error's message: a closure, so that the message
/// is only built when the error happens (directory scans and the writers'
/// lock call this per entry), or a ready `String` on cold paths.
pub(crate) trait What {
    fn what(self) -> String;
}

impl What for String {
    fn what(self) -> String {
        self
    }
}

impl<F: FnOnce() -> String> What for F {
    fn what(self) -> String {
        self()
    }
}

/// An I/O error as "the spool cannot be written" (73), saying what failed.
/// A permission error names the fix: a file in the spool its owner may not
/// use (its lock, state or a record root left by a run with sudo) stops
/// writers and the push until it is given back.
fn cant(what: impl What) -> impl FnOnce(io::Error) -> anyhow::Error {
    move |e| {
        let fix = if e.kind() == io::ErrorKind::PermissionDenied {
            "; every file in the spool must be its owner's: give it back with \
             sudo chown -R USER SPOOL (nothing is lost meanwhile)"
        } else {
            ""
        };
        fail(Kind::CantCreate, format!("{}: {e}{fix}", what.what()))
    }
}

impl Spool {
    /// Open the spool at `root`, creating its layout (mode 0700) if missing.
    /// A symlinked subdirectory is refused.
    pub fn open(root: &Path) -> Result<Spool> {
        let hint = "check --spool / HERO_USAGE_SPOOL and the directory's owner and mode";
        let missing = !fsx::exists_nofollow(root)
            .map_err(cant(|| format!("cannot reach spool {}", root.display())))?;
        if let Some(parent) = root
            .parent()
            .filter(|p| missing && !p.as_os_str().is_empty())
        {
            fs::create_dir_all(parent).map_err(cant(|| {
                format!("cannot create spool parent {}; {hint}", parent.display())
            }))?;
        }
        // The root itself may be reached through a symlink the operator chose;
        // nothing inside it may be one.
        if !root.is_dir() {
            fsx::ensure_dir(root).map_err(cant(|| {
                format!("cannot create spool {}; {hint}", root.display())
            }))?;
        }
        refuse_another_owner(root)?;
        let mut created = false;
        for sub in SUBDIRS {
            let p = root.join(sub);
            created |= fsx::ensure_dir(&p).map_err(cant(|| {
                format!("cannot create spool directory {}; {hint}", p.display())
            }))?;
        }
        if created {
            fsx::sync_dir(root)
                .map_err(cant(|| format!("cannot sync spool {}", root.display())))?;
        }
        Ok(Spool {
            root: root.to_path_buf(),
            // Tests shorten the wait (debug builds only).
            lock_wait: crate::failpoint::test_knob("HERO_USAGE_TEST_LOCK_WAIT_MS")
                .and_then(|ms| ms.parse().ok())
                .map_or(LOCK_WAIT, Duration::from_millis),
        })
    }

    /// Refuse (73) when this user may not write the spool: another user
    /// owns it. [`Spool::open`] checks it; `--check` asks it of a spool it
    /// opened read-only, to exit as a push would.
    pub fn refuse_another_owner(&self) -> Result<()> {
        refuse_another_owner(&self.root)
    }

    /// The same spool with another wait for the writers' lock.
    pub fn with_lock_wait(mut self, wait: Duration) -> Spool {
        self.lock_wait = wait;
        self
    }

    /// Open an existing spool only to read it (status, a dry run): nothing
    /// is created, a missing sub-directory reads as empty. A root that is
    /// not a directory, or a sub-directory that is a symbolic link or not a
    /// directory, is refused (73).
    pub fn open_read_only(root: &Path) -> Result<Spool> {
        let hint = "check --spool / HERO_USAGE_SPOOL";
        let m = fs::metadata(root).map_err(cant(format!(
            "cannot read spool {}; {hint}",
            root.display()
        )))?;
        if !m.is_dir() {
            return Err(fail(
                Kind::CantCreate,
                format!("spool {} is not a directory; {hint}", root.display()),
            ));
        }
        for sub in SUBDIRS {
            let p = root.join(sub);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(fail(
                        Kind::CantCreate,
                        format!(
                            "spool directory {} is a symbolic link or not a directory; \
                             the spool never follows symbolic links",
                            p.display()
                        ),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(cant(format!("cannot check {}", p.display()))(e)),
            }
        }
        Ok(Spool {
            root: root.to_path_buf(),
            lock_wait: LOCK_WAIT,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    pub(crate) fn dir(&self, sub: &str) -> PathBuf {
        self.root.join(sub)
    }

    /// Replace `state/<name>` atomically with `data` (mode 0600, like every
    /// spool file).
    pub fn write_state(&self, name: &str, data: &[u8]) -> Result<()> {
        let dir = self.state_dir();
        let tmp = dir.join(fsx::unique_name(&format!(".{name}")));
        let target = dir.join(name);
        fsx::write_new_synced(&tmp, data)
            .and_then(|()| fs::rename(&tmp, &target))
            .map_err(|e| {
                let _ = fs::remove_file(&tmp);
                cant(|| format!("cannot write {}", target.display()))(e)
            })
    }

    /// The contents of `state/<name>` (at most 1 MiB, never through a
    /// symlink), or `None` when there is no such file.
    pub fn read_state(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match fsx::read_regular(&self.state_dir().join(name), 1024 * 1024) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Take the writers' lock, waiting at most the spool's lock wait
    /// ([`LOCK_WAIT`] unless set otherwise; then TempFail).
    pub fn lock_writers(&self) -> Result<SpoolLock> {
        let path = self.root.join("lock");
        let file = fsx::open_lock_file(&path)
            .map_err(cant(|| format!("cannot open lock {}", path.display())))?;
        match file.try_lock() {
            Ok(()) => return Ok(SpoolLock { file }),
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(e)) => {
                return Err(cant(|| format!("cannot lock {}", path.display()))(e));
            }
        }
        // Wait in flock(2) itself, woken the moment the holder lets go:
        // polling let busy writers take the lock again and again in between,
        // and a waiting writer gave up after LOCK_WAIT though no hold was
        // long. A thread waits so that the wait can end; the lock belongs to
        // the open file, which both descriptors share. Should it come after
        // we gave up, the thread's descriptor is the last and closing it
        // releases the lock at once.
        let waiter = file
            .try_clone()
            .map_err(cant(|| format!("cannot open lock {}", path.display())))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(waiter.lock());
        });
        match rx.recv_timeout(self.lock_wait) {
            Ok(Ok(())) => Ok(SpoolLock { file }),
            Ok(Err(e)) => Err(cant(|| format!("cannot lock {}", path.display()))(e)),
            Err(_) => Err(fail(
                Kind::TempFail,
                format!(
                    "the spool lock {} is still held by another process after {} s; try again (nothing is lost)",
                    path.display(),
                    self.lock_wait.as_secs_f64()
                ),
            )),
        }
    }

    /// Take the push lock if free; `None` when another push holds it.
    pub fn try_lock_push(&self) -> Result<Option<SpoolLock>> {
        let path = self.root.join("push.lock");
        let file = fsx::open_lock_file(&path)
            .map_err(cant(|| format!("cannot open lock {}", path.display())))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(SpoolLock { file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => {
                Err(cant(|| format!("cannot lock {}", path.display()))(e))
            }
        }
    }

    /// How many records are pending (names only; nothing is read).
    pub fn pending_count(&self) -> Result<usize> {
        Ok(self.record_names("pending")?.len())
    }

    /// Move pushed records from `pending/` to `sent/` (under the writers'
    /// lock; the rename sets their ctime), fsync both directories once.
    pub fn mark_sent<I: std::borrow::Borrow<PendingId>>(&self, ids: &[I]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let _lock = self.lock_writers()?;
        let (pending, sent) = (self.dir("pending"), self.dir("sent"));
        for id in ids {
            let id = id.borrow();
            let from = pending.join(&id.0);
            let to = sent.join(&id.0);
            // rename(2) moves a symbolic link itself, never what it points
            // to, so no lstat is needed first. It also sets the file's
            // ctime: that is when it was marked sent, which retention counts
            // from (no extra open per record).
            match fs::rename(&from, &to) {
                Ok(()) => failpoint("mark-after-rename"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if fsx::exists_nofollow(&to)
                        .map_err(cant(|| format!("cannot check {}", to.display())))?
                    {
                        continue; // already marked
                    }
                    return Err(fail(
                        Kind::Internal,
                        format!("pending record {id} vanished before it was marked sent"),
                    ));
                }
                Err(e) => {
                    return Err(cant(|| format!("cannot move {} to sent/", from.display()))(
                        e,
                    ));
                }
            }
        }
        fsx::sync_dir(&sent).map_err(cant(|| format!("cannot sync {}", sent.display())))?;
        fsx::sync_dir(&pending).map_err(cant(|| format!("cannot sync {}", pending.display())))?;
        Ok(())
    }

    /// Move a pending record into `rejected/` with a `.reason` file (a
    /// conflict or a damaged file found at push time). `record` is the
    /// entry's record when it could be read: the entry is first replaced by
    /// a file of its own record, so that what is quarantined shows that
    /// record alone, never a chunk's others.
    pub fn quarantine_pending(
        &self,
        id: &PendingId,
        record: Option<&UsageRecord>,
        reason: &str,
    ) -> Result<()> {
        let _lock = self.lock_writers()?;
        let pending = self.dir("pending");
        let entry = pending.join(&id.0);
        // Decide by content, not by link count: the last name of a chunk
        // has one link but still holds its neighbours' records.
        let regular = fs::symlink_metadata(&entry).is_ok_and(|m| m.is_file());
        if let Some(rec) = record.filter(|_| regular) {
            let tmp = self.dir("tmp").join(fsx::unique_name("rec"));
            fsx::write_new_synced(&tmp, files::render_single(rec)?.as_bytes())
                .and_then(|()| fs::rename(&tmp, &entry))
                .and_then(|()| fsx::sync_dir(&pending))
                .map_err(|e| {
                    let _ = fs::remove_file(&tmp);
                    cant(|| format!("cannot write {}", entry.display()))(e)
                })?;
        }
        self.quarantine_locked(&entry, &id.0, reason)?;
        Ok(())
    }

    /// Move `from` (any kind of file, symlinks moved themselves) into
    /// `rejected/` under a name that clobbers nothing, with `NAME.reason`.
    /// The caller holds the writers' lock. Returns the name used.
    pub(crate) fn quarantine_locked(
        &self,
        from: &Path,
        name: &str,
        reason: &str,
    ) -> Result<String> {
        let rejected = self.dir("rejected");
        let chosen = free_rejected_name(&rejected, name)?;
        let tmp = self.dir("tmp").join(fsx::unique_name("reason"));
        let text = format!(
            "{reason}\nquarantined {} UTC from {}\n",
            UtcSecond::from_utc(Utc::now()),
            from.parent()
                .and_then(Path::file_name)
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        fsx::write_new_synced(&tmp, text.as_bytes())
            .map_err(cant(|| format!("cannot write {}", tmp.display())))?;
        let moved = rejected.join(&chosen);
        fs::rename(from, &moved).map_err(cant(|| {
            format!("cannot move {} to rejected/", from.display())
        }))?;
        private_mode(&moved)?;
        fs::rename(&tmp, rejected.join(format!("{chosen}.reason"))).map_err(cant(|| {
            format!("cannot write the reason in {}", rejected.display())
        }))?;
        fsx::sync_dir(&rejected).map_err(cant(|| format!("cannot sync {}", rejected.display())))?;
        if let Some(parent) = from.parent() {
            fsx::sync_dir(parent).map_err(cant(|| format!("cannot sync {}", parent.display())))?;
        }
        Ok(chosen)
    }

    /// The spool's ledger of pushed keys (`ledger/`, see [`ledger`]).
    pub fn ledger(&self) -> Ledger {
        Ledger::open(self.dir("ledger"))
    }

    /// Remove sent records marked sent before `older_than`, once their keys
    /// are in the ledger (fsynced first). With `ledger_days`, ledger entries
    /// older than that many days are dropped. A sent entry that cannot be
    /// read is quarantined, its key kept in the ledger all the same (the
    /// entry's name is the key's digest). A record whose ledger shard is
    /// damaged stays in `sent/` (where it still tells its key), reported.
    pub fn prune_sent(
        &self,
        older_than: DateTime<Utc>,
        ledger_days: Option<u32>,
    ) -> Result<PruneReport> {
        let _lock = self.lock_writers()?;
        let sent = self.dir("sent");
        let old = self.old_sent(older_than)?;
        let mut ledger = self.ledger();
        let ledger_dir = self.dir("ledger");
        let ledger_err = cant(|| format!("cannot write the ledger {}", ledger_dir.display()));
        let mut report = PruneReport::default();
        let mut entries = Vec::new();
        let mut damaged = Vec::new();
        files::read_grouped(&sent, old.by_inode, |entry| {
            let day = old.days.get(entry.id.as_str()).copied().unwrap_or(0);
            match entry.record {
                Ok(rec) => entries.push((entry.id, LedgerEntry::of(&rec, day))),
                // Every name listed is a record name: a key digest.
                Err(reason) => {
                    if let Some(e) = LedgerEntry::key_only(entry.id.as_str(), day) {
                        damaged.push((entry.id, e, reason));
                    }
                }
            }
            Ok(true)
        })?;
        // An entry seen twice is harmless; still, a crash after the append
        // and before the removal would otherwise append it again.
        let mut new = Vec::with_capacity(entries.len() + damaged.len());
        let mut keep = |e: &LedgerEntry, report: &mut PruneReport| -> Result<bool> {
            match ledger.find_entry(e) {
                Ok(found) => {
                    if found.is_none() {
                        new.push(*e);
                    }
                    Ok(true)
                }
                Err(err) if ledger::is_damage(&err) => {
                    let why = format!("kept in sent/ past retention: {err}");
                    if !report.held_back.contains(&why) {
                        report.held_back.push(why);
                    }
                    Ok(false)
                }
                Err(err) => Err(cant(format!("cannot read {}", ledger_dir.display()))(err)),
            }
        };
        let mut kept_entries = Vec::with_capacity(entries.len());
        for (id, e) in entries {
            if keep(&e, &mut report)? {
                kept_entries.push(id);
            }
        }
        let mut kept_damaged = Vec::with_capacity(damaged.len());
        for (id, e, reason) in damaged {
            if keep(&e, &mut report)? {
                kept_damaged.push((id, reason));
            }
        }
        ledger.append(&new).map_err(ledger_err)?;
        failpoint("prune-after-append");
        for id in &kept_entries {
            let p = sent.join(id.as_str());
            match fs::remove_file(&p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(cant(|| format!("cannot remove {}", p.display()))(e));
                }
                _ => failpoint("prune-after-remove"),
            }
        }
        for (id, reason) in &kept_damaged {
            let why = format!(
                "damaged sent record ({reason}); its key stays known in the ledger (a record \
                 with it is a duplicate), its fields could not be kept"
            );
            self.quarantine_locked(&sent.join(id.as_str()), id.as_str(), &why)?;
            failpoint("prune-after-quarantine");
            report
                .quarantined
                .push((format!("sent/{}", id.as_str()), why));
        }
        if !kept_entries.is_empty() {
            fsx::sync_dir(&sent).map_err(cant(|| format!("cannot sync {}", sent.display())))?;
        }
        if let Some(days) = ledger_days {
            let horizon =
                (Utc::now() - chrono::Duration::days(i64::from(days))).timestamp() / 86_400;
            let (_, damage) = ledger
                .expire(u32::try_from(horizon).unwrap_or(0))
                .map_err(cant(|| {
                    format!("cannot expire the ledger {}", ledger_dir.display())
                }))?;
            for d in damage {
                let why = format!("not expired: {d}");
                if !report.held_back.contains(&why) {
                    report.held_back.push(why);
                }
            }
        }
        report.pruned = kept_entries.len();
        Ok(report)
    }

    /// The entries of `sent/` marked sent before `older_than`, by inode,
    /// with the day each was sent. Decided before anything is removed:
    /// entries of one chunk share an inode, and removing one sets the ctime
    /// the others are judged by.
    fn old_sent(&self, older_than: DateTime<Utc>) -> Result<OldSent> {
        use std::os::unix::fs::MetadataExt;
        let sent = self.dir("sent");
        let limit: std::time::SystemTime = older_than.into();
        let mut old = OldSent::default();
        // By inode, the day it was sent if it is old: one stat judges every
        // name that carries the inode (they share its ctime). A stat and a
        // kept name per entry made every run cost that per record in sent/.
        let mut judged: HashMap<u64, Option<u32>> = HashMap::new();
        files::for_each_record_entry(&sent, |name, ino| {
            let day = match judged.get(&ino) {
                Some(day) => *day,
                None => {
                    let p = sent.join(name);
                    let m = match fs::symlink_metadata(&p) {
                        Ok(m) => m,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                        Err(e) => return Err(cant(|| format!("cannot check {}", p.display()))(e)),
                    };
                    let day = (sent_at(&m) < limit)
                        .then(|| u32::try_from(m.ctime().max(0) / 86_400).unwrap_or(u32::MAX));
                    // A name swapped since the listing is judged alone.
                    if m.ino() != ino {
                        if let Some(day) = day {
                            old.add(name, m.ino(), day);
                        }
                        return Ok(());
                    }
                    judged.insert(ino, day);
                    day
                }
            };
            if let Some(day) = day {
                old.add(name, ino, day);
            }
            Ok(())
        })?;
        Ok(old)
    }

    /// What the spool holds.
    pub fn counts(&self) -> Result<SpoolCounts> {
        let mut c = SpoolCounts::default();
        self.read_entries("pending", |entry| {
            c.pending += 1;
            if let Some(t) = entry.modified {
                let t = DateTime::<Utc>::from(t);
                c.oldest_pending_mtime = Some(c.oldest_pending_mtime.map_or(t, |o| o.min(t)));
            }
            if let Ok(rec) = entry.record {
                let t = rec.occurred_at;
                c.oldest_pending_occurred_at =
                    Some(c.oldest_pending_occurred_at.map_or(t, |o| o.min(t)));
            }
            Ok(true)
        })?;
        c.sent = self.record_names("sent")?.len();
        c.rejected = self
            .names("rejected")?
            .iter()
            .filter(|n| !n.ends_with(".reason"))
            .count();
        // A drop waits in the spool as much as a pending record does: the
        // age alert must see it (a push that never runs never ingests it).
        (c.incoming, c.oldest_incoming_ctime) = self.incoming_waiting()?;
        Ok(c)
    }

    /// All names in a subdirectory (UTF-8 ones; others are not ours), in
    /// directory order: callers count them (sorting a large `sent/` cost
    /// more than listing it).
    pub(crate) fn names(&self, sub: &str) -> Result<Vec<String>> {
        let dir = self.dir(sub);
        let rd = match fs::read_dir(&dir) {
            // A spool opened read-only may lack a sub-directory: empty.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            other => other.map_err(cant(|| format!("cannot list {}", dir.display())))?,
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(cant(|| format!("cannot list {}", dir.display())))?;
            if let Ok(name) = e.file_name().into_string() {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// Names of record files (`<64 hex>.toml`) in a subdirectory.
    fn record_names(&self, sub: &str) -> Result<Vec<String>> {
        Ok(self
            .names(sub)?
            .into_iter()
            .filter(|n| is_record_name(n))
            .collect())
    }
}

/// A pending record of another node than the spool's (written before
/// validation refused them, or by hand) would land in this node's folder,
/// where the audit reports it: it is held back as damaged, never pushed.
fn of_node(rec: UsageRecord, bound: Option<&str>) -> std::result::Result<UsageRecord, String> {
    match bound {
        Some(node) if rec.node_id != node => Err(format!(
            "its node_id `{}` is not this spool's node `{node}`, and its records are pushed \
             under nodes/{node}/; record it on that node, or correct node_id in the quarantined \
             file and drop it into incoming/ again",
            rec.node_id
        )),
        _ => Ok(rec),
    }
}

/// A spool is written by its owner alone (it is made mode 0700): what
/// another user writes there, root most likely (`sudo hero_usage_record`),
/// is a file of mode 0600 that the owner's push cannot read, and one such
/// file in `pending/` stopped every push (73). Refused before anything is
/// written.
fn refuse_another_owner(root: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let owner = fs::metadata(root)
        .map_err(cant(|| format!("cannot check spool {}", root.display())))?
        .uid();
    let (me, _) = crate::users::current_ids();
    if owner == me || me == u32::MAX {
        return Ok(());
    }
    let (name, me_name) = (crate::users::user_name(owner), crate::users::user_name(me));
    // sudo takes an unknown user (a bind mount's) as '#UID'; runuser cannot.
    let how = match crate::users::name_of("/etc/passwd", owner) {
        Some(_) => format!("sudo -u {name} ..., or runuser -u {name} -- ..."),
        None => format!("sudo -u '#{owner}' ..."),
    };
    // Root's spool is most likely one a run with sudo made before its
    // user's first run (a service's): that user takes it back.
    let back = if owner == 0 {
        let dir = crate::text::shell_word(&root.display().to_string());
        let dir = crate::text::escape_controls(&dir);
        format!(", or, if it is this user's spool, give it back: sudo chown -R {me_name} {dir}")
    } else {
        String::new()
    };
    Err(fail(
        Kind::CantCreate,
        format!(
            "spool {} belongs to user {name} and this is user {me_name}: run the command as \
             its owner ({how}){back}; nothing was written (what another user writes there \
             is unreadable to the owner's push)",
            crate::text::escape_controls(&root.display().to_string()),
        ),
    ))
}

/// When a file in `sent/` was marked sent: its ctime, which the rename into
/// `sent/` set. Entries of one chunk share it, so it is the latest such
/// rename (or link change) of any of them: pruning can only come later.
fn sent_at(m: &fs::Metadata) -> std::time::SystemTime {
    fsx::changed_at(m)
}

/// A name in `rejected/` for `name` that clobbers nothing: neither it nor
/// its `.reason` exists (`name`, `name.1`, ...; a dot or empty name gets `_`).
fn free_rejected_name(rejected: &Path, name: &str) -> Result<String> {
    let base = if name.starts_with('.') || name.is_empty() {
        format!("_{name}")
    } else {
        name.to_string()
    };
    let taken = |cand: &str| -> Result<bool> {
        let exists = |p: PathBuf| {
            fsx::exists_nofollow(&p)
                .map_err(cant(|| format!("cannot check {}", rejected.display())))
        };
        Ok(exists(rejected.join(cand))? || exists(rejected.join(format!("{cand}.reason")))?)
    };
    let mut n = 0u32;
    loop {
        let cand = if n == 0 {
            base.clone()
        } else {
            format!("{base}.{n}")
        };
        if !taken(&cand)? {
            return Ok(cand);
        }
        n += 1;
    }
}

/// A drop keeps its writer's mode; in the spool every file is 0600 and
/// every directory 0700. A symlink is left as it is (never followed), and
/// so is a file linked from outside the spool: its mode is not only the
/// spool's to change.
fn private_mode(moved: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(m) = fs::symlink_metadata(moved) else {
        return Ok(());
    };
    let mode = if m.is_dir() {
        fsx::DIR_MODE
    } else if m.is_file() && m.nlink() == 1 {
        fsx::FILE_MODE
    } else {
        return Ok(());
    };
    if m.mode() & 0o7777 == mode {
        return Ok(());
    }
    match fs::set_permissions(moved, fs::Permissions::from_mode(mode)) {
        // Another user's file (root's): its mode is not ours to change, and
        // failing here left it in rejected/ without its reason.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Ok(()),
        other => other.map_err(cant(|| {
            format!("cannot set the mode of {}", moved.display())
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_sha256_hex() {
        let n = file_name_for_key("job-42");
        assert!(is_record_name(&n), "{n}");
        assert_ne!(n, file_name_for_key("job-43"));
        assert!(!is_record_name("x.toml"));
    }
}
