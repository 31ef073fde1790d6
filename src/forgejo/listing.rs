//! Listings: a repository's branches and a folder's entries at a branch
//! (the audit reads the heads through them).

use super::url::encode_path;
use super::{ForgeError, ForgejoClient, RepoRef};
use serde_json::Value;

/// Largest listing read (a folder of a few thousand entries is far less).
const MAX_LISTING: u64 = 64 * 1024 * 1024;
/// Branches per page (Forgejo's maximum page size is 50).
const PAGE: usize = 50;

/// A branch and its head commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch {
    pub name: String,
    pub commit: Option<String>,
}

/// What a folder entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    /// A symbolic link, a submodule, anything else.
    Other,
}

/// One entry of a folder listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub kind: EntryKind,
    /// The blob or tree id (empty when the server gives none).
    pub sha: String,
    pub size: Option<u64>,
}

/// What a path holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Folder {
    /// A folder and its entries.
    Dir(Vec<DirEntry>),
    /// Not a folder: the entry itself, when the server describes it.
    NotADir(Option<DirEntry>),
}

impl ForgejoClient {
    /// Every branch and its head commit; `None` when the server has no
    /// branch list. A server that ignores `page` and repeats itself ends
    /// the listing too.
    pub fn branches(&self, repo: &RepoRef) -> Result<Option<Vec<Branch>>, ForgeError> {
        let mut out: Vec<Branch> = Vec::new();
        for page in 1.. {
            let path = format!(
                "{}/branches?page={page}&limit={PAGE}",
                Self::repo_path(repo)
            );
            let list = match self.get_json(&path, MAX_LISTING) {
                Ok(v) => v,
                Err(ForgeError::NotFound(_)) if page == 1 => return Ok(None),
                Err(e) => return Err(e),
            };
            let items = list.as_array().cloned().unwrap_or_default();
            let before = out.len();
            for b in &items {
                let Some(name) = b.get("name").and_then(Value::as_str) else {
                    continue;
                };
                if out.iter().any(|p| p.name == name) {
                    continue;
                }
                out.push(Branch {
                    name: name.to_string(),
                    commit: b
                        .pointer("/commit/id")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                });
            }
            if items.len() < PAGE || out.len() == before {
                break;
            }
        }
        Ok(Some(out))
    }

    /// What `path` holds on `branch`; `None` when it is missing.
    pub fn folder(
        &self,
        repo: &RepoRef,
        path: &str,
        branch: &str,
    ) -> Result<Option<Folder>, ForgeError> {
        let api = format!(
            "{}/contents/{}?ref={}",
            Self::repo_path(repo),
            encode_path(path),
            encode_path(branch)
        );
        match self.get_json(&api, MAX_LISTING) {
            Ok(Value::Array(list)) => Ok(Some(Folder::Dir(
                list.iter().filter_map(dir_entry).collect(),
            ))),
            Ok(v) => Ok(Some(Folder::NotADir(dir_entry(&v)))),
            Err(ForgeError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn dir_entry(v: &Value) -> Option<DirEntry> {
    let kind = match v.get("type").and_then(Value::as_str)? {
        "dir" => EntryKind::Dir,
        "file" => EntryKind::File,
        _ => EntryKind::Other,
    };
    Some(DirEntry {
        name: v.get("name").and_then(Value::as_str)?.to_string(),
        kind,
        sha: v
            .get("sha")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        size: v.get("size").and_then(Value::as_u64),
    })
}
