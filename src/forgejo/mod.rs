//! Forgejo REST client (ureq 3, rustls): the calls the push job needs, with
//! typed errors it can branch on. It knows nothing of the spool.
//!
//! Behaviour follows `shared/forgejo/README.md`: `Authorization: token ...`;
//! a stale sha is 409 (v12+) or 422 `sha does not match` (older); the
//! many-files endpoint may be missing (404/405 → [`ForgeError::Unsupported`]);
//! an empty repository answers `[]` for any path; blobs over the server's
//! max blob size come back with `content: ""` and are read from `/raw/`.
//!
//! The token never appears in an error, a Debug output or a panic message:
//! it lives in a [`Secret`](crate::secret::Secret), and every message taken
//! from a server is scrubbed of it before it is kept.
//!
//! Layout: [`client`] (the agent, requests, answers to errors), [`contents`]
//! (reading and committing files), [`error`] (what can go wrong), [`url`]
//! (base URL rules and path encoding).

mod client;
mod contents;
mod error;
mod listing;
mod probe;
mod transport;
mod url;

pub use client::ForgejoClient;
pub(crate) use contents::{change_size, request_overhead};
pub use error::ForgeError;
pub(crate) use error::forge_err;
pub use listing::{Branch, DirEntry, EntryKind, Folder, MAX_PAGES};
pub use probe::WriteAccess;

use crate::secret::Secret;
use std::fmt;
use std::time::Duration;

/// How to reach a forge.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// e.g. `https://forge.example.org` or `http://127.0.0.1:3000/forgejo/`.
    pub base_url: String,
    pub token: Secret,
    /// Allow plain `http://` to a host that is not loopback.
    pub insecure_http: bool,
    /// Trust only the CA certificates (PEM) in this file; `None`: the
    /// operating system's trust store.
    pub ca_file: Option<std::path::PathBuf>,
    pub connect_timeout: Duration,
    /// Whole-request deadline (connect, send, receive).
    pub timeout: Duration,
}

impl ClientConfig {
    /// Defaults: 10 s to connect, 120 s per request.
    pub fn new(base_url: &str, token: Secret) -> ClientConfig {
        ClientConfig {
            base_url: base_url.to_string(),
            token,
            insecure_http: false,
            ca_file: None,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(120),
        }
    }
}

/// A repository's name: `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoRef {
    pub owner: String,
    pub name: String,
}

impl RepoRef {
    pub fn new(owner: &str, name: &str) -> RepoRef {
        RepoRef {
            owner: owner.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for RepoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// A repository as the client needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub name: String,
    pub full_name: String,
    pub default_branch: String,
    pub empty: bool,
    pub private: bool,
    pub owner_login: String,
    /// Whether the token's user may push to it, when the server tells.
    pub may_push: Option<bool>,
    /// Why it takes no commit whoever asks, when it is read-only: an
    /// archived repository (writes answer 423) or a mirror (403).
    pub read_only: Option<&'static str>,
}

/// A file read from the forge: its blob sha (for updates) and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub sha: String,
    pub content: Vec<u8>,
    /// The last commit that changed the file, when the server tells it.
    pub last_commit: Option<String>,
}

/// Common options of a commit.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `None`: the repository's default branch.
    pub branch: Option<String>,
    /// Create `branch` by this commit, starting from this existing branch
    /// (Forgejo's `new_branch`: the request's `branch` is the base).
    pub new_branch_from: Option<String>,
    pub message: String,
    pub author_name: String,
    pub author_email: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileOp {
    Create,
    Update,
    Delete,
}

impl FileOp {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            FileOp::Create => "create",
            FileOp::Update => "update",
            FileOp::Delete => "delete",
        }
    }
}

impl fmt::Display for FileOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One operation of a many-files commit. `sha` is required for update and delete.
#[derive(Debug, Clone)]
pub struct FileChange {
    pub operation: FileOp,
    pub path: String,
    pub content: Vec<u8>,
    pub sha: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitResult {
    pub commit_sha: String,
}

/// An HTTP method the client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
    Put,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
        })
    }
}
