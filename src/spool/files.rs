//! Record files in `pending/` and `sent/`: their two forms and reading them.
//!
//! An entry `<sha256-hex(key)>.toml` names one record, the one whose key
//! hashes to the name. Its file is either a single record (flat TOML, what
//! one `hero_usage_record` call writes) or a chunk: `[[records]]` tables that
//! a group commit wrote and fsynced once, then hard-linked under each new
//! record's name. A chunk turns a thousand fsyncs into one; every entry still
//! is a directory entry of its own, so duplicate checks, marking sent
//! (rename) and pruning work per record exactly as for single files.

use super::{PendingId, Spool, cant, file_name_for_key};
use crate::fsx;
use crate::record::{HourBucket, UsageRecord, UtcSecond, describe};
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::ops::Range;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::Path;
use std::time::SystemTime;

/// Most records one chunk file holds (well under any file system's limit
/// on hard links: ext4 allows 65,000).
pub const CHUNK_RECORDS: usize = 1024;
/// Largest record file read back from `pending/` or `sent/`: a full chunk
/// of records with the longest descriptions fits.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// The line that starts every record table of a chunk file.
const CHUNK_TABLE: &str = "[[records]]";

/// One record as its single-record file.
pub(crate) fn render_single(rec: &UsageRecord) -> Result<String> {
    toml::to_string(rec).context("cannot render record as TOML (a bug)")
}

/// Several records as one chunk file.
pub(crate) fn render_chunk<'a>(records: impl Iterator<Item = &'a UsageRecord>) -> Result<String> {
    let mut out = String::new();
    for rec in records {
        out.push_str(CHUNK_TABLE);
        out.push('\n');
        out.push_str(&render_single(rec)?);
        out.push('\n');
    }
    Ok(out)
}

/// The records of one record file, by the entry name each belongs under.
/// A chunk is read table by table, so that one damaged table costs only the
/// entries of its own record, never its neighbours'.
#[derive(Debug, Default)]
pub(crate) struct ParsedFile {
    /// Each readable record (or why it breaks the rules) by its entry name.
    by_name: HashMap<String, std::result::Result<UsageRecord, String>>,
    /// Why some table could not be read at all (its key is unknown): the
    /// reason given to every entry that finds no record of its own.
    unreadable: Option<String>,
}

/// Where each `[[records]]` table of a chunk starts, at line starts only.
fn table_starts(bytes: &[u8]) -> Vec<usize> {
    let header = CHUNK_TABLE.as_bytes();
    (0..bytes.len())
        .filter(|&i| {
            (i == 0 || bytes[i - 1] == b'\n')
                && bytes[i..].starts_with(header)
                && bytes.get(i + header.len()) == Some(&b'\n')
        })
        .collect()
}

/// One record from the text of a single-record file or a chunk's table.
fn parse_record(bytes: &[u8]) -> std::result::Result<UsageRecord, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    toml::from_str(text).map_err(|e| format!("not a valid record: {}", e.message()))
}

/// Where the body of each record table of a record file lies (after its
/// `[[records]]` line); a file that does not start with one (a single
/// record) is one table.
fn table_bodies(bytes: &[u8]) -> Vec<Range<usize>> {
    let header_len = CHUNK_TABLE.len() + 1;
    let starts = table_starts(bytes);
    match starts.first() {
        Some(0) => (0..starts.len())
            .map(|n| starts[n] + header_len..starts.get(n + 1).copied().unwrap_or(bytes.len()))
            .collect(),
        _ => std::iter::once(0..bytes.len()).collect(),
    }
}

fn parse_file(bytes: &[u8]) -> ParsedFile {
    parse_tables(bytes, table_bodies(bytes))
}

/// The tables at `bodies` of a record file, parsed and checked.
fn parse_tables(bytes: &[u8], bodies: impl IntoIterator<Item = Range<usize>>) -> ParsedFile {
    let mut out = ParsedFile::default();
    for body in bodies {
        let rec = match parse_record(&bytes[body]) {
            Ok(rec) => rec,
            Err(reason) => {
                out.unreadable.get_or_insert(reason);
                continue;
            }
        };
        let checked = rec.check().map(|()| rec.clone()).map_err(|errs| {
            format!(
                "the record of key `{}` breaks the rules: {}",
                rec.idempotency_key,
                describe(&errs)
            )
        });
        // Our writer puts a key in a chunk once; a key twice with other
        // content leaves its record unknown: damaged, never a silent pick.
        let twice = "its key appears twice in its file, with different content";
        out.by_name
            .entry(file_name_for_key(&rec.idempotency_key))
            .and_modify(|seen| {
                if *seen != checked {
                    *seen = Err(twice.to_string());
                }
            })
            .or_insert(checked);
    }
    out
}

/// The record the entry of `key` reads back from a record file's bytes (a
/// single record or a chunk), or why it is damaged: what reading `pending/`
/// and `sent/` makes of them, without the file system.
pub(crate) fn record_in_file(bytes: &[u8], key: &str) -> std::result::Result<UsageRecord, String> {
    parse_file(bytes).take(&file_name_for_key(key))
}

impl ParsedFile {
    /// The record that belongs under `name`, or why it is damaged.
    fn take(&mut self, name: &str) -> std::result::Result<UsageRecord, String> {
        match self.by_name.remove(name) {
            Some(found) => found,
            None => Err(match &self.unreadable {
                Some(reason) => format!("its record in the file cannot be read: {reason}"),
                None => "its file holds no record whose key hashes to its name".to_string(),
            }),
        }
    }

    /// The record under `name` without taking it.
    fn get(&self, name: &str) -> std::result::Result<UsageRecord, String> {
        let mut copy = ParsedFile {
            by_name: HashMap::new(),
            unreadable: self.unreadable.clone(),
        };
        if let Some(found) = self.by_name.get(name) {
            copy.by_name.insert(name.to_string(), found.clone());
        }
        copy.take(name)
    }
}

/// One entry of `pending/` or `sent/` as read by [`Spool::read_entries`].
pub struct Entry {
    pub id: PendingId,
    /// The record, or why the entry is damaged.
    pub record: std::result::Result<UsageRecord, String>,
    /// When its file was written (None when it could not be read).
    pub modified: Option<SystemTime>,
}

impl Spool {
    /// Read every record entry of `sub` (`pending` or `sent`), each file
    /// once however many entries link to it, and hand each to `each`, which
    /// returns false to stop. Entries that vanish meanwhile are skipped.
    /// Memory holds the names and one file's records at a time.
    pub(crate) fn read_entries(
        &self,
        sub: &str,
        each: impl FnMut(Entry) -> Result<bool>,
    ) -> Result<()> {
        let dir = self.dir(sub);
        read_grouped(&dir, names_by_inode(&dir)?, each)
    }
}

/// The record entries of `dir` grouped by the inode their directory entries
/// carry, so that links to one chunk file group together without a stat
/// each. A missing directory (a spool opened read-only) is empty.
pub(crate) fn names_by_inode(dir: &Path) -> Result<BTreeMap<u64, Vec<String>>> {
    let mut by_inode: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for_each_record_entry(dir, |name, ino| {
        by_inode.entry(ino).or_default().push(name.to_string());
        Ok(())
    })?;
    Ok(by_inode)
}

/// Hand each record entry of `dir` (its name and the inode its directory
/// entry carries) to `each`, in directory order, without keeping the names.
/// A missing directory (a spool opened read-only) is empty.
pub(crate) fn for_each_record_entry(
    dir: &Path,
    mut each: impl FnMut(&str, u64) -> Result<()>,
) -> Result<()> {
    let rd = match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other.map_err(cant(|| format!("cannot list {}", dir.display())))?,
    };
    for e in rd {
        let e = e.map_err(cant(|| format!("cannot list {}", dir.display())))?;
        if let Some(name) = e.file_name().to_str()
            && super::is_record_name(name)
        {
            each(name, e.ino())?;
        }
    }
    Ok(())
}

/// Read the entries named in `by_inode` (names grouped by the inode their
/// directory entries carry), each file once, handing each to `each`.
pub(crate) fn read_grouped(
    dir: &Path,
    by_inode: BTreeMap<u64, Vec<String>>,
    each: impl FnMut(Entry) -> Result<bool>,
) -> Result<()> {
    read_grouped_with(dir, by_inode, |_, _, bytes| parse_file(bytes), each)
}

/// As [`read_grouped`], each file's bytes parsed by `parse(ino, names,
/// bytes)` (`names`: its entries still there).
pub(crate) fn read_grouped_with(
    dir: &Path,
    by_inode: BTreeMap<u64, Vec<String>>,
    mut parse: impl FnMut(u64, &[String], &[u8]) -> ParsedFile,
    mut each: impl FnMut(Entry) -> Result<bool>,
) -> Result<()> {
    for (ino, mut names) in by_inode {
        names.sort();
        let Some((first, read)) = read_first(dir, ino, &names)? else {
            continue;
        };
        let names = names.split_off(first);
        let (mut records, modified) = match read {
            Ok((bytes, meta)) => (
                Ok(parse(ino, &names, &bytes)),
                Some(meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)),
            ),
            Err(reason) => (Err(reason), None),
        };
        for name in names {
            let record = match &mut records {
                Ok(parsed) => parsed.take(&name).map_err(|r| format!("damaged: {r}")),
                Err(reason) => Err(reason.clone()),
            };
            let entry = Entry {
                id: PendingId(name),
                record,
                modified,
            };
            if !each(entry)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// A record file read whole, or why it is damaged.
pub(crate) type FileRead = std::result::Result<(Vec<u8>, fs::Metadata), String>;

/// The file behind `names` (sorted entry names that carried inode `ino`),
/// read through the first of them still there, with that name's position;
/// `None` when all are gone. A reader without the push lock (status) races
/// with marking sent.
pub(crate) fn read_first(
    dir: &Path,
    ino: u64,
    names: &[String],
) -> Result<Option<(usize, FileRead)>> {
    for (at, name) in names.iter().enumerate() {
        match read_bytes(&dir.join(name), ino) {
            Ok(Some(read)) => return Ok(Some((at, Ok(read)))),
            Ok(None) => {} // gone meanwhile
            Err(ReadError::Io(e)) => return Err(e),
            Err(ReadError::Damaged(reason)) => return Ok(Some((at, Err(reason)))),
        }
    }
    Ok(None)
}

/// One table of a record file as [`light_tables`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LightTable {
    /// The SHA-256 of its key: the name of its entry.
    pub digest: [u8; 32],
    pub hour: HourBucket,
    /// Where its body lies in the file.
    pub body: Range<usize>,
}

/// Every table of a record file read by its `idempotency_key` and
/// `occurred_at` lines alone, without parsing TOML: the pending index needs
/// only each entry's name and hour, and a full parse of every record made
/// the index cost as much as reading the records for the batches. `None`
/// when a table is not in the plain form the writer writes (a multi-line
/// string, either line missing or twice, a string with escapes, two tables
/// of one key): then the file is parsed whole. Nothing is validated: the
/// batch that takes an entry parses and checks its table (and quarantines it).
pub(crate) fn light_tables(bytes: &[u8]) -> Option<Vec<LightTable>> {
    let bodies = table_bodies(bytes);
    let mut tables = Vec::with_capacity(bodies.len());
    let mut seen = std::collections::HashSet::with_capacity(bodies.len());
    for body in bodies {
        let (key, at) = light_fields(&bytes[body.clone()])?;
        let digest: [u8; 32] = Sha256::digest(key).into();
        if !seen.insert(digest) {
            return None;
        }
        let hour = at.hour_bucket();
        tables.push(LightTable { digest, hour, body });
    }
    Some(tables)
}

/// The key and time of one table, read from their lines. Without multi-line
/// strings every line of a table is a line of TOML, so a line that starts
/// with `idempotency_key = ` is the key's, if the table parses at all.
fn light_fields(table: &[u8]) -> Option<(&[u8], UtcSecond)> {
    if table.windows(3).any(|w| w == b"\"\"\"" || w == b"'''") {
        return None;
    }
    let (mut key, mut at) = (None, None);
    for line in table.split(|&b| b == b'\n') {
        let (slot, value) = if let Some(v) = line.strip_prefix(b"idempotency_key = ") {
            (&mut key, v)
        } else if let Some(v) = line.strip_prefix(b"occurred_at = ") {
            (&mut at, v)
        } else {
            continue;
        };
        if slot.replace(plain_string(value)?).is_some() {
            return None;
        }
    }
    let at = UtcSecond::parse_exact(std::str::from_utf8(at?).ok()?)?;
    Some((key?, at))
}

/// The text of a TOML string that needs no unescaping: `"..."` without `\`
/// or `"` in it, or `'...'` without `'`; nothing may follow it.
fn plain_string(value: &[u8]) -> Option<&[u8]> {
    let (quote, inner) = match value {
        [b'"', inner @ .., b'"'] => (b'"', inner),
        [b'\'', inner @ .., b'\''] => (b'\'', inner),
        _ => return None,
    };
    let plain = !inner
        .iter()
        .any(|&b| b == quote || (quote == b'"' && b == b'\\'));
    plain.then_some(inner)
}

/// The tables at `bodies` of a record file (where [`light_tables`] found
/// those of `names`) parsed alone, so that a batch parses only its own
/// records of a chunk; the whole file when they do not hold a record of
/// each of `names` (the file is not what the index saw, or a table does not
/// parse: the whole file then tells why), or `bodies` is `None`.
pub(crate) fn parse_some(
    bytes: &[u8],
    bodies: Option<&[Range<usize>]>,
    names: &[String],
) -> ParsedFile {
    if let Some(bodies) =
        bodies.filter(|b| b.iter().all(|b| b.start <= b.end && b.end <= bytes.len()))
    {
        let some = parse_tables(bytes, bodies.iter().cloned());
        if names.iter().all(|n| some.by_name.contains_key(n)) {
            return some;
        }
    }
    parse_file(bytes)
}

enum ReadError {
    /// The spool cannot be read: stop.
    Io(anyhow::Error),
    /// The file is not what a record file must be: quarantine its entries.
    Damaged(String),
}

/// The bytes and metadata of the record file at `path`, read without
/// following a symlink; `ino` guards against a file swapped in since it was
/// seen. `Ok(None)` when it is gone.
fn read_bytes(
    path: &Path,
    ino: u64,
) -> std::result::Result<Option<(Vec<u8>, fs::Metadata)>, ReadError> {
    let (bytes, meta) = match fsx::read_regular_meta(path, MAX_FILE_BYTES) {
        Ok(x) => x,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData
            ) =>
        {
            return Err(ReadError::Damaged(format!("not a record file: {e}")));
        }
        // Anything else stops the run. A stored record the spool's owner
        // may not read (root's, left by a run with sudo; a security policy)
        // is not damaged: quarantined, it would leave the push for good (a
        // policy would take every one); [`cant`] names the fix.
        Err(e) => {
            return Err(ReadError::Io(cant(|| {
                format!("cannot read {}", path.display())
            })(e)));
        }
    };
    if meta.ino() != ino {
        return Err(ReadError::Damaged(
            "its file changed while it was read".into(),
        ));
    }
    Ok(Some((bytes, meta)))
}

/// Point lookups of stored records (duplicate checks, under the writers'
/// lock). A chunk is indexed by its records' key lines and only the table
/// asked for is parsed: parsing whole chunks made a batch of duplicates
/// spread over many chunks hold the lock for seconds. The last few files
/// read are kept, so a batch whose duplicates sit together reads each once,
/// while memory stays bounded however many files a batch touches.
#[derive(Default)]
pub(crate) struct RecordLookup {
    /// By inode, the most recently used last.
    recent: Vec<(u64, StoredFile)>,
}

/// Files kept by a [`RecordLookup`] (a chunk is at most a few MiB).
const RECENT_FILES: usize = 8;

enum StoredFile {
    /// A single-record file (or anything but a chunk), parsed whole.
    Parsed(ParsedFile),
    /// A chunk: its bytes, and the table of each `idempotency_key = ...` line.
    Chunk {
        bytes: Vec<u8>,
        /// None: the line is in two tables (then the chunk is read whole).
        tables: HashMap<Vec<u8>, Option<Range<usize>>>,
    },
}

/// The line that renders `key` in a record table, as the writer renders it
/// (the value alone is rendered, not the whole record).
fn key_line(key: &str) -> Vec<u8> {
    format!("idempotency_key = {}", toml::Value::String(key.to_string())).into_bytes()
}

/// Where each record table of a chunk is, by its key line exactly as the
/// writer renders it.
fn index_chunk(bytes: &[u8]) -> HashMap<Vec<u8>, Option<Range<usize>>> {
    let bodies = table_bodies(bytes);
    let mut tables = HashMap::with_capacity(bodies.len());
    for body in bodies {
        if let Some(line) = bytes[body.clone()]
            .split(|&b| b == b'\n')
            .find(|l| l.starts_with(b"idempotency_key = "))
        {
            tables
                .entry(line.to_vec())
                .and_modify(|seen| *seen = None)
                .or_insert(Some(body));
        }
    }
    tables
}

impl StoredFile {
    fn read(path: &Path, ino: u64) -> std::result::Result<Option<StoredFile>, ReadError> {
        let Some((bytes, _)) = read_bytes(path, ino)? else {
            return Ok(None);
        };
        if bytes.starts_with(CHUNK_TABLE.as_bytes()) {
            let tables = index_chunk(&bytes);
            Ok(Some(StoredFile::Chunk { bytes, tables }))
        } else {
            Ok(Some(StoredFile::Parsed(parse_file(&bytes))))
        }
    }

    /// The record named `name`, whose key is `key`.
    fn record(&self, name: &str, key: &str) -> std::result::Result<UsageRecord, String> {
        match self {
            StoredFile::Parsed(parsed) => parsed.get(name),
            StoredFile::Chunk { bytes, tables } => {
                let found = tables
                    .get(&key_line(key))
                    .and_then(|body| parse_record(&bytes[body.clone()?]).ok())
                    .filter(|r| r.check().is_ok() && file_name_for_key(&r.idempotency_key) == name);
                match found {
                    Some(rec) => Ok(rec),
                    // Not found by its line: read the chunk whole to be sure.
                    None => parse_file(bytes).get(name),
                }
            }
        }
    }
}

impl RecordLookup {
    /// The record stored at `path` (an entry named `name`, for `key`);
    /// `Ok(Err(why))` when that entry is damaged (not a record file, no
    /// record of its name), the error when the spool cannot be read.
    pub fn get(
        &mut self,
        path: &Path,
        name: &str,
        key: &str,
    ) -> Result<std::result::Result<UsageRecord, String>> {
        let bad = |reason: String| format!("record {}: {reason}", path.display());
        let ino = fs::symlink_metadata(path)
            .map_err(cant(|| format!("cannot check {}", path.display())))?
            .ino();
        match self.recent.iter().position(|(i, _)| *i == ino) {
            Some(at) => {
                let hit = self.recent.remove(at);
                self.recent.push(hit);
            }
            None => {
                let file = match StoredFile::read(path, ino) {
                    Ok(Some(file)) => file,
                    Ok(None) => return Ok(Err(bad("vanished while it was read".into()))),
                    Err(ReadError::Io(err)) => return Err(err),
                    Err(ReadError::Damaged(reason)) => return Ok(Err(bad(reason))),
                };
                if self.recent.len() == RECENT_FILES {
                    self.recent.remove(0);
                }
                self.recent.push((ino, file));
            }
        }
        let (_, file) = self.recent.last().expect("just pushed");
        Ok(file.record(name, key).map_err(bad))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str) -> UsageRecord {
        crate::record::sample_record(key, 7)
    }

    #[test]
    fn single_and_chunk_files_round_trip_by_name() {
        let one = render_single(&rec("a")).unwrap();
        let mut got = parse_file(one.as_bytes());
        assert_eq!(got.take(&file_name_for_key("a")), Ok(rec("a")));

        let (a, b) = (rec("a"), rec("b"));
        let chunk = render_chunk([&a, &b].into_iter()).unwrap();
        assert!(chunk.starts_with("[[records]]\n"), "{chunk}");
        let mut got = parse_file(chunk.as_bytes());
        assert_eq!(got.by_name.len(), 2);
        assert_eq!(got.take(&file_name_for_key("b")), Ok(b));
        assert!(got.take(&file_name_for_key("c")).is_err());
    }

    /// A key twice in one chunk (our writer never does it): the same record
    /// twice is that record; two different records are damage, on both the
    /// push's path (parse_file) and the duplicate check's (StoredFile).
    #[test]
    fn a_key_twice_in_a_chunk_with_other_content_is_damaged_not_picked() {
        let (a, b) = (rec("a"), rec("b"));
        let mut a2 = rec("a");
        a2.amount_cents = 8;
        let name = file_name_for_key("a");
        let same = render_chunk([&a, &b, &a].into_iter()).unwrap();
        assert_eq!(parse_file(same.as_bytes()).take(&name), Ok(a.clone()));
        let other = render_chunk([&a, &b, &a2].into_iter()).unwrap();
        let err = parse_file(other.as_bytes()).take(&name).unwrap_err();
        assert!(err.contains("twice"), "{err}");
        assert_eq!(
            parse_file(other.as_bytes()).take(&file_name_for_key("b")),
            Ok(b)
        );
        let stored = StoredFile::Chunk {
            tables: index_chunk(other.as_bytes()),
            bytes: other.into_bytes(),
        };
        assert!(stored.record(&name, "a").unwrap_err().contains("twice"));
    }

    #[test]
    fn a_record_is_found_in_a_chunk_by_its_key_line_alone() {
        let (a, b, c) = (rec("a"), rec(r#"b"q\x'"#), rec("c"));
        let text = render_chunk([&a, &b, &c].into_iter()).unwrap();
        let bytes = text.into_bytes();
        let tables = index_chunk(&bytes);
        assert_eq!(tables.len(), 3);
        for r in [&a, &b, &c] {
            assert!(tables.contains_key(&key_line(&r.idempotency_key)), "{r:?}");
        }
        let chunk = StoredFile::Chunk { bytes, tables };
        for r in [&a, &b, &c] {
            let name = file_name_for_key(&r.idempotency_key);
            assert_eq!(chunk.record(&name, &r.idempotency_key).as_ref(), Ok(r));
        }
        assert!(chunk.record(&file_name_for_key("d"), "d").is_err());
    }

    /// The light read finds every table of what the writer writes, by the
    /// entry name and hour a full parse gives; anything else in doubt
    /// (escapes, multi-line strings, a key twice) makes it give up, so that
    /// the file is parsed whole.
    #[test]
    fn the_light_read_agrees_with_the_parse_or_gives_up() {
        let (a, b) = (rec("a"), rec(r#"b"q\x'"#));
        let plain = render_chunk([&a, &rec("c")].into_iter()).unwrap();
        let tables = light_tables(plain.as_bytes()).unwrap();
        let names: Vec<String> = ["a", "c"].iter().map(|k| file_name_for_key(k)).collect();
        for (t, (r, name)) in tables.iter().zip([(&a, &names[0]), (&rec("c"), &names[1])]) {
            assert_eq!(format!("{}.toml", fsx::hex(&t.digest)), *name);
            assert_eq!(t.hour, r.hour_bucket());
            let one = parse_some(
                plain.as_bytes(),
                Some(std::slice::from_ref(&t.body)),
                std::slice::from_ref(name),
            );
            assert_eq!(one.by_name.len(), 1, "only the table asked for is parsed");
        }
        let single = render_single(&a).unwrap();
        assert_eq!(light_tables(single.as_bytes()).unwrap().len(), 1);
        let escaped = render_chunk([&a, &b].into_iter()).unwrap();
        assert!(light_tables(escaped.as_bytes()).is_none(), "{escaped}");
        let twice = render_chunk([&a, &a].into_iter()).unwrap();
        assert!(light_tables(twice.as_bytes()).is_none());
        let multi = plain.replace(
            "description = \"\"",
            "description = \"\"\"\nidempotency_key = \"z\"\"\"\"",
        );
        assert_ne!(multi, plain);
        assert!(light_tables(multi.as_bytes()).is_none());
    }

    /// A table asked for that does not hold its entry's record (the file
    /// changed, or the table does not parse): the file is parsed whole.
    #[test]
    fn a_partial_parse_that_misses_an_entry_parses_the_whole_file() {
        let chunk = render_chunk([&rec("a"), &rec("c")].into_iter()).unwrap();
        let tables = light_tables(chunk.as_bytes()).unwrap();
        let wrong = [tables[1].body.clone()];
        let got = parse_some(chunk.as_bytes(), Some(&wrong), &[file_name_for_key("a")]);
        assert_eq!(got.by_name.len(), 2);
        let out_of_bounds = 0..chunk.len() + 1;
        let got = parse_some(
            chunk.as_bytes(),
            Some(std::slice::from_ref(&out_of_bounds)),
            &[],
        );
        assert_eq!(got.by_name.len(), 2);
    }

    #[test]
    fn a_damaged_table_costs_only_its_own_entry() {
        let mut bad = rec("b");
        bad.user_sid = "X".into();
        let chunk = render_chunk([&rec("a"), &bad, &rec("c")].into_iter()).unwrap();
        let mut got = parse_file(chunk.as_bytes());
        let err = got.take(&file_name_for_key("b")).unwrap_err();
        assert!(err.contains("user_sid"), "{err}");
        assert_eq!(got.take(&file_name_for_key("a")), Ok(rec("a")));

        // A table that cannot be parsed at all: its key is unknown, so
        // every entry without a record of its own carries the reason.
        let torn = chunk.replace(
            "amount_cents = 7\ndescription = \"\"\nidempotency_key = \"c\"",
            "amount_cents = \"x",
        );
        let mut got = parse_file(torn.as_bytes());
        assert_eq!(got.take(&file_name_for_key("a")), Ok(rec("a")));
        let err = got.take(&file_name_for_key("c")).unwrap_err();
        assert!(err.contains("cannot be read"), "{err}");
    }
}
