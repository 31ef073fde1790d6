//! Read-only probes for `hero_usage_push --check`: is this a Forgejo API,
//! may the token write the repository, or create it. The write and create
//! probes send requests that Forgejo refuses before doing anything: a
//! token without the scope gets 403, one with it 422 for the empty body.

use super::client::{Auth, Call, snippet};
use super::url::encode_segment;
use super::{ForgeError, ForgejoClient, Method, RepoRef};
use serde_json::Value;

/// Largest probe answer read.
const MAX_PROBE: u64 = 1 << 20;

/// What the write probe found out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteAccess {
    /// The token may write the repository.
    Granted,
    /// The server has no many-files endpoint to probe (the push falls back
    /// to one file per request).
    Unknown,
}

impl ForgejoClient {
    /// The server's Forgejo API version (`GET /version`, without the token):
    /// anything but a version is not a Forgejo API at this base URL.
    pub fn version(&self) -> Result<String, ForgeError> {
        let what = "GET /api/v1/version";
        let (status, body) =
            self.send_as(Auth::Anonymous, Method::Get, "/version", None, MAX_PROBE)?;
        let version = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("version")?.as_str().map(str::to_string));
        match (status, version) {
            (200, Some(v)) => Ok(v),
            (500..=599, _) => Err(self.classify(Call::Other, what, status, &body)),
            (status, _) => Err(self.not_the_api(
                &self.scrub(&format!("{what} answered {status}: {}", snippet(&body))),
            )),
        }
    }

    /// Whether the token may write `repo`, which exists: an empty change
    /// list answers 422 when it may, 403 when not.
    pub fn probe_write(&self, repo: &RepoRef) -> Result<WriteAccess, ForgeError> {
        let path = format!("{}/contents", Self::repo_path(repo));
        let what = format!("POST {path} (empty, a probe)");
        let (status, body) = self.send(Method::Post, &path, Some(b"{}"), MAX_PROBE)?;
        match status {
            422 => Ok(WriteAccess::Granted),
            404 | 405 => Ok(WriteAccess::Unknown),
            _ => Err(self.classify(Call::Other, &what, status, &body)),
        }
    }

    /// Whether the token may create a repository under `owner`: its own
    /// user (`under_user`) or an organisation. A create without a name
    /// answers 422 when it may, 403 when not, 404 for no such organisation.
    pub fn probe_create(&self, owner: &str, under_user: bool) -> Result<(), ForgeError> {
        let path = if under_user {
            "/user/repos".to_string()
        } else {
            format!("/orgs/{}/repos", encode_segment(owner))
        };
        let what = format!("POST {path} (no name, a probe)");
        let (status, body) = self.send(Method::Post, &path, Some(b"{}"), MAX_PROBE)?;
        match status {
            422 => Ok(()),
            _ => Err(self.classify(Call::Other, &what, status, &body)),
        }
    }
}
