//! Error kinds and the sysexits code each maps to (DESIGN.md, "Exit codes").
//!
//! Library code returns `anyhow::Error`; where a caller must branch on the kind
//! (and `main` must pick an exit code) the chain carries an [`Error`] with a [`Kind`].

use std::fmt;

/// What went wrong, as far as a caller or a scheduler cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Bad command line (64).
    Usage,
    /// Bad record data, or a key reused with different content (65).
    Data,
    /// Input cannot be read, e.g. `--stdin` from a directory (66).
    NoInput,
    /// A bug (70).
    Internal,
    /// The spool cannot be created or written (73).
    CantCreate,
    /// Output (stdout or stderr) cannot be written (74).
    Output,
    /// Temporary failure; nothing lost, the next run retries (75).
    TempFail,
    /// The forge refused the token (77).
    NoPerm,
    /// Configuration missing or invalid (78).
    Config,
}

impl Kind {
    /// The process exit code of this kind.
    pub(crate) fn exit_code(self) -> i32 {
        match self {
            Kind::Usage => 64,
            Kind::Data => 65,
            Kind::NoInput => 66,
            Kind::Internal => 70,
            Kind::CantCreate => 73,
            Kind::Output => 74,
            Kind::TempFail => 75,
            Kind::NoPerm => 77,
            Kind::Config => 78,
        }
    }
}

/// An error of a known kind with a message for the operator.
#[derive(Debug)]
pub struct Error {
    pub kind: Kind,
    pub message: String,
}

impl Error {
    pub(crate) fn new(kind: Kind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Shorthand: `Err(fail(Kind::Config, "..."))?`.
pub(crate) fn fail(kind: Kind, message: impl Into<String>) -> anyhow::Error {
    Error::new(kind, message).into()
}

/// The kind of an error chain: the first [`Error`] or forge error in it,
/// else internal (70). Errors are tagged where they arise: an untagged I/O
/// error is not assumed to be the spool's.
pub(crate) fn kind_of(err: &anyhow::Error) -> Kind {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<Error>() {
            return e.kind;
        }
        if let Some(e) = cause.downcast_ref::<crate::forgejo::ForgeError>() {
            return e.kind();
        }
    }
    Kind::Internal
}

/// The exit code for a whole run's error.
pub(crate) fn exit_code_of(err: &anyhow::Error) -> i32 {
    kind_of(err).exit_code()
}

/// Print `<binary>: error: <chain>` on stderr and return the exit code: the one
/// place every binary turns an error into an exit status. A stderr that
/// cannot take the message does not change the code: the error is the news.
pub(crate) fn report(binary: &str, err: &anyhow::Error) -> i32 {
    let _ = crate::cli::err_line(&format!(
        "{binary}: error: {}",
        one_line(&format!("{err:#}"))
    ));
    exit_code_of(err)
}

/// A message on one line (some parsers' messages span several), so that
/// every stderr line starts with `<binary>:` and scripts can grep it; any
/// other control character (an ESC in a file name) is escaped, never sent
/// raw to a terminal.
pub(crate) fn one_line(message: &str) -> String {
    escape_controls(&message.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// `s` with every control character written as `\n`, `\t`, `\u{1b}`...
/// (Rust's escapes), everything else as it is.
pub(crate) fn escape_controls(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A file name as it can be shown in a message: UTF-8 as it is with control
/// characters escaped, any byte that is not UTF-8 as `\xNN`.
pub(crate) fn escape_name(name: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for chunk in name.as_bytes().utf8_chunks() {
        out.push_str(&escape_controls(chunk.valid()));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Run a binary's `run()` and return the exit code its outcome maps to.
pub(crate) fn main_with(
    binary: &str,
    run: impl FnOnce() -> anyhow::Result<i32>,
) -> std::process::ExitCode {
    crate::cli::survive_file_size_limit();
    let code = match run() {
        Ok(code) => code,
        Err(err) => report(binary, &err),
    };
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(70))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forgejo::ForgeError;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn kinds_come_from_tags_and_forge_errors_never_from_bare_io_errors() {
        let io = anyhow::Error::from(std::io::Error::other("disk on fire"));
        assert_eq!(kind_of(&io), Kind::Internal);
        assert_eq!(exit_code_of(&io.context("while recording")), 70);
        let forge = anyhow::Error::from(ForgeError::Unauthorized("no".into()));
        assert_eq!(kind_of(&forge), Kind::NoPerm);
        let forge = anyhow::Error::from(ForgeError::Network("down".into())).context("pushing");
        assert_eq!(exit_code_of(&forge), 75);
        assert_eq!(exit_code_of(&fail(Kind::Output, "full")), 74);
        assert_eq!(exit_code_of(&fail(Kind::NoInput, "dir")), 66);
    }

    #[test]
    fn names_and_messages_print_without_raw_control_bytes() {
        let name = std::ffi::OsStr::from_bytes(b"caf\xe9\n\x1b[31m.toml");
        assert_eq!(escape_name(name), "caf\\xe9\\n\\u{1b}[31m.toml");
        assert_eq!(one_line("a\nb \x1b[2J c"), "a b \\u{1b}[2J c");
        assert_eq!(escape_controls("plain é"), "plain é");
    }
}
