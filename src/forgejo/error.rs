//! What can go wrong talking to the forge, and the exit-code kind of each.

use crate::error::Kind;
use std::fmt;

/// What went wrong talking to the forge. Every message is the server's
/// (scrubbed of the token) or ours, with the call it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForgeError {
    /// 404: repository, branch, org or path missing (or invisible to the token).
    NotFound(String),
    /// 409 on repository create; 422 `repository file already exists` on
    /// file create, `branch already exists` on a commit's `new_branch`.
    AlreadyExists(String),
    /// 409, or 422 `sha does not match`: re-read and retry.
    StaleSha(String),
    /// 401.
    Unauthorized(String),
    /// 403 for a missing permission or scope.
    Forbidden(String),
    /// 403 `PushRejected` (Forgejo 16+): another writer won a race; retry.
    PushRejected(String),
    /// 404/405 on the many-files call: an old server; fall back to one file at a time.
    Unsupported(String),
    /// 413: the request body is larger than the server (or its proxy) takes.
    TooLarge(String),
    /// 413 `quota exceeded`: Forgejo's own 413, the repository owner's
    /// storage quota is used up; a smaller request would not help.
    QuotaExceeded(String),
    /// 5xx, with the wait a `Retry-After` asks for (a 503's, in maintenance).
    Server {
        status: u16,
        message: String,
        retry_after: Option<std::time::Duration>,
    },
    /// 429: a rate limit (a proxy's; Forgejo has none), with the wait its
    /// `Retry-After` asks for, in seconds or as a date.
    RateLimited {
        message: String,
        retry_after: Option<std::time::Duration>,
    },
    /// Could not connect, connection reset, reply lost.
    Network(String),
    /// TLS cannot work as configured: a certificate the trust store cannot
    /// verify, TLS spoken to a plain-HTTP port. The next run would fail the
    /// same way: configuration (78).
    Tls(String),
    /// Connect or request deadline passed.
    Timeout(String),
    /// Any other answer (400, other 4xx, malformed body).
    Invalid { status: u16, message: String },
    /// Bad client configuration (URL, token).
    Config(String),
    /// The path holds something other than a file (a directory, a symlink,
    /// a submodule): it cannot be read or rewritten as one.
    NotAFile(String),
    /// A request could not be encoded: a bug, not the operator's doing.
    Encode(String),
}

/// `body` with `m` bound to the message of whichever variant `e` is (a
/// reference, or a mutable one, as `e` is): the one list of where each
/// variant keeps its message.
macro_rules! with_message {
    ($e:expr, $m:ident => $body:expr) => {
        match $e {
            ForgeError::NotFound($m)
            | ForgeError::AlreadyExists($m)
            | ForgeError::StaleSha($m)
            | ForgeError::Unauthorized($m)
            | ForgeError::Forbidden($m)
            | ForgeError::PushRejected($m)
            | ForgeError::Unsupported($m)
            | ForgeError::TooLarge($m)
            | ForgeError::QuotaExceeded($m)
            | ForgeError::Network($m)
            | ForgeError::Tls($m)
            | ForgeError::Timeout($m)
            | ForgeError::Config($m)
            | ForgeError::NotAFile($m)
            | ForgeError::Encode($m)
            | ForgeError::Server { message: $m, .. }
            | ForgeError::RateLimited { message: $m, .. }
            | ForgeError::Invalid { message: $m, .. } => $body,
        }
    };
}

impl ForgeError {
    /// The exit-code kind: 75 for what the next run may cure, 77 for a
    /// refused token, 78 for configuration, 70 for a bug.
    pub fn kind(&self) -> Kind {
        match self {
            ForgeError::Server { .. }
            | ForgeError::RateLimited { .. }
            | ForgeError::Network(_)
            | ForgeError::Timeout(_)
            | ForgeError::StaleSha(_)
            | ForgeError::PushRejected(_)
            | ForgeError::TooLarge(_)
            | ForgeError::QuotaExceeded(_)
            | ForgeError::AlreadyExists(_) => Kind::TempFail,
            ForgeError::Unauthorized(_) | ForgeError::Forbidden(_) => Kind::NoPerm,
            ForgeError::Config(_) | ForgeError::NotFound(_) | ForgeError::Tls(_) => Kind::Config,
            // 423: the repository was archived (read-only until someone
            // unarchives it; the next run would meet it too).
            ForgeError::Invalid { status: 423, .. } => Kind::Config,
            // 2xx answers that are not the Forgejo answer expected (a
            // proxy's page, a truncated or inconsistent JSON): the forge
            // answering garbage, which the next run may not meet.
            ForgeError::Invalid {
                status: 408 | 200..=299,
                ..
            } => Kind::TempFail,
            ForgeError::NotAFile(_) => Kind::Data,
            ForgeError::Unsupported(_) | ForgeError::Invalid { .. } | ForgeError::Encode(_) => {
                Kind::Internal
            }
        }
    }

    /// Worth retrying within the same run. `AlreadyExists` counts: on a
    /// file create it means another writer created it first.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ForgeError::Server { .. }
                | ForgeError::RateLimited { .. }
                | ForgeError::Network(_)
                | ForgeError::Timeout(_)
                | ForgeError::StaleSha(_)
                | ForgeError::PushRejected(_)
                | ForgeError::AlreadyExists(_)
                | ForgeError::Invalid { status: 408, .. }
        )
    }

    /// The least wait before a retry that the server asked for.
    pub(crate) fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            ForgeError::RateLimited { retry_after, .. }
            | ForgeError::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The request may have been applied though the answer says otherwise:
    /// a lost reply, or a 5xx (a proxy's 502 or 504 once the server had
    /// committed, an error after the commit). What a re-read then finds of
    /// the request's own changes, its request made.
    pub(crate) fn may_have_applied(&self) -> bool {
        matches!(
            self,
            ForgeError::Server { .. } | ForgeError::Network(_) | ForgeError::Timeout(_)
        )
    }

    /// A retry must read the files again first: their shas are stale.
    pub(crate) fn needs_reread(&self) -> bool {
        matches!(self, ForgeError::StaleSha(_) | ForgeError::AlreadyExists(_))
    }

    /// The same error with `note` after its message (every retried kind
    /// shows its message last): a retry that gave up says so.
    pub(crate) fn noting(mut self, note: &str) -> ForgeError {
        with_message!(&mut self, m => {
            m.push_str("; ");
            m.push_str(note);
        });
        self
    }

    /// The message kept with the error.
    pub(crate) fn message(&self) -> &str {
        with_message!(self, m => m)
    }
}

/// The wait a `Retry-After` asked for, as the end of a message.
fn asked_wait(retry_after: Option<std::time::Duration>) -> String {
    retry_after.map_or_else(String::new, |d| {
        format!("; it asks to wait {} s (Retry-After)", d.as_secs())
    })
}

impl fmt::Display for ForgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForgeError::NotFound(m) => write!(f, "forge: not found: {m}"),
            ForgeError::AlreadyExists(m) => write!(f, "forge: already exists: {m}"),
            ForgeError::StaleSha(m) => {
                write!(f, "forge: the file changed meanwhile (stale sha): {m}")
            }
            ForgeError::Unauthorized(m) => {
                write!(
                    f,
                    "forge refused the token (401): {m}; check the token file"
                )
            }
            ForgeError::Forbidden(m) => write!(
                f,
                "forge: permission denied (403): {m}; the token needs write:repository (and write:organization to create an org repository)"
            ),
            ForgeError::PushRejected(m) => {
                write!(f, "forge: push rejected (another writer won a race): {m}")
            }
            ForgeError::Unsupported(m) => {
                write!(f, "forge: endpoint not supported by this server: {m}")
            }
            ForgeError::TooLarge(m) => write!(f, "forge: request body too large (413): {m}"),
            ForgeError::QuotaExceeded(m) => write!(
                f,
                "forge: the repository owner's quota is used up (413): {m}; free space or raise the quota on the forge (Forgejo's [quota] settings); nothing is lost, the next run retries"
            ),
            ForgeError::Server {
                status,
                message,
                retry_after,
            } => write!(
                f,
                "forge: server error {status}: {message}{}",
                asked_wait(*retry_after)
            ),
            ForgeError::RateLimited {
                message,
                retry_after,
            } => write!(
                f,
                "forge: too many requests (429): {message}{}",
                asked_wait(*retry_after)
            ),
            ForgeError::Network(m) => write!(f, "forge unreachable: {m}"),
            ForgeError::Tls(m) => write!(f, "forge TLS: {m}"),
            ForgeError::Timeout(m) => write!(f, "forge timed out: {m}"),
            ForgeError::Invalid { status, message } => {
                write!(f, "forge: unexpected answer {status}: {message}")
            }
            ForgeError::Config(m) => write!(f, "forge URL: {m}"),
            ForgeError::NotAFile(m) => write!(f, "forge: {m}"),
            ForgeError::Encode(m) => write!(f, "internal error: cannot encode a request: {m}"),
        }
    }
}

// No `impl std::error::Error`: on purpose, so that `?` cannot put a forge
// error into an `anyhow` chain untagged. It enters one only through this
// `From`, as an error of its kind (the exit code reads the kind, never the
// forge error).
impl From<ForgeError> for crate::error::Error {
    fn from(e: ForgeError) -> Self {
        crate::error::Error::new(e.kind(), e.to_string())
    }
}

/// A forge error as the error every binary maps to its exit code.
pub(crate) fn forge_err(e: ForgeError) -> anyhow::Error {
    crate::error::Error::from(e).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_follows_the_message_as_shown() {
        for e in [
            ForgeError::Network("reset".into()),
            ForgeError::StaleSha("sha does not match".into()),
            ForgeError::Server {
                status: 502,
                message: String::new(),
                retry_after: None,
            },
        ] {
            let (want, kind) = (format!("{e}; retries used up"), e.kind());
            let noted = e.noting("retries used up");
            assert_eq!(noted.to_string(), want);
            assert_eq!(noted.kind(), kind);
        }
    }

    #[test]
    fn kinds() {
        assert_eq!(ForgeError::Network("x".into()).kind(), Kind::TempFail);
        assert_eq!(ForgeError::Forbidden("x".into()).kind(), Kind::NoPerm);
        assert_eq!(ForgeError::Unauthorized("x".into()).kind(), Kind::NoPerm);
        assert_eq!(ForgeError::PushRejected("x".into()).kind(), Kind::TempFail);
        assert_eq!(ForgeError::Config("x".into()).kind(), Kind::Config);
        assert_eq!(ForgeError::Tls("x".into()).kind(), Kind::Config);
        assert!(!ForgeError::Tls("x".into()).is_retryable());
        assert_eq!(ForgeError::Encode("x".into()).kind(), Kind::Internal);
        assert_eq!(ForgeError::TooLarge("x".into()).kind(), Kind::TempFail);
        assert!(ForgeError::StaleSha("x".into()).is_retryable());
        assert!(ForgeError::StaleSha("x".into()).needs_reread());
        assert!(!ForgeError::PushRejected("x".into()).needs_reread());
        assert!(!ForgeError::Forbidden("x".into()).is_retryable());
    }
}
