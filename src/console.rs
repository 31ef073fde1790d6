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
pub fn err_line(line: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stderr = std::io::stderr().lock();
    match writeln!(stderr, "{line}").and_then(|()| stderr.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(output_error("stderr", &e)),
        Ok(()) => Ok(()),
    }
}

/// The error for output that cannot be written (74).
pub fn output_error(stream: &str, e: &std::io::Error) -> anyhow::Error {
    fail(Kind::Output, format!("cannot write to {stream}: {e}"))
}
