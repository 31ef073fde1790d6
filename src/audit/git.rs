//! The local clone as a source, read with gitoxide: references, branches,
//! trees and blobs. Opened isolated (no user or system git config, no
//! environment) with replacement objects off, so that what is read is what
//! the objects say. Anything that cannot be read is exit 66.

use super::findings::{Findings, Place, Violation, ViolationKind};
use super::walk::{Entry, EntryKind, Lister};
use crate::error::{Kind, fail};
use anyhow::Result;
use gix::ObjectId;
use std::collections::BTreeMap;
use std::path::Path;

/// The largest hour file read: anything larger is a violation read no
/// further, so that memory stays bounded whatever a blob holds.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// The largest tree read (a node folder of 100,000 hours is 5 MB).
const MAX_TREE_BYTES: u64 = 64 * 1024 * 1024;
/// The mode of a regular, non-executable file: the only one an hour file has.
pub const REGULAR_FILE: u16 = 0o100644;

pub(crate) fn unreadable<E: std::fmt::Display>(what: String) -> impl FnOnce(E) -> anyhow::Error {
    move |e| fail(Kind::NoInput, format!("cannot read {what}: {e}"))
}

/// Open a repository, bare or not: isolated from user, system and
/// environment configuration, and with replacement objects off (a
/// `refs/replace/*` reference would otherwise swap one object for another).
pub fn open(path: &Path) -> Result<gix::Repository> {
    let opts = gix::open::Options::isolated().config_overrides(["core.useReplaceRefs=false"]);
    let mut repo = gix::open_opts(path, opts).map_err(|e| {
        fail(
            Kind::NoInput,
            format!(
                "cannot read the git directory {}: {e}; give --git-dir a clone of the billing repository (git clone --mirror, kept current with git fetch)",
                path.display()
            ),
        )
    })?;
    // Without gix's `max-performance` feature (which brings threads of its
    // own) no delta-base cache is set: hour files are deltas of each other,
    // and without one every read re-inflates its whole delta chain.
    repo.objects
        .set_pack_cache(|| Box::<gix::odb::pack::cache::lru::StaticLinkedList<64>>::default());
    Ok(repo)
}

/// A shallow clone lacks the history the audit proves: say so (exit 66).
pub fn refuse_shallow(repo: &gix::Repository, path: &Path) -> Result<()> {
    if repo.is_shallow().unwrap_or(false) {
        return Err(fail(
            Kind::NoInput,
            format!(
                "{} is a shallow clone: its history is cut, and the audit proves the whole history; run git fetch --unshallow there (or clone with git clone --mirror), or pass --no-history to check the heads only",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// A branch and the commit at its head.
#[derive(Debug, Clone)]
pub struct Branch {
    pub name: String,
    pub tip: ObjectId,
}

impl Branch {
    pub fn place(&self) -> Place {
        Place {
            branch: self.name.clone(),
            commit: Some(self.tip.to_string()),
        }
    }
}

/// The branches read: the default one and every `usage/*` one; the
/// references that are violations in themselves (`refs/replace/*`).
#[derive(Debug, Clone, Default)]
pub struct Branches {
    pub default: Option<Branch>,
    pub usage: Vec<Branch>,
    pub ignored: Vec<String>,
    pub findings: Findings,
}

impl Branches {
    pub fn all(&self) -> Vec<&Branch> {
        self.default.iter().chain(&self.usage).collect()
    }
}

/// A branch's short name and tip.
type Tips = BTreeMap<String, ObjectId>;

/// Every reference that matters: `refs/remotes/origin/*`, `refs/heads/*`
/// and `refs/replace/*`.
#[derive(Default)]
struct Refs {
    remote: Tips,
    local: Tips,
    replace: Vec<(String, ObjectId)>,
}

/// The branches of a clone: those `git fetch` keeps current
/// (`refs/remotes/origin/*`, default from `origin/HEAD`) when it has them,
/// else its own (`refs/heads/*`, default from `HEAD`, as in a mirror).
/// `default` (`--default-branch`) names the default branch instead; when
/// it cannot be told, or names a branch that does not exist, exit 66.
pub fn branches(repo: &gix::Repository, default: Option<&str>) -> Result<Branches> {
    let refs = references(repo)?;
    let (tips, told, from) = if refs.remote.is_empty() {
        (refs.local, local_default(repo)?, "HEAD")
    } else {
        let told = symbolic_target(repo, "refs/remotes/origin/HEAD", "refs/remotes/origin/");
        (refs.remote, told, "origin/HEAD")
    };
    let mut out = if tips.is_empty() {
        Branches::default() // an empty repository: nothing pushed yet
    } else {
        let name = match (default, told) {
            (Some(flag), _) => (flag.to_string(), "--default-branch"),
            (None, Some(told)) => (told, from),
            (None, None) => return Err(no_default(from)),
        };
        if !tips.contains_key(&name.0) {
            return Err(fail(
                Kind::NoInput,
                format!(
                    "{} names branch {}, which the git directory does not hold; fetch it, or give --default-branch the repository's default branch",
                    name.1, name.0
                ),
            ));
        }
        sort_branches(tips, &name.0)
    };
    for (name, target) in refs.replace {
        let place = Place {
            branch: name.clone(),
            commit: Some(target.to_string()),
        };
        out.findings.push(Violation::new(
            ViolationKind::ReplaceRef,
            &name,
            &place,
            "a replacement object rewrites what git shows of history; the billing repository holds none (delete it on the forge, and git update-ref -d it here)",
        ));
    }
    Ok(out)
}

fn no_default(from: &str) -> anyhow::Error {
    let fix = if from == "HEAD" {
        "HEAD is detached or on a node's branch"
    } else {
        "the clone has no origin/HEAD (git remote set-head origin --auto sets it)"
    };
    fail(
        Kind::NoInput,
        format!("cannot tell the repository's default branch: {fix}; give --default-branch NAME"),
    )
}

/// Every reference the audit looks at.
fn references(repo: &gix::Repository) -> Result<Refs> {
    let what = || "the references".to_string();
    let mut out = Refs::default();
    let platform = repo.references().map_err(unreadable(what()))?;
    for r in platform.all().map_err(unreadable(what()))? {
        let mut r = r.map_err(unreadable(what()))?;
        let name = r.name().as_bstr().to_string();
        if name.starts_with("refs/replace/") {
            let target = r.target().try_id().map(|id| id.to_owned());
            out.replace.push((
                name,
                target.unwrap_or_else(|| ObjectId::null(gix::hash::Kind::Sha1)),
            ));
            continue;
        }
        let (map, short) = if let Some(s) = name.strip_prefix("refs/remotes/origin/") {
            (&mut out.remote, s.to_string())
        } else if let Some(s) = name.strip_prefix("refs/heads/") {
            (&mut out.local, s.to_string())
        } else {
            continue;
        };
        if short == "HEAD" {
            continue;
        }
        let id = r
            .peel_to_id()
            .map_err(unreadable(format!("reference {name}")))?;
        map.insert(short, id.detach());
    }
    Ok(out)
}

/// The branch `HEAD` names, unless it is a node's (a working clone may
/// have one checked out: that is no default) or `HEAD` is detached.
fn local_default(repo: &gix::Repository) -> Result<Option<String>> {
    let head = repo.head_name().map_err(unreadable("HEAD".into()))?;
    let default = head.and_then(|h| {
        h.as_bstr()
            .to_string()
            .strip_prefix("refs/heads/")
            .map(str::to_string)
    });
    Ok(default.filter(|b| !b.starts_with("usage/")))
}

/// The default branch, the `usage/*` ones, and the names of the rest.
fn sort_branches(refs: Tips, default: &str) -> Branches {
    let mut out = Branches::default();
    for (name, tip) in refs {
        let b = Branch {
            name: name.clone(),
            tip,
        };
        if name == default {
            out.default = Some(b);
        } else if name.starts_with("usage/") {
            out.usage.push(b);
        } else {
            out.ignored.push(name);
        }
    }
    out
}

fn symbolic_target(repo: &gix::Repository, name: &str, prefix: &str) -> Option<String> {
    let r = repo.try_find_reference(name).ok()??;
    match r.target() {
        gix::refs::TargetRef::Symbolic(t) => t
            .as_bstr()
            .to_string()
            .strip_prefix(prefix)
            .map(str::to_string),
        gix::refs::TargetRef::Object(_) => None,
    }
}

/// One entry of a tree: name, kind, raw mode, object id.
pub(crate) struct TreeEntry {
    pub name: String,
    pub kind: EntryKind,
    pub mode: u16,
    pub id: ObjectId,
}

fn kind_of(mode: gix::object::tree::EntryMode) -> EntryKind {
    if mode.is_tree() {
        EntryKind::Dir
    } else if mode.is_blob() {
        EntryKind::File
    } else {
        EntryKind::Other
    }
}

/// The size of an object, without reading it.
fn object_size(repo: &gix::Repository, id: ObjectId) -> Result<u64> {
    Ok(repo
        .find_header(id)
        .map_err(unreadable(format!("object {id}")))?
        .size())
}

/// The entries of a tree, as stored (a tree may hold a name twice).
pub(crate) fn entries(repo: &gix::Repository, tree: ObjectId) -> Result<Vec<TreeEntry>> {
    let what = || format!("tree {tree}");
    let size = object_size(repo, tree)?;
    if size > MAX_TREE_BYTES {
        return Err(fail(
            Kind::NoInput,
            format!("cannot read tree {tree}: {size} bytes, more than the audit reads"),
        ));
    }
    let t = repo.find_tree(tree).map_err(unreadable(what()))?;
    let decoded = t.decode().map_err(unreadable(what()))?;
    Ok(decoded
        .entries
        .iter()
        .map(|e| TreeEntry {
            name: e.filename.to_string(),
            kind: kind_of(e.mode),
            mode: e.mode.value(),
            id: e.oid.to_owned(),
        })
        .collect())
}

pub(crate) fn commit_tree(repo: &gix::Repository, commit: ObjectId) -> Result<ObjectId> {
    let c = repo
        .find_commit(commit)
        .map_err(unreadable(format!("commit {commit}")))?;
    Ok(c.tree_id()
        .map_err(unreadable(format!("commit {commit}")))?
        .detach())
}

pub(crate) fn parse_id(id: &str) -> Result<ObjectId> {
    ObjectId::from_hex(id.as_bytes())
        .map_err(|e| fail(Kind::Internal, format!("bad object id {id}: {e}")))
}

/// A blob's bytes, or its size when it is over [`MAX_FILE_BYTES`] (then it
/// is not read at all).
pub fn read_bounded(repo: &gix::Repository, id: ObjectId) -> Result<Result<Vec<u8>, u64>> {
    let size = object_size(repo, id)?;
    if size > MAX_FILE_BYTES {
        return Ok(Err(size));
    }
    let mut blob = repo
        .find_blob(id)
        .map_err(unreadable(format!("blob {id}")))?;
    Ok(Ok(blob.take_data()))
}

/// Read a blob's bytes (the head checks listed its size already).
pub fn read_blob(repo: &gix::Repository, id: &str) -> Result<Vec<u8>> {
    match read_bounded(repo, parse_id(id)?)? {
        Ok(bytes) => Ok(bytes),
        Err(size) => Err(fail(
            Kind::NoInput,
            format!("cannot read blob {id}: {size} bytes, more than the audit reads"),
        )),
    }
}

/// Lists the trees at branch heads.
pub struct GitLister<'a> {
    repo: &'a gix::Repository,
    /// Look up each file's size (a header read each); without, a listing
    /// only names what is there.
    sizes: bool,
}

impl<'a> GitLister<'a> {
    pub fn new(repo: &'a gix::Repository) -> Self {
        GitLister { repo, sizes: true }
    }

    /// Names and ids only: what earlier tips held (`--state`).
    pub fn names_only(repo: &'a gix::Repository) -> Self {
        GitLister { repo, sizes: false }
    }

    fn entry(&self, e: TreeEntry) -> Result<Entry> {
        let size = match e.kind {
            EntryKind::File if self.sizes => Some(object_size(self.repo, e.id)?),
            _ => None,
        };
        Ok(Entry {
            name: e.name,
            kind: e.kind,
            mode: Some(e.mode),
            size,
            id: e.id.to_string(),
        })
    }
}

impl Lister for GitLister<'_> {
    fn top(&mut self, place: &Place, name: &str) -> Result<Vec<Entry>> {
        let commit = parse_id(place.commit.as_deref().unwrap_or_default())?;
        let root = commit_tree(self.repo, commit)?;
        entries(self.repo, root)?
            .into_iter()
            .filter(|e| e.name.eq_ignore_ascii_case(name))
            .map(|e| self.entry(e))
            .collect()
    }

    fn list(&mut self, _: &Place, _: &str, dir: &Entry) -> Result<Vec<Entry>> {
        entries(self.repo, parse_id(&dir.id)?)?
            .into_iter()
            .map(|e| self.entry(e))
            .collect()
    }
}

/// Whether `ancestor` is `tip` or one of its ancestors (a commit missing
/// from the clone is no ancestor: a clone that is not shallow holds every
/// ancestor of its tips).
pub fn is_ancestor(repo: &gix::Repository, ancestor: ObjectId, tip: ObjectId) -> Result<bool> {
    if repo.try_find_header(ancestor).ok().flatten().is_none() {
        return Ok(false);
    }
    let mut seen = std::collections::HashSet::new();
    let mut queue = std::collections::VecDeque::from([tip]);
    while let Some(id) = queue.pop_front() {
        if id == ancestor {
            return Ok(true);
        }
        if !seen.insert(id) {
            continue;
        }
        let c = repo
            .find_commit(id)
            .map_err(unreadable(format!("commit {id}")))?;
        queue.extend(c.parent_ids().map(|p| p.detach()));
    }
    Ok(false)
}
