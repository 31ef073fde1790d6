//! Small file-system helpers (the spool's, the audit's state): create with
//! fixed modes, open without following symbolic links, fsync a directory,
//! unique names. A leaf: it imports nothing of ours.
//!
//! Without the libc crate there is no `O_NOFOLLOW`; instead every open of an
//! existing spool file checks `symlink_metadata` first and compares the opened
//! file's (device, inode) with it afterwards, so a symlink (or a file swapped
//! in between) is refused, never followed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of every spool directory.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every spool file.
pub const FILE_MODE: u32 = 0o600;

fn refused(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} {what}; the spool never follows symbolic links",
            path.display()
        ),
    )
}

/// Make `path` a directory (mode 0700) if missing; refuse a symlink or a
/// non-directory in its place. Returns true when it was created.
pub fn ensure_dir(path: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(refused(path, "is a symbolic link")),
        Ok(m) if m.is_dir() => Ok(false),
        Ok(_) => Err(refused(path, "is not a directory")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match fs::DirBuilder::new().mode(DIR_MODE).create(path) {
                Ok(()) => Ok(true),
                // Another process made it first: check what it made.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    ensure_dir(path).map(|_| false)
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Open an existing regular file (read-only, or read-write), refusing a
/// symlink or anything swapped in between the check and the open.
pub fn open_regular(path: &Path, write: bool) -> io::Result<File> {
    let before = fs::symlink_metadata(path)?;
    if before.file_type().is_symlink() {
        return Err(refused(path, "is a symbolic link"));
    }
    if !before.is_file() {
        return Err(refused(path, "is not a regular file"));
    }
    let f = OpenOptions::new().read(true).write(write).open(path)?;
    let after = f.metadata()?;
    if (after.dev(), after.ino()) != (before.dev(), before.ino()) {
        return Err(refused(path, "changed while it was opened"));
    }
    Ok(f)
}

/// Read a regular file of at most `limit` bytes without following symlinks.
pub fn read_regular(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    read_regular_meta(path, limit).map(|(bytes, _)| bytes)
}

/// [`read_regular`], with the metadata of the file that was read.
pub fn read_regular_meta(path: &Path, limit: u64) -> io::Result<(Vec<u8>, fs::Metadata)> {
    let f = open_regular(path, false)?;
    let meta = f.metadata()?;
    let mut buf = Vec::new();
    f.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {limit} bytes", path.display()),
        ));
    }
    Ok((buf, meta))
}

/// Create a new file (O_EXCL, so never through a symlink), mode 0600.
pub fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Open `path` for locking: created 0600 if missing, never through a symlink.
pub fn open_lock_file(path: &Path) -> io::Result<File> {
    match create_new(path) {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => open_regular(path, false),
        Err(e) => Err(e),
    }
}

/// Write `data` to a fresh file at `path` and fsync it.
pub fn write_new_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = create_new(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// fsync a directory, so that names linked into it or removed from it last.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// A name unique to this process and call: `<prefix>.<pid>.<nanos>.<n>`.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}.{}.{nanos}.{n}", std::process::id())
}

/// True when `path` exists (as anything, a symlink included).
pub fn exists_nofollow(path: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// When an entry last changed (its ctime): a rename sets it, and unlike
/// the mtime nobody can set it back (`touch -d`).
pub fn changed_at(m: &fs::Metadata) -> std::time::SystemTime {
    let (secs, nanos) = (m.ctime(), m.ctime_nsec());
    match u64::try_from(secs) {
        Ok(secs) => {
            std::time::UNIX_EPOCH
                + std::time::Duration::new(secs, nanos.clamp(0, 999_999_999) as u32)
        }
        Err(_) => std::time::UNIX_EPOCH,
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// A small text file: only a regular file (a symbolic link to one is
/// followed), and at most `max` bytes of it, so that a fifo cannot hang the
/// run nor `/dev/zero` fill the memory. The error is why, for a message
/// that never quotes the content.
pub(crate) fn read_small_text(path: &Path, max: u64) -> std::result::Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("it is not a regular file".into());
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(max + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!("it is larger than {max} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".into())
}
