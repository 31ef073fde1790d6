//! Listings: a repository's branches and a folder's entries at a branch
//! (the audit reads the heads through them).

use super::url::encode_path;
use super::{ForgeError, ForgejoClient, RepoRef};
use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::time::Instant;

/// Largest folder listing read (a node folder of 10,000 hours is ~10 MB).
const MAX_LISTING: u64 = 64 * 1024 * 1024;
/// Largest page of the branch listing (50 branches are ~100 KB).
const MAX_BRANCH_PAGE: u64 = 8 * 1024 * 1024;
/// Branches per page (Forgejo's maximum page size is 50).
const PAGE: usize = 50;
/// Pages of branches read at most (100,000 branches): a listing that does
/// not end by then never will.
pub const MAX_PAGES: usize = 2000;

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

/// One branch as the API gives it (only the fields read).
#[derive(Deserialize)]
struct BranchItem {
    name: String,
    commit: Option<BranchCommit>,
}

#[derive(Deserialize)]
struct BranchCommit {
    id: Option<String>,
}

/// One entry as the contents API gives it (only the fields read).
#[derive(Deserialize)]
struct ContentItem {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    sha: Option<String>,
    size: Option<u64>,
}

/// The contents API's answer: a list for a folder, one object otherwise.
enum Contents {
    List(Vec<ContentItem>),
    One(ContentItem),
}

impl<'de> Deserialize<'de> for Contents {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Contents;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of entries or one entry")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Contents, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element()? {
                    out.push(item);
                }
                Ok(Contents::List(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Contents, A::Error> {
                ContentItem::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(Contents::One)
            }
        }
        d.deserialize_any(V)
    }
}

/// A 2xx answer the listing cannot use.
fn unusable(message: String) -> ForgeError {
    ForgeError::Invalid {
        status: 200,
        message,
    }
}

impl ForgejoClient {
    /// Every branch and its head commit; `None` when the server has no
    /// branch list. Bounded: at most `max_pages` pages of at most 8 MiB
    /// each, and no page asked for after `deadline` (a `Timeout`); a listing
    /// that goes on, or a page that repeats the branches before it (a
    /// server ignoring `page`), is an `Invalid` answer.
    pub fn branches(
        &self,
        repo: &RepoRef,
        max_pages: usize,
        deadline: Instant,
    ) -> Result<Option<Vec<Branch>>, ForgeError> {
        let mut out: Vec<Branch> = Vec::new();
        let mut names = HashSet::new();
        for page in 1..=max_pages {
            if Instant::now() > deadline {
                return Err(ForgeError::Timeout(format!(
                    "the branch listing was not done by the deadline (page {page})"
                )));
            }
            let path = format!(
                "{}/branches?page={page}&limit={PAGE}",
                Self::repo_path(repo)
            );
            let items: Vec<BranchItem> = match self.get_json(&path, MAX_BRANCH_PAGE) {
                Ok(v) => v,
                Err(ForgeError::NotFound(_)) if page == 1 => return Ok(None),
                Err(e) => return Err(e),
            };
            let before = out.len();
            for b in items.iter().filter(|b| names.insert(b.name.clone())) {
                out.push(Branch {
                    name: b.name.clone(),
                    commit: b.commit.as_ref().and_then(|c| c.id.clone()),
                });
            }
            if items.len() < PAGE {
                return Ok(Some(out));
            }
            if out.len() == before {
                return Err(unusable(format!(
                    "page {page} of the branch listing repeats the branches before it"
                )));
            }
        }
        Err(unusable(format!(
            "the branch listing did not end after {max_pages} pages of {PAGE}"
        )))
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
        match self.get_json::<Contents>(&api, MAX_LISTING) {
            Ok(Contents::List(list)) => {
                Ok(Some(Folder::Dir(list.into_iter().map(dir_entry).collect())))
            }
            Ok(Contents::One(v)) => Ok(Some(Folder::NotADir(Some(dir_entry(v))))),
            Err(ForgeError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn dir_entry(v: ContentItem) -> DirEntry {
    let kind = match v.kind.as_str() {
        "dir" => EntryKind::Dir,
        "file" => EntryKind::File,
        _ => EntryKind::Other,
    };
    DirEntry {
        name: v.name,
        kind,
        sha: v.sha.unwrap_or_default(),
        size: v.size,
    }
}
