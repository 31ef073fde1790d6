//! Error kinds and the sysexits code each maps to (DESIGN.md, "Exit codes").
//!
//! Library code returns `anyhow::Error`; where a caller must branch on the kind
//! (and `main` must pick an exit code) the chain carries an [`Error`] with a [`Kind`].
//! A leaf: it imports nothing of ours.

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

/// The kind of an error chain: the first [`Error`] in it, else internal
/// (70). Errors are tagged where they arise: an untagged I/O error is not
/// assumed to be the spool's. A forge error becomes an [`Error`] of its kind
/// through its one `From` (it is no `std::error::Error`, so `?` cannot let
/// one into a chain untagged).
pub(crate) fn kind_of(err: &anyhow::Error) -> Kind {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<Error>())
        .map_or(Kind::Internal, |e| e.kind)
}

/// The exit code for a whole run's error.
pub(crate) fn exit_code_of(err: &anyhow::Error) -> i32 {
    kind_of(err).exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_tags_never_from_bare_io_errors() {
        let io = anyhow::Error::from(std::io::Error::other("disk on fire"));
        assert_eq!(kind_of(&io), Kind::Internal);
        assert_eq!(exit_code_of(&io.context("while recording")), 70);
        let tagged = fail(Kind::TempFail, "down").context("pushing");
        assert_eq!(exit_code_of(&tagged), 75);
        assert_eq!(exit_code_of(&fail(Kind::Output, "full")), 74);
        assert_eq!(exit_code_of(&fail(Kind::NoInput, "dir")), 66);
    }
}
