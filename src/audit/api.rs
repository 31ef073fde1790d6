//! The forge as a source: the heads of the default branch and of every
//! `usage/*` branch through the Forgejo API (no history there). Files are
//! read with the project's client; folder and branch listings, which the
//! push job never needs, with two GET calls of this module's own that answer
//! the same typed [`ForgeError`]s (75/77/78 as for the other binaries).

use super::findings::Place;
use super::walk::{Entry, EntryKind, Lister};
use crate::config::{ForgeSettings, Secret};
use crate::forgejo::{ClientConfig, ForgeError, ForgejoClient, RepoRef, encode_path};
use anyhow::Result;
use serde_json::Value;

/// Largest listing read (a folder of a few thousand entries is far less).
const MAX_LISTING: u64 = 64 * 1024 * 1024;
/// Branches per page (Forgejo's maximum page size is 50).
const PAGE: usize = 50;

/// A forge error as the error every binary maps to its exit code.
pub fn forge_err(e: ForgeError) -> anyhow::Error {
    crate::error::Error::from(e).into()
}

/// The forge, its client and the repository read.
pub struct Forge {
    pub client: ForgejoClient,
    pub owner: String,
    pub repo: String,
    agent: ureq::Agent,
    base: String,
    token: Secret,
    /// The `nodes` listing fetched by [`Lister::nodes`], used by the next `list`.
    pending: Option<Vec<Entry>>,
}

impl Forge {
    pub fn connect(s: &ForgeSettings) -> Result<Forge> {
        let mut cfg = ClientConfig::new(&s.url, s.token.clone());
        cfg.insecure_http = s.insecure_http;
        let client = ForgejoClient::new(cfg.clone()).map_err(forge_err)?;
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(cfg.connect_timeout))
            .timeout_global(Some(cfg.timeout))
            .user_agent(concat!("hero_usage/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Forge {
            base: client.base_url().to_string(),
            client,
            owner: s.owner.clone(),
            repo: s.repo.clone(),
            agent: ureq::Agent::new_with_config(config),
            token: s.token.clone(),
            pending: None,
        })
    }

    fn scrub(&self, s: &str) -> String {
        match self.token.expose() {
            "" => s.to_string(),
            t => s.replace(t, "<redacted>"),
        }
    }

    /// GET a JSON answer; a non-2xx status as a typed error.
    fn get_json(&self, api_path: &str) -> Result<Value, ForgeError> {
        let what = format!("GET {api_path}");
        let url = format!("{}/api/v1{api_path}", self.base);
        let mut resp = self
            .agent
            .get(&url)
            .header("Authorization", &format!("token {}", self.token.expose()))
            .header("Accept", "application/json")
            .call()
            .map_err(|e| self.transport(&what, &e))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_LISTING)
            .read_to_vec()
            .map_err(|e| self.transport(&what, &e))?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&body).map_err(|e| ForgeError::Invalid {
                status,
                message: format!("{what}: the answer is not JSON: {e}"),
            });
        }
        let server = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_default();
        let msg = self.scrub(format!("{what}: {status} {server}").trim());
        Err(match status {
            401 => ForgeError::Unauthorized(msg),
            403 => ForgeError::Forbidden(msg),
            404 => ForgeError::NotFound(msg),
            500..=599 => ForgeError::Server {
                status,
                message: msg,
            },
            _ => ForgeError::Invalid {
                status,
                message: msg,
            },
        })
    }

    fn transport(&self, what: &str, e: &ureq::Error) -> ForgeError {
        let msg = self.scrub(&format!("{what}: {e}"));
        match e {
            ureq::Error::Timeout(_) => ForgeError::Timeout(msg),
            _ => ForgeError::Network(msg),
        }
    }

    fn repo_path(&self) -> String {
        format!(
            "/repos/{}/{}",
            encode_path(&self.owner),
            encode_path(&self.repo)
        )
    }

    /// Every branch and its head commit; `None` when the server has no
    /// branch list (then only the default branch is read).
    pub fn branches(&self) -> Result<Option<Vec<Place>>> {
        let mut out = Vec::new();
        for page in 1.. {
            let path = format!("{}/branches?page={page}&limit={PAGE}", self.repo_path());
            let list = match self.get_json(&path) {
                Ok(v) => v,
                Err(ForgeError::NotFound(_)) if page == 1 => return Ok(None),
                Err(e) => return Err(forge_err(e)),
            };
            let items = list.as_array().cloned().unwrap_or_default();
            let before = out.len();
            for b in &items {
                let Some(name) = b.get("name").and_then(Value::as_str) else {
                    continue;
                };
                if out.iter().any(|p: &Place| p.branch == name) {
                    continue;
                }
                let commit = b
                    .pointer("/commit/id")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                out.push(Place {
                    branch: name.to_string(),
                    commit,
                });
            }
            // A server that ignores `page` repeats itself: stop there too.
            if items.len() < PAGE || out.len() == before {
                break;
            }
        }
        Ok(Some(out))
    }

    /// A folder's entries; `None` when the path is missing; a file as one entry.
    fn contents(&self, place: &Place, path: &str) -> Result<Option<Value>> {
        let api = format!(
            "{}/contents/{}?ref={}",
            self.repo_path(),
            encode_path(path),
            encode_path(&place.branch)
        );
        match self.get_json(&api) {
            Ok(v) => Ok(Some(v)),
            Err(ForgeError::NotFound(_)) => Ok(None),
            Err(e) => Err(forge_err(e)),
        }
    }

    /// Read a file's bytes at its branch's head.
    pub fn read(&self, place: &Place, path: &str) -> Result<Vec<u8>> {
        match self
            .client
            .read_file(
                &RepoRef::new(&self.owner, &self.repo),
                path,
                Some(&place.branch),
            )
            .map_err(forge_err)?
        {
            Some(f) => Ok(f.content),
            None => Err(crate::error::fail(
                crate::error::Kind::TempFail,
                format!(
                    "{path} on {} vanished while it was read; run the audit again",
                    place.branch
                ),
            )),
        }
    }
}

fn entry(v: &Value) -> Option<Entry> {
    let kind = match v.get("type").and_then(Value::as_str)? {
        "dir" => EntryKind::Dir,
        "file" => EntryKind::File,
        _ => EntryKind::Other,
    };
    Some(Entry {
        name: v.get("name").and_then(Value::as_str)?.to_string(),
        kind,
        id: v
            .get("sha")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    })
}

impl Lister for Forge {
    fn nodes(&mut self, place: &Place) -> Result<Option<Entry>> {
        let Some(v) = self.contents(place, super::layout::NODES)? else {
            return Ok(None);
        };
        let Some(list) = v.as_array() else {
            return Ok(entry(&v));
        };
        self.pending = Some(list.iter().filter_map(entry).collect());
        Ok(Some(Entry {
            name: super::layout::NODES.to_string(),
            kind: EntryKind::Dir,
            id: String::new(),
        }))
    }

    fn list(&mut self, place: &Place, path: &str, _: &Entry) -> Result<Vec<Entry>> {
        if path == super::layout::NODES
            && let Some(p) = self.pending.take()
        {
            return Ok(p);
        }
        Ok(self
            .contents(place, path)?
            .and_then(|v| v.as_array().map(|l| l.iter().filter_map(entry).collect()))
            .unwrap_or_default())
    }
}
