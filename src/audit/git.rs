//! The local clone as a source, read with gitoxide: branches, the files at
//! their heads, and the history walk (append-only, authors, foreign folders).
//! Anything that cannot be read is exit 66.

use super::findings::{Findings, Place, Violation, ViolationKind};
use super::history::{lost_records, wrong_author};
use super::layout::{self, Filter, NODES};
use super::walk::{Entry, EntryKind, Lister};
use crate::error::{Kind, fail};
use crate::record::UsageRecord;
use anyhow::Result;
use gix::ObjectId;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// Object cache of the history walk: a commit's trees are read again as
/// its child's parent trees. Head checks read each blob once and need none.
const OBJECT_CACHE_BYTES: usize = 16 * 1024 * 1024;

fn unreadable<E: std::fmt::Display>(what: String) -> impl FnOnce(E) -> anyhow::Error {
    move |e| fail(Kind::NoInput, format!("cannot read {what}: {e}"))
}

/// Open a repository, bare or not.
pub fn open(path: &Path) -> Result<gix::Repository> {
    let repo = gix::open(path).map_err(|e| {
        fail(
            Kind::NoInput,
            format!(
                "cannot read the git directory {}: {e}; give --git-dir a clone of the billing repository (git clone --mirror, kept current with git fetch)",
                path.display()
            ),
        )
    })?;
    let mut repo = repo;
    // Without gix's `max-performance` feature (which brings threads of its
    // own) no delta-base cache is set: hour files are deltas of each other,
    // and without one every read re-inflates its whole delta chain.
    repo.objects
        .set_pack_cache(|| Box::<gix::odb::pack::cache::lru::StaticLinkedList<64>>::default());
    Ok(repo)
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

/// The branches read: the default one and every `usage/*` one.
#[derive(Debug, Clone)]
pub struct Branches {
    pub default: Option<Branch>,
    pub usage: Vec<Branch>,
    pub ignored: Vec<String>,
}

impl Branches {
    pub fn all(&self) -> Vec<&Branch> {
        self.default.iter().chain(&self.usage).collect()
    }
}

/// The branches of a clone: those `git fetch` keeps current
/// (`refs/remotes/origin/*`, default from `origin/HEAD`) when it has them,
/// else its own (`refs/heads/*`, default from `HEAD`, as in a mirror).
pub fn branches(repo: &gix::Repository) -> Result<Branches> {
    let (remote, local) = branch_tips(repo)?;
    let (refs, default) = if remote.is_empty() {
        (local, local_default(repo)?)
    } else {
        let default = symbolic_target(repo, "refs/remotes/origin/HEAD", "refs/remotes/origin/");
        (remote, default)
    };
    let default = default.or_else(|| {
        ["main", "master"]
            .iter()
            .find(|b| refs.contains_key(**b))
            .map(|b| b.to_string())
    });
    Ok(sort_branches(refs, default))
}

/// A branch's short name and tip.
type Tips = BTreeMap<String, ObjectId>;

/// The tips of `refs/remotes/origin/*` and of `refs/heads/*`.
fn branch_tips(repo: &gix::Repository) -> Result<(Tips, Tips)> {
    let what = || "the references".to_string();
    let mut remote = BTreeMap::new();
    let mut local = BTreeMap::new();
    let platform = repo.references().map_err(unreadable(what()))?;
    for r in platform.all().map_err(unreadable(what()))? {
        let mut r = r.map_err(unreadable(what()))?;
        let name = r.name().as_bstr().to_string();
        let (map, short) = if let Some(s) = name.strip_prefix("refs/remotes/origin/") {
            (&mut remote, s.to_string())
        } else if let Some(s) = name.strip_prefix("refs/heads/") {
            (&mut local, s.to_string())
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
    Ok((remote, local))
}

/// The branch `HEAD` names, unless it is a node's.
fn local_default(repo: &gix::Repository) -> Result<Option<String>> {
    let head = repo.head_name().map_err(unreadable("HEAD".into()))?;
    let default = head.and_then(|h| {
        h.as_bstr()
            .to_string()
            .strip_prefix("refs/heads/")
            .map(str::to_string)
    });
    // A working clone may have a node's branch checked out: that is no default.
    Ok(default.filter(|b| !b.starts_with("usage/")))
}

/// The default branch, the `usage/*` ones, and the names of the rest.
fn sort_branches(refs: Tips, default: Option<String>) -> Branches {
    let mut out = Branches {
        default: None,
        usage: Vec::new(),
        ignored: Vec::new(),
    };
    for (name, tip) in refs {
        let b = Branch {
            name: name.clone(),
            tip,
        };
        if Some(&name) == default.as_ref() {
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

/// One entry of a tree.
fn entries(repo: &gix::Repository, tree: ObjectId) -> Result<Vec<(String, EntryKind, ObjectId)>> {
    let t = repo
        .find_tree(tree)
        .map_err(unreadable(format!("tree {tree}")))?;
    let decoded = t.decode().map_err(unreadable(format!("tree {tree}")))?;
    Ok(decoded
        .entries
        .iter()
        .map(|e| {
            let kind = if e.mode.is_tree() {
                EntryKind::Dir
            } else if e.mode.is_blob() || e.mode.is_executable() {
                EntryKind::File
            } else {
                EntryKind::Other
            };
            (e.filename.to_string(), kind, e.oid.to_owned())
        })
        .collect())
}

fn commit_tree(repo: &gix::Repository, commit: ObjectId) -> Result<ObjectId> {
    let c = repo
        .find_commit(commit)
        .map_err(unreadable(format!("commit {commit}")))?;
    Ok(c.tree_id()
        .map_err(unreadable(format!("commit {commit}")))?
        .detach())
}

fn parse_id(id: &str) -> Result<ObjectId> {
    ObjectId::from_hex(id.as_bytes())
        .map_err(|e| fail(Kind::Internal, format!("bad object id {id}: {e}")))
}

/// Read a blob's bytes.
pub fn read_blob(repo: &gix::Repository, id: &str) -> Result<Vec<u8>> {
    let mut blob = repo
        .find_blob(parse_id(id)?)
        .map_err(unreadable(format!("blob {id}")))?;
    Ok(blob.take_data())
}

/// Lists the trees at branch heads.
pub struct GitLister<'a>(pub &'a gix::Repository);

impl Lister for GitLister<'_> {
    fn nodes(&mut self, place: &Place) -> Result<Option<Entry>> {
        let commit = parse_id(place.commit.as_deref().unwrap_or_default())?;
        let root = commit_tree(self.0, commit)?;
        Ok(entries(self.0, root)?
            .into_iter()
            .find(|(n, _, _)| n == NODES)
            .map(|(name, kind, id)| Entry {
                name,
                kind,
                id: id.to_string(),
            }))
    }

    fn list(&mut self, _: &Place, _: &str, dir: &Entry) -> Result<Vec<Entry>> {
        Ok(entries(self.0, parse_id(&dir.id)?)?
            .into_iter()
            .map(|(name, kind, id)| Entry {
                name,
                kind,
                id: id.to_string(),
            })
            .collect())
    }
}

/// A file under `nodes/<node>/` that a commit added, changed or removed.
struct Change {
    node: String,
    name: String,
    old: Option<ObjectId>,
    new: Option<ObjectId>,
}

/// The `nodes` subtree of a root tree.
fn nodes_tree(repo: &gix::Repository, root: Option<ObjectId>) -> Result<Option<ObjectId>> {
    let Some(root) = root else { return Ok(None) };
    Ok(entries(repo, root)?
        .into_iter()
        .find(|(n, k, _)| n == NODES && *k == EntryKind::Dir)
        .map(|(_, _, id)| id))
}

/// Folders (or files) by name.
fn by_name(
    repo: &gix::Repository,
    tree: Option<ObjectId>,
    kind: EntryKind,
) -> Result<BTreeMap<String, ObjectId>> {
    let Some(tree) = tree else {
        return Ok(BTreeMap::new());
    };
    Ok(entries(repo, tree)?
        .into_iter()
        .filter(|(_, k, _)| *k == kind)
        .map(|(n, _, id)| (n, id))
        .collect())
}

/// What changed under `nodes/` between two root trees (unchanged subtrees
/// are skipped by id, so a commit costs what it touched).
fn node_changes(
    repo: &gix::Repository,
    old: Option<ObjectId>,
    new: ObjectId,
) -> Result<Vec<Change>> {
    let (old_nodes, new_nodes) = (nodes_tree(repo, old)?, nodes_tree(repo, Some(new))?);
    if old_nodes == new_nodes {
        return Ok(Vec::new());
    }
    let old_dirs = by_name(repo, old_nodes, EntryKind::Dir)?;
    let new_dirs = by_name(repo, new_nodes, EntryKind::Dir)?;
    let mut out = Vec::new();
    for node in old_dirs
        .keys()
        .chain(new_dirs.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (o, n) = (old_dirs.get(node).copied(), new_dirs.get(node).copied());
        if o == n {
            continue;
        }
        let old_files = by_name(repo, o, EntryKind::File)?;
        let new_files = by_name(repo, n, EntryKind::File)?;
        for name in old_files
            .keys()
            .chain(new_files.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            let (a, b) = (old_files.get(name).copied(), new_files.get(name).copied());
            if a != b {
                out.push(Change {
                    node: node.clone(),
                    name: name.clone(),
                    old: a,
                    new: b,
                });
            }
        }
    }
    Ok(out)
}

/// Give `repo` the object cache the history walk wants.
pub fn cache_trees(repo: &mut gix::Repository) {
    repo.object_cache_size_if_unset(OBJECT_CACHE_BYTES);
}

/// Walks history and checks every commit once.
pub struct HistoryWalk<'a> {
    pub repo: &'a gix::Repository,
    pub filter: &'a Filter,
    pub findings: Findings,
    visited: HashSet<ObjectId>,
    /// The commit that wrote each version (path, blob) of an hour file, so
    /// that a record lost later names the commit it landed with.
    writer: HashMap<(String, ObjectId), ObjectId>,
}

impl<'a> HistoryWalk<'a> {
    pub fn new(repo: &'a gix::Repository, filter: &'a Filter) -> Self {
        HistoryWalk {
            repo,
            filter,
            findings: Findings::default(),
            visited: HashSet::new(),
            writer: HashMap::new(),
        }
    }

    pub fn commits(&self) -> usize {
        self.visited.len()
    }

    /// Every commit reachable from `branch` not seen yet, parents before
    /// children (a depth-first post-order). Commits first met from a
    /// `usage/<node>` branch (so not on the default branch, which is walked
    /// first) may touch only that node's folder.
    pub fn walk(&mut self, branch: &Branch, own_node: Option<&str>) -> Result<()> {
        let mut stack = vec![(branch.tip, false)];
        while let Some((id, parents_done)) = stack.pop() {
            if parents_done {
                self.check(id, &branch.name, own_node)?;
                continue;
            }
            if !self.visited.insert(id) {
                continue;
            }
            let c = self
                .repo
                .find_commit(id)
                .map_err(unreadable(format!("commit {id}")))?;
            stack.push((id, true));
            stack.extend(c.parent_ids().map(|p| (p.detach(), false)));
        }
        Ok(())
    }

    /// Check one commit against its first parent.
    fn check(&mut self, id: ObjectId, branch: &str, own_node: Option<&str>) -> Result<()> {
        let what = || format!("commit {id}");
        let c = self.repo.find_commit(id).map_err(unreadable(what()))?;
        let parent = c.parent_ids().next().map(|p| p.detach());
        let tree = c.tree_id().map_err(unreadable(what()))?.detach();
        let author = c.author().map_err(unreadable(what()))?;
        let (name, email) = (author.name.to_string(), author.email.to_string());
        let place = Place {
            branch: branch.to_string(),
            commit: Some(id.to_string()),
        };
        let parent_tree = parent.map(|p| commit_tree(self.repo, p)).transpose()?;
        let changes = node_changes(self.repo, parent_tree, tree)?;
        self.check_commit(&place, parent, own_node, (&name, &email), &changes)
    }

    fn check_commit(
        &mut self,
        place: &Place,
        parent: Option<ObjectId>,
        own_node: Option<&str>,
        (name, email): (&str, &str),
        changes: &[Change],
    ) -> Result<()> {
        let mut nodes_done = HashSet::new();
        for ch in changes.iter().filter(|c| self.filter.wants_node(&c.node)) {
            let path = format!("{NODES}/{}/{}", ch.node, ch.name);
            if nodes_done.insert(ch.node.as_str()) {
                if let Some(why) = wrong_author(&ch.node, name, email) {
                    self.findings.push(Violation::new(
                        ViolationKind::WrongAuthor,
                        &path,
                        place,
                        why,
                    ));
                }
                if let Some(own) = own_node.filter(|own| *own != ch.node) {
                    self.findings.push(Violation::new(
                        ViolationKind::ForeignNode,
                        &path,
                        place,
                        format!(
                            "a commit on branch usage/{own} touched node {}'s folder",
                            ch.node
                        ),
                    ));
                }
            }
            if layout::hour_of_file_name(&ch.name).is_some_and(|h| self.filter.wants_hour(h)) {
                self.check_versions(&path, place, parent, ch)?;
            }
        }
        Ok(())
    }

    /// The append-only rule for one file changed by one commit.
    fn check_versions(
        &mut self,
        path: &str,
        place: &Place,
        parent: Option<ObjectId>,
        ch: &Change,
    ) -> Result<()> {
        let commit = place.commit.as_deref().map(parse_id).transpose()?;
        if let (Some(new), Some(c)) = (ch.new, commit) {
            self.writer.insert((path.to_string(), new), c);
        }
        let Some(old) = ch.old else { return Ok(()) };
        let before = self
            .writer
            .get(&(path.to_string(), old))
            .copied()
            .or(parent);
        let Some(old_records) = self.records(old)? else {
            return Ok(()); // a version that did not parse was reported at the head, or fixed
        };
        let new_records = match ch.new {
            Some(new) => match self.records(new)? {
                Some(r) => r,
                None => return Ok(()),
            },
            None => Vec::new(),
        };
        for p in lost_records(&old_records, &new_records) {
            let mut v = Violation::new(p.kind, path, place, p.detail).key(p.key.as_deref());
            v.other_commit = before.map(|p| p.to_string());
            self.findings.push(v);
        }
        Ok(())
    }

    fn records(&self, blob: ObjectId) -> Result<Option<Vec<UsageRecord>>> {
        let bytes = read_blob(self.repo, &blob.to_string())?;
        Ok(std::str::from_utf8(&bytes)
            .ok()
            .and_then(|t| crate::otoml::parse_batch(t).ok()))
    }
}
