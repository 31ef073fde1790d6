//! The forge as a source: the heads of the default branch and of every
//! `usage/*` branch through the Forgejo API (no history there). Files,
//! folders and branches are read with the project's client, so errors are
//! the same typed [`ForgeError`](crate::forgejo::ForgeError)s (75/77/78 as for the other binaries) and
//! the token is scrubbed the same way.

use super::findings::Place;
use super::walk::{Entry, EntryKind, Lister};
use crate::error::{Kind, fail};
use crate::forgejo::{self, DirEntry, Folder, ForgeError, ForgejoClient, RepoRef, forge_err};
use crate::settings::ForgeSettings;
use anyhow::Result;
use std::time::{Duration, Instant};

/// The whole API audit's deadline: a server answering slowly for ever
/// does not keep it running for ever.
const DEADLINE: Duration = Duration::from_secs(3600);

/// A forge error as the audit's: a 2xx answer the audit cannot use (not
/// JSON, another shape, too large, a listing that never ends) is the
/// forge's fault and temporary (75), as a 5xx is.
pub fn api_err(e: ForgeError) -> anyhow::Error {
    match e {
        ForgeError::Invalid {
            status: 200..=299,
            message,
        } => fail(
            Kind::TempFail,
            format!(
                "{message}: not what the Forgejo API gives; is --forgejo-url a Forgejo, and is it well? Run the audit again later, or audit a clone with --git-dir"
            ),
        ),
        e => forge_err(e),
    }
}

/// A debug-build test knob's number.
fn knob(name: &str) -> Option<u64> {
    crate::failpoint::test_knob(name).and_then(|v| v.parse().ok())
}

/// The forge, its client and the repository read.
pub struct Forge {
    pub client: ForgejoClient,
    pub owner: String,
    pub repo: String,
    /// The listing of a top folder fetched by [`Lister::top`], used by
    /// the next `list` of that folder.
    pending: Option<(String, Vec<Entry>)>,
    started: Instant,
    budget: Duration,
}

impl Forge {
    pub fn connect(s: &ForgeSettings) -> Result<Forge> {
        let client = ForgejoClient::new(s.client_config()).map_err(forge_err)?;
        Ok(Forge {
            client,
            owner: s.owner.clone(),
            repo: s.repo.clone(),
            pending: None,
            started: Instant::now(),
            budget: knob("HERO_USAGE_TEST_AUDIT_DEADLINE_MS")
                .map_or(DEADLINE, Duration::from_millis),
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

    fn repo_ref(&self) -> RepoRef {
        RepoRef::new(&self.owner, &self.repo)
    }

    /// Every branch and its head commit; `None` when the server has no
    /// branch list (then only the default branch is read).
    pub fn branches(&self) -> Result<Option<Vec<Place>>> {
        self.in_time()?;
        let pages =
            knob("HERO_USAGE_TEST_AUDIT_MAX_PAGES").map_or(forgejo::MAX_PAGES, |n| n as usize);
        let branches = self
            .client
            .branches(&self.repo_ref(), pages, self.started + self.budget)
            .map_err(api_err)?;
        self.in_time()?;
        Ok(branches.map(|list| {
            list.into_iter()
                .map(|b| Place {
                    branch: b.name,
                    commit: b.commit,
                })
                .collect()
        }))
    }

    /// What a path holds at its branch's head; `None` when it is missing.
    fn contents(&self, place: &Place, path: &str) -> Result<Option<Folder>> {
        self.in_time()?;
        self.client
            .folder(&self.repo_ref(), path, &place.branch)
            .map_err(api_err)
    }

    /// Read a file's bytes at its branch's head.
    pub fn read(&self, place: &Place, path: &str) -> Result<Vec<u8>> {
        self.in_time()?;
        match self
            .client
            .read_file(&self.repo_ref(), path, Some(&place.branch))
            .map_err(api_err)?
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

fn entry(e: DirEntry) -> Entry {
    let kind = match e.kind {
        forgejo::EntryKind::Dir => EntryKind::Dir,
        forgejo::EntryKind::File => EntryKind::File,
        forgejo::EntryKind::Other => EntryKind::Other,
    };
    Entry {
        name: e.name,
        kind,
        mode: None,
        size: e.size,
        id: e.sha,
    }
}

impl Lister for Forge {
    fn top(&mut self, place: &Place, name: &str) -> Result<Vec<Entry>> {
        let list = match self.contents(place, name)? {
            None => return Ok(Vec::new()),
            Some(Folder::NotADir(e)) => return Ok(e.map(entry).into_iter().collect()),
            Some(Folder::Dir(list)) => list,
        };
        self.pending = Some((name.to_string(), list.into_iter().map(entry).collect()));
        Ok(vec![Entry {
            name: name.to_string(),
            kind: EntryKind::Dir,
            mode: None,
            size: None,
            id: String::new(),
        }])
    }

    fn list(&mut self, place: &Place, path: &str, _: &Entry) -> Result<Vec<Entry>> {
        if let Some((_, p)) = self.pending.take_if(|(top, _)| top == path) {
            return Ok(p);
        }
        Ok(match self.contents(place, path)? {
            Some(Folder::Dir(list)) => list.into_iter().map(entry).collect(),
            _ => Vec::new(),
        })
    }
}
