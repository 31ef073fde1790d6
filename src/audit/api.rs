//! The forge as a source: the heads of the default branch and of every
//! `usage/*` branch through the Forgejo API (no history there). Files,
//! folders and branches are read with the project's client, so errors are
//! the same typed [`ForgeError`](crate::forgejo::ForgeError)s (75/77/78 as for the other binaries) and
//! the token is scrubbed the same way.

use super::findings::Place;
use super::walk::{Entry, EntryKind, Lister};
use crate::forgejo::{self, DirEntry, Folder, ForgejoClient, RepoRef, forge_err};
use crate::settings::ForgeSettings;
use anyhow::Result;

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
        let client = ForgejoClient::new(s.client_config()).map_err(forge_err)?;
        Ok(Forge {
            client,
            owner: s.owner.clone(),
            repo: s.repo.clone(),
            pending: None,
        })
    }

    fn repo_ref(&self) -> RepoRef {
        RepoRef::new(&self.owner, &self.repo)
    }

    /// Every branch and its head commit; `None` when the server has no
    /// branch list (then only the default branch is read).
    pub fn branches(&self) -> Result<Option<Vec<Place>>> {
        let branches = self.client.branches(&self.repo_ref()).map_err(forge_err)?;
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
        self.client
            .folder(&self.repo_ref(), path, &place.branch)
            .map_err(forge_err)
    }

    /// Read a file's bytes at its branch's head.
    pub fn read(&self, place: &Place, path: &str) -> Result<Vec<u8>> {
        match self
            .client
            .read_file(&self.repo_ref(), path, Some(&place.branch))
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
    fn nodes(&mut self, place: &Place) -> Result<Vec<Entry>> {
        let list = match self.contents(place, crate::layout::NODES)? {
            None => return Ok(Vec::new()),
            Some(Folder::NotADir(e)) => return Ok(e.map(entry).into_iter().collect()),
            Some(Folder::Dir(list)) => list,
        };
        self.pending = Some(list.into_iter().map(entry).collect());
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
        Ok(match self.contents(place, path)? {
            Some(Folder::Dir(list)) => list.into_iter().map(entry).collect(),
            _ => Vec::new(),
        })
    }
}
