//! Writing to stdout and stderr, for the binaries and the shim's log: a
//! reader that went away is not a failure, a stream that cannot be written
//! is an output error (74).

use crate::error::{Kind, fail};

/// Write normal output to stdout. A reader that went away (`| head`) is not
/// the program's failure: the rest is dropped silently; any other failure
/// (a full disk behind `>file`) is an output error (74).
pub fn out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(output_error("stdout", &e)),
        Ok(()) => Ok(()),
    }
}

/// Write one line to stderr. Unlike `eprintln!`, which panics (exit 101)
/// when stderr cannot be written, this returns the error (74) for the
/// caller to weigh.
///
/// When stderr is the journal (systemd's `JOURNAL_STREAM` names it), the
/// line starts with its syslog priority (`<3>` an error, `<4>` a warning,
/// `<6>` the rest), as sd-daemon(3) describes, so that `journalctl -p err`
/// finds the failures.
pub fn err_line(line: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let prefix = if stderr_is_journal() {
        format!("<{}>", priority(line))
    } else {
        String::new()
    };
    let mut stderr = std::io::stderr().lock();
    match writeln!(stderr, "{prefix}{line}").and_then(|()| stderr.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(output_error("stderr", &e)),
        Ok(()) => Ok(()),
    }
}

/// The syslog priority of a line on stderr: `<binary>: error: ...` is an
/// error (3); a warning, a quarantined file or an hour left pending is a
/// warning (4); anything else (retries, progress, the shim's request log)
/// is information (6).
fn priority(line: &str) -> u8 {
    let what = line.split_once(": ").map_or(line, |(_, rest)| rest);
    if what.starts_with("error:") {
        3
    } else if ["warning", "quarantined ", "left pending "]
        .iter()
        .any(|w| what.starts_with(w))
    {
        4
    } else {
        6
    }
}

/// Whether stderr is the journal: `JOURNAL_STREAM` holds the device and
/// inode of the stream systemd connected (`DEV:INODE`), and stderr is that
/// stream (a child whose stderr was redirected inherits the variable, but
/// not the stream).
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    static IS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IS.get_or_init(|| {
        let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
            return false;
        };
        let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
            return false;
        };
        let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
            return false;
        };
        std::fs::metadata("/proc/self/fd/2").is_ok_and(|m| m.dev() == dev && m.ino() == ino)
    })
}

/// The error for output that cannot be written (74).
pub fn output_error(stream: &str, e: &std::io::Error) -> anyhow::Error {
    fail(Kind::Output, format!("cannot write to {stream}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::priority;

    #[test]
    fn priorities_follow_what_a_line_says() {
        assert_eq!(priority("hero_usage_push: error: forge unreachable"), 3);
        assert_eq!(priority("hero_usage_push: warning: token file open"), 4);
        assert_eq!(priority("hero_usage_push: quarantined incoming/x: bad"), 4);
        assert_eq!(priority("hero_usage_push: retrying in 8 s"), 6);
        assert_eq!(priority("line 3: bad record"), 6);
    }
}
