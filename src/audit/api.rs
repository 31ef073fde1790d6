//! The forge as a source: the heads of the default branch and of every
//! `usage/*` branch through the Forgejo API (no history there). Files are
//! read with the project's client, folder and branch listings through its
//! `get_json`, so errors are the same typed [`ForgeError`]s (75/77/78 as for
//! the other binaries) and the token is scrubbed the same way.

use super::findings::Place;
use super::walk::{Entry, EntryKind, Lister};
use crate::forgejo::{ClientConfig, ForgeError, ForgejoClient, RepoRef, encode_path, forge_err};
use crate::settings::ForgeSettings;
use anyhow::Result;
use serde_json::Value;

/// Largest listing read (a folder of a few thousand entries is far less).
const MAX_LISTING: u64 = 64 * 1024 * 1024;
/// Branches per page (Forgejo's maximum page size is 50).
const PAGE: usize = 50;

/// The forge, its client and the repository read.
pub struct Forge {
    pub client: ForgejoClient,
    pub owner: String,
    pub repo: String,
    /// The `nodes` listing fetched by [`Lister::nodes`], used by the next `list`.
    pending: Option<Vec<Entry>>,
}

impl Forge {
    pub fn connect(s: &ForgeSettings) -> Result<Forge> {
        let mut cfg = ClientConfig::new(&s.url, s.token.clone());
        cfg.insecure_http = s.insecure_http;
        let client = ForgejoClient::new(cfg).map_err(forge_err)?;
        Ok(Forge {
            client,
            owner: s.owner.clone(),
            repo: s.repo.clone(),
            pending: None,
        })
    }

    /// GET a JSON listing through the project's client.
    fn get_json(&self, api_path: &str) -> Result<Value, ForgeError> {
        self.client.get_json(api_path, MAX_LISTING)
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
        mode: None,
        size: v.get("size").and_then(Value::as_u64),
        id: v
            .get("sha")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    })
}

impl Lister for Forge {
    fn nodes(&mut self, place: &Place) -> Result<Vec<Entry>> {
        let Some(v) = self.contents(place, crate::layout::NODES)? else {
            return Ok(Vec::new());
        };
        let Some(list) = v.as_array() else {
            return Ok(entry(&v).into_iter().collect());
        };
        self.pending = Some(list.iter().filter_map(entry).collect());
        Ok(vec![Entry {
            name: crate::layout::NODES.to_string(),
            kind: EntryKind::Dir,
            mode: None,
            size: None,
            id: String::new(),
        }])
    }

    fn list(&mut self, place: &Place, path: &str, _: &Entry) -> Result<Vec<Entry>> {
        if path == crate::layout::NODES
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
