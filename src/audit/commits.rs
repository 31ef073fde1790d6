//! The history walk: every commit reachable from the branches read, each
//! against every one of its parents. Together these make the first-seen
//! rule: a record that appeared in a node's hour file stays in that file,
//! unchanged, in every later version up to the head. A version that does
//! not parse is a violation of its own, and the versions after it are
//! held to the last version before it that did parse, so that a record
//! cannot be laundered away through a broken version.

use super::check::parse_version;
use super::filter::Filter;
use super::findings::{Findings, Place, Violation, ViolationKind};
use super::git::{Branch, MAX_FILE_BYTES, commit_tree, read_bounded, unreadable};
use super::history::{lost_records, wrong_author};
use super::spools::Spools;
use crate::error::{Kind, fail};
use crate::layout::{self, NODES, SIGNATURES};
use crate::record::UsageRecord;
use crate::trailer;
use anyhow::Result;
use gix::ObjectId;
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;

/// Records held in the cache of parsed versions (a version is read again
/// as the old side of the next change of its file).
const CACHED_RECORDS: usize = 256 * 1024;
/// The largest tree the walk reads.
const MAX_TREE_BYTES: u64 = 64 * 1024 * 1024;

/// A file under `nodes/<node>/` or `signatures/<node>/` that a commit
/// added, changed or removed against one parent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Change {
    /// `nodes` or `signatures`.
    pub top: &'static str,
    pub node: String,
    pub name: String,
    pub old: Option<ObjectId>,
    pub new: Option<ObjectId>,
}

/// One version of an hour file as the history walk reads it.
#[derive(Clone)]
enum Version {
    Records(Rc<Vec<UsageRecord>>),
    /// It does not parse (or is too large to read): the kind and why.
    Broken(ViolationKind, String),
}

/// Parsed versions by blob id, bounded by the records held.
#[derive(Default)]
struct Versions {
    by_blob: HashMap<ObjectId, Version>,
    order: VecDeque<ObjectId>,
    records: usize,
}

impl Versions {
    fn get(&self, id: &ObjectId) -> Option<Version> {
        self.by_blob.get(id).cloned()
    }

    fn put(&mut self, id: ObjectId, v: Version) {
        if let Version::Records(r) = &v {
            self.records += r.len();
        }
        self.by_blob.insert(id, v);
        self.order.push_back(id);
        while self.records > CACHED_RECORDS {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(Version::Records(r)) = self.by_blob.remove(&old) {
                self.records -= r.len();
            }
        }
    }
}

/// Walks history and checks every commit once.
pub struct HistoryWalk<'a> {
    repo: &'a gix::Repository,
    filter: &'a Filter,
    pub findings: Findings,
    /// The spool ids that wrote each node, in history order.
    pub spools: Spools,
    visited: HashSet<ObjectId>,
    walked: usize,
    /// Versions the head checks read: parsed here only when compared.
    head_blobs: HashSet<ObjectId>,
    /// The commit that wrote each version (path, blob) of an hour file, so
    /// that a record lost later names the commit it landed with.
    writer: HashMap<(String, ObjectId), ObjectId>,
    /// For a version (path, blob) that does not parse: the last version
    /// before it that did, which later versions are held to.
    last_good: HashMap<(String, ObjectId), Option<ObjectId>>,
    versions: Versions,
}

impl<'a> HistoryWalk<'a> {
    pub fn new(
        repo: &'a gix::Repository,
        filter: &'a Filter,
        head_blobs: HashSet<ObjectId>,
    ) -> Self {
        HistoryWalk {
            repo,
            filter,
            findings: Findings::default(),
            spools: Spools::default(),
            visited: HashSet::new(),
            walked: 0,
            head_blobs,
            writer: HashMap::new(),
            last_good: HashMap::new(),
            versions: Versions::default(),
        }
    }

    /// Commits an earlier run proved (`--state`): the walk stops there.
    pub fn skip(&mut self, proved: impl IntoIterator<Item = ObjectId>) {
        self.visited.extend(proved);
    }

    /// The commits walked.
    pub fn commits(&self) -> usize {
        self.walked
    }

    /// Every commit reachable from `branch` not seen yet, parents before
    /// children (a depth-first post-order). Commits first met from a
    /// `usage/<node>` branch (so not on the default branch, which is walked
    /// first) may touch only that node's folder.
    pub fn walk(&mut self, branch: &Branch, own_node: Option<&str>) -> Result<()> {
        let mut stack = vec![(branch.tip, false)];
        while let Some((id, parents_done)) = stack.pop() {
            if parents_done {
                self.walked += 1;
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

    /// Check one commit against each of its parents (a root commit against
    /// the empty tree).
    fn check(&mut self, id: ObjectId, branch: &str, own_node: Option<&str>) -> Result<()> {
        let what = || format!("commit {id}");
        let c = self.repo.find_commit(id).map_err(unreadable(what()))?;
        let tree = c.tree_id().map_err(unreadable(what()))?.detach();
        let author = c.author().map_err(unreadable(what()))?;
        let author = (author.name.to_string(), author.email.to_string());
        let message = String::from_utf8_lossy(c.message_raw_sloppy()).into_owned();
        let parents: Vec<Option<ObjectId>> =
            match c.parent_ids().map(|p| p.detach()).collect::<Vec<_>>() {
                p if p.is_empty() => vec![None],
                p => p.into_iter().map(Some).collect(),
            };
        let place = Place {
            branch: branch.to_string(),
            commit: Some(id.to_string()),
        };
        let mut diffs = Vec::with_capacity(parents.len());
        for p in &parents {
            let parent_tree = p.map(|p| commit_tree(self.repo, p)).transpose()?;
            diffs.push(changes(self.repo, parent_tree, tree)?);
        }
        let authored = authored(&diffs);
        self.check_authorship(&place, own_node, &author, &message, &authored);
        let mut done = HashSet::new();
        for (parent, diff) in parents.iter().zip(&diffs) {
            for ch in diff {
                let wanted = ch.top == NODES
                    && self.filter.wants_node(&ch.node)
                    && layout::hour_of_file_name(&ch.name)
                        .is_some_and(|h| self.filter.wants_hour(h));
                if wanted && done.insert((ch.node.as_str(), ch.name.as_str(), ch.old, ch.new)) {
                    self.check_versions(id, &place, *parent, ch)?;
                }
            }
        }
        Ok(())
    }

    /// Who may write a node's folder: the node's push, on the shared
    /// branch or its own, from the spool that holds the node. Only what a
    /// commit wrote itself counts (a merge taking a file as one of its
    /// parents has it was written by that parent's commit).
    fn check_authorship(
        &mut self,
        place: &Place,
        own_node: Option<&str>,
        (name, email): &(String, String),
        message: &str,
        authored: &[&Change],
    ) {
        let t = trailer::read(message);
        let mut nodes_done = HashSet::new();
        for ch in authored.iter().filter(|c| self.filter.wants_node(&c.node)) {
            if !nodes_done.insert(ch.node.as_str()) {
                continue;
            }
            let path = format!("{}/{}/{}", ch.top, ch.node, ch.name);
            // Changes list nodes/ first, so a node's hour files are never
            // skipped. A signature may be committed by anyone (one made by
            // hand with ssh-keygen): it proves itself (--allowed-signers).
            let wrong = (ch.top == NODES)
                .then(|| wrong_author(&ch.node, name, email))
                .flatten();
            if let Some(why) = wrong {
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
            if let Some(why) = self.spools.see(&ch.node, &t) {
                self.findings
                    .push(Violation::new(ViolationKind::TwoSpools, &path, place, why));
            }
        }
    }

    /// The first-seen rule for one file changed by one commit against one
    /// parent: the new version holds every record of the old one (of the
    /// last one that parsed, when the old one does not) unchanged.
    fn check_versions(
        &mut self,
        commit: ObjectId,
        place: &Place,
        parent: Option<ObjectId>,
        ch: &Change,
    ) -> Result<()> {
        let path = format!("{NODES}/{}/{}", ch.node, ch.name);
        if let Some(new) = ch.new {
            self.writer.entry((path.clone(), new)).or_insert(commit);
        }
        let base = match ch.old {
            None => None,
            Some(old) => self.last_good_version(&path, old)?,
        };
        let new_records = match ch.new {
            None => Rc::new(Vec::new()),
            // Nothing to compare, and the head checks read it.
            Some(new) if base.is_none() && self.head_blobs.contains(&new) => return Ok(()),
            Some(new) => match self.version(new)? {
                Version::Records(r) => r,
                Version::Broken(kind, why) => {
                    if !self.head_blobs.contains(&new) {
                        let why = format!("a version in history that readers refuse: {why}");
                        self.findings.push(Violation::new(kind, &path, place, why));
                    }
                    self.last_good.insert((path, new), base);
                    return Ok(());
                }
            },
        };
        let Some(base) = base else { return Ok(()) };
        let Version::Records(old_records) = self.version(base)? else {
            return Ok(());
        };
        let before = self.writer.get(&(path.clone(), base)).copied().or(parent);
        for p in lost_records(&old_records, &new_records) {
            let mut v = Violation::new(p.kind, &path, place, p.detail).key(p.key.as_deref());
            v.other_commit = before.map(|p| p.to_string());
            self.findings.push(v);
        }
        Ok(())
    }

    /// `old` when it parses, else the last version before it that did.
    fn last_good_version(&mut self, path: &str, old: ObjectId) -> Result<Option<ObjectId>> {
        if let Some(base) = self.last_good.get(&(path.to_string(), old)) {
            return Ok(*base);
        }
        Ok(match self.version(old)? {
            Version::Records(_) => Some(old),
            Version::Broken(..) => None,
        })
    }

    fn version(&mut self, blob: ObjectId) -> Result<Version> {
        if let Some(v) = self.versions.get(&blob) {
            return Ok(v);
        }
        let v = match read_bounded(self.repo, blob)? {
            Err(size) => Version::Broken(
                ViolationKind::TooLarge,
                format!(
                    "{size} bytes, more than the {MAX_FILE_BYTES} an hour file may hold; not read"
                ),
            ),
            Ok(bytes) => match parse_version(&bytes) {
                Ok(r) => Version::Records(Rc::new(r)),
                Err(why) => Version::Broken(ViolationKind::UnparsableVersion, why),
            },
        };
        self.versions.put(blob, v.clone());
        Ok(v)
    }
}

/// The changes a commit made itself: against every parent (a file a merge
/// took as one parent had it is that parent's doing).
fn authored(diffs: &[Vec<Change>]) -> Vec<&Change> {
    let Some((first, rest)) = diffs.split_first() else {
        return Vec::new();
    };
    fn key(c: &Change) -> (&str, &str, &str) {
        (c.top, &c.node, &c.name)
    }
    let others: Vec<HashSet<(&str, &str, &str)>> =
        rest.iter().map(|d| d.iter().map(key).collect()).collect();
    first
        .iter()
        .filter(|c| others.iter().all(|o| o.contains(&key(c))))
        .collect()
}

/// A tree, refused when it is larger than any billing tree can be.
fn tree(repo: &gix::Repository, id: ObjectId) -> Result<gix::Tree<'_>> {
    let size = repo
        .find_header(id)
        .map_err(unreadable(format!("tree {id}")))?
        .size();
    if size > MAX_TREE_BYTES {
        return Err(fail(
            Kind::NoInput,
            format!("cannot read tree {id}: {size} bytes, more than the audit reads"),
        ));
    }
    repo.find_tree(id).map_err(unreadable(format!("tree {id}")))
}

/// The entries of `id` of one kind (folders or files), by name, as
/// borrowed from the decoded tree, sorted by name.
fn sorted<'t>(t: Option<&'t gix::objs::TreeRef<'t>>, dirs: bool) -> Vec<(&'t [u8], ObjectId)> {
    let mut v: Vec<(&[u8], ObjectId)> = t
        .map(|t| {
            t.entries
                .iter()
                .filter(|e| {
                    if dirs {
                        e.mode.is_tree()
                    } else {
                        e.mode.is_blob()
                    }
                })
                .map(|e| (e.filename.as_ref(), e.oid.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

/// A name whose object differs between two trees: (name, old, new).
type Differs = (String, Option<ObjectId>, Option<ObjectId>);

/// The names whose objects differ between two sorted lists.
fn differing(old: &[(&[u8], ObjectId)], new: &[(&[u8], ObjectId)]) -> Vec<Differs> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    let name = |n: &[u8]| String::from_utf8_lossy(n).into_owned();
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a.0 == b.0 => {
                if a.1 != b.1 {
                    out.push((name(a.0), Some(a.1), Some(b.1)));
                }
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a.0 < b.0 => {
                out.push((name(a.0), Some(a.1), None));
                i += 1;
            }
            (Some(a), None) => {
                out.push((name(a.0), Some(a.1), None));
                i += 1;
            }
            (_, Some(b)) => {
                out.push((name(b.0), None, Some(b.1)));
                j += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// The `nodes` folder of a root tree.
/// The `nodes` and `signatures` folders of a root tree.
fn top_trees(repo: &gix::Repository, root: Option<ObjectId>) -> Result<[Option<ObjectId>; 2]> {
    let Some(root) = root else {
        return Ok([None, None]);
    };
    let t = tree(repo, root)?;
    let d = t.decode().map_err(unreadable(format!("tree {root}")))?;
    Ok([NODES, SIGNATURES].map(|top| {
        d.entries
            .iter()
            .find(|e| e.filename == top && e.mode.is_tree())
            .map(|e| e.oid.to_owned())
    }))
}

/// What changed under `nodes/` and `signatures/` between two root trees
/// (unchanged subtrees are skipped by id, so a commit costs what it touched).
pub fn changes(
    repo: &gix::Repository,
    old: Option<ObjectId>,
    new: ObjectId,
) -> Result<Vec<Change>> {
    let olds = top_trees(repo, old)?;
    let news = top_trees(repo, Some(new))?;
    let mut out = Vec::new();
    for (top, (old_top, new_top)) in [NODES, SIGNATURES]
        .into_iter()
        .zip(olds.into_iter().zip(news))
    {
        if old_top == new_top {
            continue;
        }
        for (node, o, n) in diff_level(repo, old_top, new_top, true)? {
            for (name, a, b) in diff_level(repo, o, n, false)? {
                out.push(Change {
                    top,
                    node: node.clone(),
                    name,
                    old: a,
                    new: b,
                });
            }
        }
    }
    Ok(out)
}

/// The folders (`dirs`) or files that differ between two trees.
fn diff_level(
    repo: &gix::Repository,
    old: Option<ObjectId>,
    new: Option<ObjectId>,
    dirs: bool,
) -> Result<Vec<Differs>> {
    let decode_err = |id: ObjectId| unreadable(format!("tree {id}"));
    let old_t = old.map(|id| tree(repo, id)).transpose()?;
    let new_t = new.map(|id| tree(repo, id)).transpose()?;
    let old_d = match (&old_t, old) {
        (Some(t), Some(id)) => Some(t.decode().map_err(decode_err(id))?),
        _ => None,
    };
    let new_d = match (&new_t, new) {
        (Some(t), Some(id)) => Some(t.decode().map_err(decode_err(id))?),
        _ => None,
    };
    Ok(differing(
        &sorted(old_d.as_ref(), dirs),
        &sorted(new_d.as_ref(), dirs),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::from_bytes_or_panic(&[n; 20])
    }

    #[test]
    fn differing_pairs_of_two_sorted_lists() {
        let old = [(&b"a"[..], id(1)), (b"b", id(2)), (b"d", id(4))];
        let new = [(&b"b"[..], id(2)), (b"c", id(3)), (b"d", id(5))];
        assert_eq!(
            differing(&old, &new),
            [
                ("a".to_string(), Some(id(1)), None),
                ("c".to_string(), None, Some(id(3))),
                ("d".to_string(), Some(id(4)), Some(id(5))),
            ]
        );
    }

    #[test]
    fn a_merge_authored_only_what_differs_from_every_parent() {
        let ch = |name: &str| Change {
            top: NODES,
            node: "n1".into(),
            name: name.into(),
            old: None,
            new: Some(id(1)),
        };
        let diffs = vec![vec![ch("a"), ch("b")], vec![ch("b")]];
        assert_eq!(authored(&diffs), [&ch("b")]);
        assert_eq!(authored(&diffs[..1]).len(), 2);
    }
}
