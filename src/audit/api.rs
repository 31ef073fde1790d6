//! The forge as a source: the heads of the default branch and of every
//! `usage/*` branch through the Forgejo API (no history there). Files are
//! read with the project's client, folder and branch listings through its
//! `get_json`, so errors are the same typed [`ForgeError`]s (75/77/78 as for
//! the other binaries) and the token is scrubbed the same way.

use super::findings::Place;
use super::walk::{Entry, EntryKind, Lister};
use crate::error::{Kind, fail};
use crate::forgejo::{ClientConfig, ForgeError, ForgejoClient, RepoRef, encode_path, forge_err};
use crate::settings::ForgeSettings;
use anyhow::Result;
use serde::Deserialize;
use std::time::{Duration, Instant};

/// Largest folder listing read (a node folder of 10,000 hours is ~10 MB).
const MAX_LISTING: u64 = 64 * 1024 * 1024;
/// Largest page of the branch listing (50 branches are ~100 KB).
const MAX_BRANCH_PAGE: u64 = 8 * 1024 * 1024;
/// Branches per page (Forgejo's maximum page size is 50).
const PAGE: usize = 50;
/// Pages of branches read at most (100,000 branches): a listing that does
/// not end by then never will.
const MAX_PAGES: usize = 2000;
/// The whole API audit's deadline: a server answering slowly for ever
/// does not keep it running for ever.
const DEADLINE: Duration = Duration::from_secs(3600);

/// A forge error as the audit's: an answer that is not what the API
/// gives (not JSON, another shape, too large) is the forge's fault and
/// temporary (75), as a 5xx is.
pub fn api_err(e: ForgeError) -> anyhow::Error {
    match e {
        ForgeError::Invalid {
            status: 200..=299,
            message,
        } => garbage(&message),
        e => forge_err(e),
    }
}

fn garbage(what: &str) -> anyhow::Error {
    fail(
        Kind::TempFail,
        format!(
            "the forge's answer is not what its API gives: {what}; is --forgejo-url a Forgejo, and is it well? Run the audit again later"
        ),
    )
}

/// One branch of a listing.
#[derive(Deserialize)]
struct BranchItem {
    name: String,
    commit: Option<BranchCommit>,
}

#[derive(Deserialize)]
struct BranchCommit {
    id: Option<String>,
}

/// One entry of a folder listing.
#[derive(Deserialize)]
struct ContentItem {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    sha: Option<String>,
    size: Option<u64>,
}

/// The forge, its client and the repository read.
pub struct Forge {
    pub client: ForgejoClient,
    pub owner: String,
    pub repo: String,
    /// The `nodes` listing fetched by [`Lister::nodes`], used by the next `list`.
    pending: Option<Vec<Entry>>,
    started: Instant,
    budget: Duration,
}

impl Forge {
    pub fn connect(s: &ForgeSettings) -> Result<Forge> {
        let mut cfg = ClientConfig::new(&s.url, s.token.clone());
        cfg.insecure_http = s.insecure_http;
        let client = ForgejoClient::new(cfg).map_err(forge_err)?;
        let budget = crate::failpoint::test_knob("HERO_USAGE_TEST_AUDIT_DEADLINE_MS")
            .and_then(|ms| ms.parse().ok())
            .map_or(DEADLINE, Duration::from_millis);
        Ok(Forge {
            client,
            owner: s.owner.clone(),
            repo: s.repo.clone(),
            pending: None,
            started: Instant::now(),
            budget,
        })
    }

    /// Exit 75 once the deadline has passed.
    fn in_time(&self) -> Result<()> {
        if self.started.elapsed() > self.budget {
            return Err(fail(
                Kind::TempFail,
                format!(
                    "the forge did not give the whole repository within the audit's deadline of {:.1} s; run the audit again later, or audit a clone with --git-dir",
                    self.budget.as_secs_f64()
                ),
            ));
        }
        Ok(())
    }

    /// GET a JSON answer of a known shape through the project's client.
    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        api_path: &str,
        limit: u64,
    ) -> Result<T, ForgeError> {
        self.client.get_json(api_path, limit)
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
        let mut out: Vec<Place> = Vec::new();
        let mut names = std::collections::HashSet::new();
        let max_pages = crate::failpoint::test_knob("HERO_USAGE_TEST_AUDIT_MAX_PAGES")
            .and_then(|n| n.parse().ok())
            .unwrap_or(MAX_PAGES);
        for page in 1..=max_pages {
            self.in_time()?;
            let path = format!("{}/branches?page={page}&limit={PAGE}", self.repo_path());
            let items: Vec<BranchItem> = match self.get_json(&path, MAX_BRANCH_PAGE) {
                Ok(v) => v,
                Err(ForgeError::NotFound(_)) if page == 1 => return Ok(None),
                Err(e) => return Err(api_err(e)),
            };
            let before = out.len();
            for b in items.iter().filter(|b| names.insert(b.name.clone())) {
                out.push(Place {
                    branch: b.name.clone(),
                    commit: b.commit.as_ref().and_then(|c| c.id.clone()),
                });
            }
            if items.len() < PAGE {
                return Ok(Some(out));
            }
            if out.len() == before {
                return Err(garbage(&format!(
                    "page {page} of the branch listing repeats the branches before it"
                )));
            }
        }
        Err(fail(
            Kind::TempFail,
            format!(
                "the forge's branch listing did not end after {max_pages} pages of {PAGE}; run the audit again later, or audit a clone with --git-dir"
            ),
        ))
    }

    fn contents_path(&self, place: &Place, path: &str) -> String {
        format!(
            "{}/contents/{}?ref={}",
            self.repo_path(),
            encode_path(path),
            encode_path(&place.branch)
        )
    }

    /// A folder's entries; `None` when the path is missing.
    fn contents(&self, place: &Place, path: &str) -> Result<Option<Vec<Entry>>> {
        self.in_time()?;
        match self.get_json::<Vec<ContentItem>>(&self.contents_path(place, path), MAX_LISTING) {
            Ok(v) => Ok(Some(v.into_iter().map(entry).collect())),
            Err(ForgeError::NotFound(_)) => Ok(None),
            Err(e) => Err(api_err(e)),
        }
    }

    /// Read a file's bytes at its branch's head.
    pub fn read(&self, place: &Place, path: &str) -> Result<Vec<u8>> {
        self.in_time()?;
        match self
            .client
            .read_file(
                &RepoRef::new(&self.owner, &self.repo),
                path,
                Some(&place.branch),
            )
            .map_err(api_err)?
        {
            Some(f) => Ok(f.content),
            None => Err(fail(
                Kind::TempFail,
                format!(
                    "{path} on {} vanished while it was read; run the audit again",
                    place.branch
                ),
            )),
        }
    }
}

fn entry(v: ContentItem) -> Entry {
    let kind = match v.kind.as_str() {
        "dir" => EntryKind::Dir,
        "file" => EntryKind::File,
        _ => EntryKind::Other,
    };
    Entry {
        name: v.name,
        kind,
        mode: None,
        size: v.size,
        id: v.sha.unwrap_or_default(),
    }
}

impl Lister for Forge {
    fn nodes(&mut self, place: &Place) -> Result<Vec<Entry>> {
        let list = match self.contents(place, crate::layout::NODES) {
            Ok(Some(list)) => list,
            Ok(None) => return Ok(Vec::new()),
            // `nodes` is a file (the API answers one object): say so.
            Err(_) => {
                self.in_time()?;
                let path = self.contents_path(place, crate::layout::NODES);
                let one: ContentItem = self.get_json(&path, MAX_LISTING).map_err(api_err)?;
                return Ok(vec![entry(one)]);
            }
        };
        self.pending = Some(list);
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
        Ok(self.contents(place, path)?.unwrap_or_default())
    }
}
