//! Error kinds and the sysexits code each maps to (man 7 hero_usage, EXIT
//! STATUS).
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

/// How a run ends, as far as its process status goes: every `cmd::*::run`
/// returns one, and [`Exit::code`] is the one place it becomes a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0.
    Ok,
    /// `hero_usage_status --max-age`: a record waits too long (1).
    Stale,
    /// A failure, or a run done with something set aside (65).
    Failed(Kind),
}

impl Kind {
    /// Every kind, for reading a code back.
    const ALL: [Kind; 9] = [
        Kind::Usage,
        Kind::Data,
        Kind::NoInput,
        Kind::Internal,
        Kind::CantCreate,
        Kind::Output,
        Kind::TempFail,
        Kind::NoPerm,
        Kind::Config,
    ];
}

impl Exit {
    /// A run that failed with `failure`, or ended well without one.
    pub fn of(failure: Option<Kind>) -> Exit {
        failure.map_or(Exit::Ok, Exit::Failed)
    }

    /// The process exit code: the contract's sysexits.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Stale => 1,
            Exit::Failed(kind) => match kind {
                Kind::Usage => 64,
                Kind::Data => 65,
                Kind::NoInput => 66,
                Kind::Internal => 70,
                Kind::CantCreate => 73,
                Kind::Output => 74,
                Kind::TempFail => 75,
                Kind::NoPerm => 77,
                Kind::Config => 78,
            },
        }
    }

    /// The exit of a code that [`Exit::code`] gave, for a summary read back.
    pub fn from_code(code: u8) -> Option<Exit> {
        [Exit::Ok, Exit::Stale]
            .into_iter()
            .chain(Kind::ALL.map(Exit::Failed))
            .find(|e| e.code() == code)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_tags_never_from_bare_io_errors() {
        let io = anyhow::Error::from(std::io::Error::other("disk on fire"));
        assert_eq!(kind_of(&io), Kind::Internal);
        assert_eq!(kind_of(&io.context("while recording")), Kind::Internal);
        let tagged = fail(Kind::TempFail, "down").context("pushing");
        assert_eq!(kind_of(&tagged), Kind::TempFail);
    }

    #[test]
    fn every_exit_has_its_contract_code_and_reads_back() {
        let codes: Vec<u8> = [
            Exit::Ok,
            Exit::Stale,
            Exit::Failed(Kind::Usage),
            Exit::Failed(Kind::Data),
            Exit::Failed(Kind::NoInput),
            Exit::Failed(Kind::Internal),
            Exit::Failed(Kind::CantCreate),
            Exit::Failed(Kind::Output),
            Exit::Failed(Kind::TempFail),
            Exit::Failed(Kind::NoPerm),
            Exit::Failed(Kind::Config),
        ]
        .iter()
        .map(|e| {
            assert_eq!(Exit::from_code(e.code()), Some(*e));
            e.code()
        })
        .collect();
        assert_eq!(codes, [0, 1, 64, 65, 66, 70, 73, 74, 75, 77, 78]);
        assert_eq!(Exit::from_code(2), None);
    }
}
