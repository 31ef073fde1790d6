//! `--allowed-signers FILE`: every hour file at every head must carry a
//! valid signature by its node (the principal) in namespace `hero-usage`
//! (`man 1 hero_usage_audit`, SIGNATURES). Missing, bad, or made by another
//! node's key is a violation; so is a signature without its hour file. A
//! node that signed once signs for ever: an unsigned file is only a note
//! when it was last written before the node's first signature on that
//! branch. With a clone, "before" is the branch's first-parent history;
//! the forge's API cannot see history, so there an unsigned file is a note
//! only when its hour precedes the node's first signed hour.

use super::filter::Filter;
use super::findings::{Findings, Place, Violation, ViolationKind};
use super::git;
use super::walk::{Entry, EntryKind, Lister};
use crate::layout::{self, NODES, SIGNATURES};
use crate::record::HourBucket;
use crate::signing::{AllowedSigners, Verdict};
use anyhow::Result;
use gix::ObjectId;
use std::collections::{BTreeMap, HashMap};

/// What the signature checks found besides violations.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Signatures {
    /// Hour files whose signature verified (counted once per file version).
    pub verified: usize,
    /// Files written before their node first signed: `branch: path`.
    pub unsigned_before_signing: Vec<String>,
}

/// One branch head's hour files and signatures, by node and hour: blob ids.
#[derive(Debug, Default)]
struct Head {
    files: BTreeMap<String, BTreeMap<HourBucket, String>>,
    sigs: BTreeMap<String, BTreeMap<HourBucket, String>>,
}

/// A source of heads: list a folder, read a blob.
pub trait HeadSource {
    /// The entries of `path` at `place`'s head (empty when missing).
    fn list(&mut self, place: &Place, path: &str) -> Result<Vec<Entry>>;
    fn read(&mut self, place: &Place, path: &str, id: &str) -> Result<Vec<u8>>;
    /// Whether the unsigned file `path` (blob `id`) was last written on
    /// `place`'s branch before `node` first signed there; `None`: this
    /// source cannot tell.
    fn written_before_signing(
        &mut self,
        place: &Place,
        node: &str,
        path: &str,
        id: &str,
    ) -> Result<Option<bool>>;
}

/// Check every head; violations go to `findings`.
pub fn check(
    src: &mut dyn HeadSource,
    places: &[Place],
    filter: &Filter,
    allowed: &AllowedSigners,
    findings: &mut Findings,
) -> Result<Signatures> {
    let mut out = Signatures::default();
    let mut verified: HashMap<(String, String, String), Verdict> = HashMap::new();
    for place in places {
        let head = read_head(src, place, filter)?;
        for (node, files) in &head.files {
            let sigs = head.sigs.get(node);
            let first_signed = sigs.and_then(|s| s.keys().next().copied());
            for (hour, blob) in files {
                let path = layout::hour_file_path(node, *hour);
                let Some(sig_blob) = sigs.and_then(|s| s.get(hour)) else {
                    unsigned(
                        src,
                        place,
                        node,
                        &path,
                        blob,
                        *hour,
                        first_signed,
                        findings,
                        &mut out,
                    )?;
                    continue;
                };
                let key = (node.clone(), blob.clone(), sig_blob.clone());
                let verdict = match verified.get(&key) {
                    Some(v) => v.clone(),
                    None => {
                        let data = src.read(place, &path, blob)?;
                        let sig_path = layout::signature_path(node, *hour);
                        let sig = src.read(place, &sig_path, sig_blob)?;
                        let v = allowed.verify(node, &data, &sig);
                        if v == Verdict::Good {
                            out.verified += 1;
                        }
                        verified.insert(key, v.clone());
                        v
                    }
                };
                if let Some(why) = verdict.problem(node) {
                    findings.push(Violation::new(
                        ViolationKind::BadSignature,
                        &path,
                        place,
                        why,
                    ));
                }
            }
        }
        for (node, sigs) in &head.sigs {
            for hour in sigs.keys() {
                let has_file = head.files.get(node).is_some_and(|f| f.contains_key(hour));
                if !has_file {
                    findings.push(Violation::new(
                        ViolationKind::OrphanSignature,
                        &layout::signature_path(node, *hour),
                        place,
                        format!(
                            "a signature without its hour file {}",
                            layout::hour_file_path(node, *hour)
                        ),
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// An hour file without a signature: a note when it was written before its
/// node first signed, else a violation.
#[allow(clippy::too_many_arguments)]
fn unsigned(
    src: &mut dyn HeadSource,
    place: &Place,
    node: &str,
    path: &str,
    blob: &str,
    hour: HourBucket,
    first_signed: Option<HourBucket>,
    findings: &mut Findings,
    out: &mut Signatures,
) -> Result<()> {
    let before = match src.written_before_signing(place, node, path, blob)? {
        Some(b) => b,
        // Heads only: by the hours the node signed.
        None => first_signed.is_none_or(|first| hour < first),
    };
    if before {
        out.unsigned_before_signing
            .push(format!("{}: {path}", place.branch));
    } else {
        findings.push(Violation::new(
            ViolationKind::Unsigned,
            path,
            place,
            format!("no signature at {}, but node {node} had signed before this file was written: a node that signed once signs every write", layout::signature_path(node, hour)),
        ));
    }
    Ok(())
}

/// The hour files and signatures at one head (other names are the
/// walk's violations, reported with or without `--allowed-signers`).
fn read_head(src: &mut dyn HeadSource, place: &Place, filter: &Filter) -> Result<Head> {
    let mut head = Head::default();
    for dir in src.list(place, NODES)? {
        if dir.kind != EntryKind::Dir
            || layout::bad_node_name(&dir.name).is_some()
            || !filter.wants_node(&dir.name)
        {
            continue;
        }
        let path = format!("{NODES}/{}", dir.name);
        for f in src.list(place, &path)? {
            if let Some(hour) = layout::hour_of_file_name(&f.name)
                .filter(|h| f.kind == EntryKind::File && filter.wants_hour(*h))
            {
                head.files
                    .entry(dir.name.clone())
                    .or_default()
                    .insert(hour, f.id);
            }
        }
    }
    for dir in src.list(place, SIGNATURES)? {
        if dir.kind != EntryKind::Dir
            || layout::bad_node_name(&dir.name).is_some()
            || !filter.wants_node(&dir.name)
        {
            continue;
        }
        let path = format!("{SIGNATURES}/{}", dir.name);
        for f in src.list(place, &path)? {
            if let Some(hour) = layout::hour_of_signature_name(&f.name).filter(|h| {
                f.kind == EntryKind::File
                    && f.mode.is_none_or(|m| m == git::REGULAR_FILE)
                    && filter.wants_hour(*h)
            }) {
                head.sigs
                    .entry(dir.name.clone())
                    .or_default()
                    .insert(hour, f.id);
            }
        }
    }
    Ok(head)
}

/// A local clone as a head source: trees by path, and the first-parent
/// history of a branch to tell when a file was written.
pub struct GitHeads<'a> {
    pub repo: &'a gix::Repository,
    /// Per branch tip: the first-parent chain's root trees, newest first.
    chains: HashMap<ObjectId, Vec<ObjectId>>,
    /// Whether a root tree holds signatures of a node.
    signed: HashMap<(ObjectId, String), bool>,
}

impl<'a> GitHeads<'a> {
    pub fn new(repo: &'a gix::Repository) -> Self {
        GitHeads {
            repo,
            chains: HashMap::new(),
            signed: HashMap::new(),
        }
    }

    /// The entry at `path` under the root tree `root`.
    fn at(&self, root: ObjectId, path: &str) -> Result<Option<git::TreeEntry>> {
        let mut tree = root;
        let mut found = None;
        for seg in path.split('/') {
            if found
                .as_ref()
                .is_some_and(|e: &git::TreeEntry| e.kind != EntryKind::Dir)
            {
                return Ok(None);
            }
            if let Some(e) = &found {
                tree = e.id;
            }
            found = git::entries(self.repo, tree)?
                .into_iter()
                .find(|e| e.name == seg);
            if found.is_none() {
                return Ok(None);
            }
        }
        Ok(found)
    }

    fn tip_tree(&self, place: &Place) -> Result<ObjectId> {
        let tip = git::parse_id(place.commit.as_deref().unwrap_or_default())?;
        git::commit_tree(self.repo, tip)
    }

    /// The root trees of the branch's first-parent chain, newest first.
    fn chain(&mut self, place: &Place) -> Result<&Vec<ObjectId>> {
        let tip = git::parse_id(place.commit.as_deref().unwrap_or_default())?;
        if !self.chains.contains_key(&tip) {
            let mut trees = Vec::new();
            let mut next = Some(tip);
            while let Some(id) = next {
                let c = self
                    .repo
                    .find_commit(id)
                    .map_err(git::unreadable(format!("commit {id}")))?;
                trees.push(
                    c.tree_id()
                        .map_err(git::unreadable(format!("commit {id}")))?
                        .detach(),
                );
                next = c.parent_ids().next().map(|p| p.detach());
            }
            self.chains.insert(tip, trees);
        }
        Ok(&self.chains[&tip])
    }

    /// Whether `node` has a non-empty signatures folder in `root`.
    fn has_signed(&mut self, root: ObjectId, node: &str) -> Result<bool> {
        if let Some(known) = self.signed.get(&(root, node.to_string())) {
            return Ok(*known);
        }
        let signed = match self.at(root, &format!("{SIGNATURES}/{node}"))? {
            Some(e) if e.kind == EntryKind::Dir => !git::entries(self.repo, e.id)?.is_empty(),
            _ => false,
        };
        self.signed.insert((root, node.to_string()), signed);
        Ok(signed)
    }
}

impl HeadSource for GitHeads<'_> {
    fn list(&mut self, place: &Place, path: &str) -> Result<Vec<Entry>> {
        let root = self.tip_tree(place)?;
        let Some(dir) = self.at(root, path)?.filter(|e| e.kind == EntryKind::Dir) else {
            return Ok(Vec::new());
        };
        Ok(git::entries(self.repo, dir.id)?
            .into_iter()
            .map(|e| Entry {
                name: e.name,
                kind: e.kind,
                mode: Some(e.mode),
                size: None,
                id: e.id.to_string(),
            })
            .collect())
    }

    fn read(&mut self, _: &Place, _: &str, id: &str) -> Result<Vec<u8>> {
        // A file over the size limit is a violation of its own (too-large)
        // and is never read: its signature cannot verify against nothing.
        Ok(git::read_bounded(self.repo, git::parse_id(id)?)?.unwrap_or_default())
    }

    /// The write is the oldest commit of the run of first-parent commits,
    /// from the tip, that hold this version; it came before the node's
    /// first signature when neither it nor any older commit on the chain
    /// holds a signature of the node.
    fn written_before_signing(
        &mut self,
        place: &Place,
        node: &str,
        path: &str,
        id: &str,
    ) -> Result<Option<bool>> {
        let blob = git::parse_id(id)?;
        let trees = self.chain(place)?.clone();
        // The oldest commit of the unbroken run, from the tip, holding this version.
        let mut wrote = None;
        for (i, root) in trees.iter().enumerate() {
            if self.at(*root, path)?.is_some_and(|e| e.id == blob) {
                wrote = Some(i);
            } else {
                break;
            }
        }
        let Some(wrote) = wrote else {
            return Ok(Some(false));
        };
        for root in &trees[wrote..] {
            if self.has_signed(*root, node)? {
                return Ok(Some(false));
            }
        }
        Ok(Some(true))
    }
}

/// The forge's API as a head source (no history).
pub struct ForgeHeads<'a>(pub &'a mut super::api::Forge);

impl HeadSource for ForgeHeads<'_> {
    fn list(&mut self, place: &Place, path: &str) -> Result<Vec<Entry>> {
        let none = Entry {
            name: String::new(),
            kind: EntryKind::Dir,
            mode: None,
            size: None,
            id: String::new(),
        };
        // A top folder is listed through the walk's own call, which keeps it.
        if path == NODES || path == SIGNATURES {
            let top = self.0.top(place, path)?;
            if top.iter().all(|e| e.kind != EntryKind::Dir) {
                return Ok(Vec::new());
            }
        }
        self.0.list(place, path, &none)
    }

    fn read(&mut self, place: &Place, path: &str, _: &str) -> Result<Vec<u8>> {
        self.0.read(place, path)
    }

    fn written_before_signing(
        &mut self,
        _: &Place,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<Option<bool>> {
        Ok(None)
    }
}
