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
    /// Input cannot be read (66).
    NoInput,
    /// A bug (70).
    Internal,
    /// The spool cannot be created or written (73).
    CantCreate,
    /// Temporary failure; nothing lost, the next run retries (75).
    TempFail,
    /// The forge refused the token (77).
    NoPerm,
    /// Configuration missing or invalid (78).
    Config,
}

impl Kind {
    /// The process exit code of this kind.
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Usage => 64,
            Kind::Data => 65,
            Kind::NoInput => 66,
            Kind::Internal => 70,
            Kind::CantCreate => 73,
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
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
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
pub fn fail(kind: Kind, message: impl Into<String>) -> anyhow::Error {
    Error::new(kind, message).into()
}

/// The kind of an error chain: the first [`Error`] in it, else an I/O error's
/// kind (spool trouble is 73), else internal.
pub fn kind_of(err: &anyhow::Error) -> Kind {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<Error>() {
            return e.kind;
        }
    }
    if err
        .chain()
        .any(|c| c.downcast_ref::<std::io::Error>().is_some())
    {
        return Kind::CantCreate;
    }
    Kind::Internal
}

/// The exit code for a whole run's error.
pub fn exit_code_of(err: &anyhow::Error) -> i32 {
    kind_of(err).exit_code()
}

/// Print `<binary>: error: <chain>` on stderr and return the exit code: the one
/// place every binary turns an error into an exit status.
pub fn report(binary: &str, err: &anyhow::Error) -> i32 {
    eprintln!("{binary}: error: {}", one_line(&format!("{err:#}")));
    exit_code_of(err)
}

/// A message on one line (some parsers' messages span several), so that
/// every stderr line starts with `<binary>:` and scripts can grep it.
pub fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Run a binary's `run()` and return the exit code its outcome maps to.
pub fn main_with(
    binary: &str,
    run: impl FnOnce() -> anyhow::Result<i32>,
) -> std::process::ExitCode {
    let code = match run() {
        Ok(code) => code,
        Err(err) => report(binary, &err),
    };
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(70))
}
