//! Record files in `pending/` and `sent/`: their two forms and reading them.
//!
//! An entry `<sha256-hex(key)>.toml` names one record, the one whose key
//! hashes to the name. Its file is either a single record (flat TOML, what
//! one `hero_usage_record` call writes) or a chunk: `[[records]]` tables that
//! a group commit wrote and fsynced once, then hard-linked under each new
//! record's name. A chunk turns a thousand fsyncs into one; every entry still
//! is a directory entry of its own, so duplicate checks, marking sent
//! (rename) and pruning work per record exactly as for single files.

use super::{PendingId, Spool, cant, file_name_for_key, fsx};
use crate::error::{Kind, fail};
use crate::record::{UsageRecord, describe};
use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
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

fn parse_file(bytes: &[u8]) -> ParsedFile {
    let header_len = CHUNK_TABLE.len() + 1;
    let starts = table_starts(bytes);
    let tables: Vec<&[u8]> = match starts.first() {
        Some(0) => (0..starts.len())
            .map(|n| &bytes[starts[n] + header_len..*starts.get(n + 1).unwrap_or(&bytes.len())])
            .collect(),
        _ => vec![bytes],
    };
    let mut out = ParsedFile::default();
    for table in tables {
        let rec = match parse_record(table) {
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
    let rd = match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(by_inode),
        other => other.map_err(cant(|| format!("cannot list {}", dir.display())))?,
    };
    for e in rd {
        let e = e.map_err(cant(|| format!("cannot list {}", dir.display())))?;
        if let Ok(name) = e.file_name().into_string()
            && super::is_record_name(&name)
        {
            by_inode.entry(e.ino()).or_default().push(name);
        }
    }
    Ok(by_inode)
}

/// Read the entries named in `by_inode` (names grouped by the inode their
/// directory entries carry), each file once, handing each to `each`.
pub(crate) fn read_grouped(
    dir: &Path,
    by_inode: BTreeMap<u64, Vec<String>>,
    mut each: impl FnMut(Entry) -> Result<bool>,
) -> Result<()> {
    for (ino, mut names) in by_inode {
        names.sort();
        // Read the file through the first of its names still there: a
        // reader without the push lock (status) races with marking sent.
        let mut read = None;
        let mut first = 0;
        while read.is_none() && first < names.len() {
            match read_file(&dir.join(&names[first]), ino) {
                Ok(Some((records, modified))) => read = Some((Ok(records), Some(modified))),
                Ok(None) => first += 1, // gone meanwhile
                Err(ReadError::Io(e)) => return Err(e),
                Err(ReadError::Damaged(reason)) => read = Some((Err(reason), None)),
            }
        }
        let Some((mut records, modified)) = read else {
            continue;
        };
        for name in names.into_iter().skip(first) {
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

/// Read and parse the record file at `path` (see [`read_bytes`]), with
/// when it was written.
fn read_file(
    path: &Path,
    ino: u64,
) -> std::result::Result<Option<(ParsedFile, SystemTime)>, ReadError> {
    let Some((bytes, meta)) = read_bytes(path, ino)? else {
        return Ok(None);
    };
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    Ok(Some((parse_file(&bytes), modified)))
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
        tables: HashMap<Vec<u8>, Option<std::ops::Range<usize>>>,
    },
}

/// The line that renders `key` in a record table, as the writer renders it
/// (the value alone is rendered, not the whole record).
fn key_line(key: &str) -> Vec<u8> {
    format!("idempotency_key = {}", toml::Value::String(key.to_string())).into_bytes()
}

/// Where each record table of a chunk is, by its key line exactly as the
/// writer renders it.
fn index_chunk(bytes: &[u8]) -> HashMap<Vec<u8>, Option<std::ops::Range<usize>>> {
    let starts = table_starts(bytes);
    let header_len = CHUNK_TABLE.len() + 1;
    let mut tables = HashMap::with_capacity(starts.len());
    for (n, &at) in starts.iter().enumerate() {
        let body = at + header_len..starts.get(n + 1).copied().unwrap_or(bytes.len());
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
    /// The record stored at `path` (an entry named `name`, for `key`).
    pub fn get(&mut self, path: &Path, name: &str, key: &str) -> Result<UsageRecord> {
        let bad = |reason: String| {
            fail(
                Kind::CantCreate,
                format!("record {}: {reason}", path.display()),
            )
        };
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
                    Ok(None) => return Err(bad("vanished while it was read".into())),
                    Err(ReadError::Io(err)) => return Err(err),
                    Err(ReadError::Damaged(reason)) => return Err(bad(reason)),
                };
                if self.recent.len() == RECENT_FILES {
                    self.recent.remove(0);
                }
                self.recent.push((ino, file));
            }
        }
        let (_, file) = self.recent.last().expect("just pushed");
        file.record(name, key).map_err(bad)
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
