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
use serde::Deserialize;
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Chunk {
    records: Vec<UsageRecord>,
}

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

/// The records of a record file (either form), each checked against the
/// rules, indexed by the entry name each belongs under.
fn parse_file(bytes: Vec<u8>) -> std::result::Result<HashMap<String, UsageRecord>, String> {
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let is_chunk = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        == Some(CHUNK_TABLE);
    let records = if is_chunk {
        toml::from_str::<Chunk>(&text)
            .map_err(|e| format!("not a valid record chunk: {}", e.message()))?
            .records
    } else {
        vec![toml::from_str(&text).map_err(|e| format!("not a valid record: {}", e.message()))?]
    };
    let mut by_name = HashMap::with_capacity(records.len());
    for rec in records {
        rec.check().map_err(|errs| {
            format!(
                "the record of key `{}` breaks the rules: {}",
                rec.idempotency_key,
                describe(&errs)
            )
        })?;
        by_name
            .entry(file_name_for_key(&rec.idempotency_key))
            .or_insert(rec);
    }
    Ok(by_name)
}

/// The file's record that belongs under `name`.
fn take_named(
    records: &mut HashMap<String, UsageRecord>,
    name: &str,
) -> std::result::Result<UsageRecord, String> {
    records
        .remove(name)
        .ok_or_else(|| "its file holds no record whose key hashes to its name".to_string())
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
        mut each: impl FnMut(Entry) -> Result<bool>,
    ) -> Result<()> {
        let dir = self.dir(sub);
        let rd = match fs::read_dir(&dir) {
            // A spool opened read-only may lack a sub-directory: empty.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            other => other.map_err(cant(format!("cannot list {}", dir.display())))?,
        };
        // The directory entry carries the inode: links to one chunk file
        // group together without a stat each.
        let mut by_inode: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for e in rd {
            // Lazily: a message built per entry costs a scan more than its reading.
            let e = e.map_err(|e| cant(format!("cannot list {}", dir.display()))(e))?;
            if let Ok(name) = e.file_name().into_string()
                && super::is_record_name(&name)
            {
                by_inode.entry(e.ino()).or_default().push(name);
            }
        }
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
                    Ok(map) => take_named(map, &name),
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
            return Err(ReadError::Io(cant(format!(
                "cannot read {}",
                path.display()
            ))(e)));
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
#[allow(clippy::type_complexity)]
fn read_file(
    path: &Path,
    ino: u64,
) -> std::result::Result<Option<(HashMap<String, UsageRecord>, SystemTime)>, ReadError> {
    let Some((bytes, meta)) = read_bytes(path, ino)? else {
        return Ok(None);
    };
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let records = parse_file(bytes).map_err(|r| ReadError::Damaged(format!("damaged: {r}")))?;
    Ok(Some((records, modified)))
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
    Parsed(HashMap<String, UsageRecord>),
    /// A chunk: its text, and the table of each `idempotency_key = ...` line.
    Chunk {
        text: String,
        tables: HashMap<String, std::ops::Range<usize>>,
    },
}

/// Where each record table of a chunk is, by its key line exactly as the
/// writer renders it. Headers are found at line starts only.
fn index_chunk(text: &str) -> HashMap<String, std::ops::Range<usize>> {
    let header = format!("{CHUNK_TABLE}\n");
    let starts: Vec<usize> = text
        .match_indices(&header)
        .filter(|(i, _)| *i == 0 || text.as_bytes()[i - 1] == b'\n')
        .map(|(i, _)| i)
        .collect();
    let mut tables = HashMap::with_capacity(starts.len());
    for (n, &at) in starts.iter().enumerate() {
        let body = at + header.len()..starts.get(n + 1).copied().unwrap_or(text.len());
        if let Some(line) = text[body.clone()]
            .lines()
            .find(|l| l.starts_with("idempotency_key = "))
        {
            tables.entry(line.to_string()).or_insert(body);
        }
    }
    tables
}

impl StoredFile {
    fn read(path: &Path, ino: u64) -> std::result::Result<Option<StoredFile>, ReadError> {
        let Some((bytes, _)) = read_bytes(path, ino)? else {
            return Ok(None);
        };
        match String::from_utf8(bytes) {
            Ok(text) if text.starts_with(CHUNK_TABLE) => {
                let tables = index_chunk(&text);
                Ok(Some(StoredFile::Chunk { text, tables }))
            }
            Ok(text) => parse_file(text.into_bytes())
                .map(|records| Some(StoredFile::Parsed(records)))
                .map_err(|r| ReadError::Damaged(format!("damaged: {r}"))),
            Err(_) => Err(ReadError::Damaged("damaged: not UTF-8".into())),
        }
    }

    /// The record named `name`; `like` (the record compared with it) gives
    /// the key line that finds it in a chunk.
    fn record(&self, name: &str, like: &UsageRecord) -> std::result::Result<UsageRecord, String> {
        let none = || "its file holds no record whose key hashes to its name".to_string();
        match self {
            StoredFile::Parsed(records) => records.get(name).cloned().ok_or_else(none),
            StoredFile::Chunk { text, tables } => {
                let single = render_single(like).map_err(|e| format!("{e:#}"))?;
                let found = single
                    .lines()
                    .find(|l| l.starts_with("idempotency_key = "))
                    .and_then(|line| tables.get(line))
                    .and_then(|body| toml::from_str::<UsageRecord>(&text[body.clone()]).ok())
                    .filter(|r| r.check().is_ok() && file_name_for_key(&r.idempotency_key) == name);
                match found {
                    Some(rec) => Ok(rec),
                    // Not found by its line: read the chunk whole to be sure.
                    None => parse_file(text.clone().into_bytes())
                        .map_err(|r| format!("damaged: {r}"))?
                        .remove(name)
                        .ok_or_else(none),
                }
            }
        }
    }
}

impl RecordLookup {
    /// The record stored at `path` (an entry named `name`); `like` is the
    /// record it is compared with.
    pub fn get(&mut self, path: &Path, name: &str, like: &UsageRecord) -> Result<UsageRecord> {
        let bad = |reason: String| {
            fail(
                Kind::CantCreate,
                format!("record {}: {reason}", path.display()),
            )
        };
        let ino = fs::symlink_metadata(path)
            .map_err(cant(format!("cannot check {}", path.display())))?
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
        file.record(name, like).map_err(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::UtcSecond;

    fn rec(key: &str) -> UsageRecord {
        UsageRecord {
            idempotency_key: key.into(),
            user_sid: "0a1b".into(),
            amount_cents: 7,
            resource_kind: "cpu".into(),
            description: String::new(),
            occurred_at: UtcSecond::parse("2026-11-26 10:00:00").unwrap(),
            node_id: "n1".into(),
        }
    }

    #[test]
    fn single_and_chunk_files_round_trip_by_name() {
        let one = render_single(&rec("a")).unwrap();
        let mut got = parse_file(one.into_bytes()).unwrap();
        assert_eq!(take_named(&mut got, &file_name_for_key("a")), Ok(rec("a")));

        let (a, b) = (rec("a"), rec("b"));
        let chunk = render_chunk([&a, &b].into_iter()).unwrap();
        assert!(chunk.starts_with("[[records]]\n"), "{chunk}");
        let mut got = parse_file(chunk.into_bytes()).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(take_named(&mut got, &file_name_for_key("b")), Ok(b));
        assert!(take_named(&mut got, &file_name_for_key("c")).is_err());
    }

    #[test]
    fn a_record_is_found_in_a_chunk_by_its_key_line_alone() {
        let (a, b, c) = (rec("a"), rec(r#"b"q\x"#), rec("c"));
        let text = render_chunk([&a, &b, &c].into_iter()).unwrap();
        let tables = index_chunk(&text);
        assert_eq!(tables.len(), 3);
        let chunk = StoredFile::Chunk { text, tables };
        for r in [&a, &b, &c] {
            let name = file_name_for_key(&r.idempotency_key);
            assert_eq!(chunk.record(&name, r).as_ref(), Ok(r));
        }
        let d = rec("d");
        assert!(chunk.record(&file_name_for_key("d"), &d).is_err());
    }

    #[test]
    fn a_chunk_with_a_rule_breaking_record_is_damaged() {
        let mut bad = rec("b");
        bad.user_sid = "X".into();
        let chunk = render_chunk([&rec("a"), &bad].into_iter()).unwrap();
        let err = parse_file(chunk.into_bytes()).unwrap_err();
        assert!(err.contains("user_sid"), "{err}");
    }
}
