//! The files at the heads of the branches: walk `nodes/` and `signatures/`
//! on each branch, keep hour files (once per path and content: a file held
//! by two branches is read once), report every other name. Any source that
//! can list a folder can be walked ([`Lister`]).

use super::filter::Filter;
use super::findings::{Findings, Place, Violation, ViolationKind};
use super::git::{MAX_FILE_BYTES, REGULAR_FILE};
use crate::layout::{self, NODES, SIGNATURES};
use crate::record::HourBucket;
use anyhow::Result;
use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
    /// A symbolic link or a submodule: never an hour file.
    Other,
}

/// One entry of a folder listing; `id` is the object id (git or forge sha).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kind: EntryKind,
    /// The git mode (`None` where the source does not tell).
    pub mode: Option<u16>,
    /// A file's size in bytes (`None` where the source does not tell).
    pub size: Option<u64>,
    pub id: String,
}

/// A source that lists folders at a branch's head.
pub trait Lister {
    /// The entries at the top of the branch's tree named `name` (`nodes`,
    /// `signatures`) in any case (more than one is a violation).
    fn top(&mut self, place: &Place, name: &str) -> Result<Vec<Entry>>;
    /// The entries of folder `dir` found at `path`.
    fn list(&mut self, place: &Place, path: &str, dir: &Entry) -> Result<Vec<Entry>>;
}

/// An hour file to read.
#[derive(Debug, Clone)]
pub struct FileRef {
    pub node: String,
    pub hour: HourBucket,
    pub path: String,
    /// Its blob id, for reading and to read a file held by two branches once.
    pub blob: String,
    pub place: Place,
}

/// The hour files per node, and the names that are not hour files.
#[derive(Debug, Default)]
pub struct Layout {
    pub files: BTreeMap<String, Vec<FileRef>>,
    pub findings: Findings,
}

impl Layout {
    pub fn file_count(&self) -> usize {
        self.files.values().map(Vec::len).sum()
    }
}

/// Walk `nodes/` and `signatures/` on every branch.
pub fn collect(src: &mut dyn Lister, branches: &[Place], filter: &Filter) -> Result<Layout> {
    let mut out = Layout::default();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    for place in branches {
        for top in [NODES, SIGNATURES] {
            let tops = src.top(place, top)?;
            same_names(&mut out, filter.wants_all(), "", &tops, place);
            for dir in tops.iter().filter(|e| e.name == top) {
                if dir.kind != EntryKind::Dir {
                    let why = format!("`{top}` is not a folder");
                    bad(&mut out, filter.wants_all(), top, place, &why);
                    continue;
                }
                let listing = src.list(place, top, dir)?;
                same_names(&mut out, filter.wants_all(), top, &listing, place);
                for node in listing {
                    walk_node(src, &mut out, &mut seen, filter, place, top, node)?;
                }
            }
        }
    }
    for files in out.files.values_mut() {
        files.sort_by(|a, b| a.path.cmp(&b.path));
    }
    Ok(out)
}

fn walk_node(
    src: &mut dyn Lister,
    out: &mut Layout,
    seen: &mut HashSet<(String, String)>,
    filter: &Filter,
    place: &Place,
    top: &str,
    node: Entry,
) -> Result<()> {
    let path = format!("{top}/{}", node.name);
    if node.kind != EntryKind::Dir {
        let why = format!("only node folders belong in {top}/");
        bad(out, filter.wants_all(), &path, place, &why);
        return Ok(());
    }
    if let Some(why) = layout::bad_node_name(&node.name) {
        bad(out, filter.wants_all(), &format!("{path}/"), place, &why);
        return Ok(());
    }
    if !filter.wants_node(&node.name) {
        return Ok(());
    }
    let files = src.list(place, &path, &node)?;
    same_names(out, true, &path, &files, place);
    for file in files {
        if top == SIGNATURES {
            check_signature(out, place, &path, &file);
        } else {
            add_file(out, seen, filter, place, &node.name, file);
        }
    }
    Ok(())
}

/// A name in a node's signatures folder: `usage_YYYY-MM-DD-HH.otoml.sig`,
/// a regular file of mode 100644 (whether it signs its hour file is
/// `--allowed-signers`' to check).
fn check_signature(out: &mut Layout, place: &Place, dir: &str, file: &Entry) {
    let path = format!("{dir}/{}", file.name);
    if layout::hour_of_signature_name(&file.name).is_none() {
        let why = "not a signature: the only names allowed in a signatures folder are \
                   usage_YYYY-MM-DD-HH.otoml.sig";
        return bad(out, true, &path, place, why);
    }
    if file.kind != EntryKind::File {
        let why = "not a regular file (a link, folder or submodule)";
        return bad(out, true, &path, place, why);
    }
    if let Some(mode) = file.mode.filter(|m| *m != REGULAR_FILE) {
        out.findings.push(Violation::new(
            ViolationKind::BadMode,
            &path,
            place,
            format!("mode {mode:o}: a signature is a regular file, mode 100644"),
        ));
    }
}

/// A folder holding one name twice (a tree made with `git mktree`: git
/// reads the first, a checkout writes the last), or two names that differ
/// only in case (one of them is lost on a case-insensitive checkout).
fn same_names(out: &mut Layout, wanted: bool, dir: &str, entries: &[Entry], place: &Place) {
    if !wanted {
        return;
    }
    let mut by_fold: HashMap<String, &str> = HashMap::new();
    let mut twice: HashSet<&str> = HashSet::new();
    for e in entries {
        let path = if dir.is_empty() {
            e.name.clone()
        } else {
            format!("{dir}/{}", e.name)
        };
        match by_fold.insert(e.name.to_ascii_lowercase(), &e.name) {
            Some(first) if first == e.name && twice.insert(&e.name) => {
                let why = "the folder holds this name twice (git reads the first, a checkout keeps the last)";
                out.findings.push(Violation::new(
                    ViolationKind::DuplicateEntry,
                    &path,
                    place,
                    why,
                ));
            }
            Some(first) if first == e.name => {}
            Some(first) => out.findings.push(Violation::new(
                ViolationKind::CaseCollision,
                &path,
                place,
                format!("differs from {first:?} only in case (one is lost on a case-insensitive checkout)"),
            )),
            None => {}
        }
    }
}

fn add_file(
    out: &mut Layout,
    seen: &mut HashSet<(String, String)>,
    filter: &Filter,
    place: &Place,
    node: &str,
    file: Entry,
) {
    let path = format!("{NODES}/{node}/{}", file.name);
    let hour = layout::hour_of_file_name(&file.name);
    if let Some(why) = layout::bad_file_name(&file.name) {
        return bad(out, true, &path, place, &why);
    }
    if file.kind != EntryKind::File {
        return bad(
            out,
            true,
            &path,
            place,
            "not a regular file (a link, folder or submodule)",
        );
    }
    let Some(hour) = hour.filter(|h| filter.wants_hour(*h)) else {
        return;
    };
    if let Some(mode) = file.mode.filter(|m| *m != REGULAR_FILE) {
        out.findings.push(Violation::new(
            ViolationKind::BadMode,
            &path,
            place,
            format!("mode {mode:o}: an hour file is a regular file, mode 100644"),
        ));
    }
    if let Some(size) = file.size.filter(|s| *s > MAX_FILE_BYTES) {
        out.findings.push(Violation::new(
            ViolationKind::TooLarge,
            &path,
            place,
            format!("{size} bytes, more than the {MAX_FILE_BYTES} an hour file may hold; not read"),
        ));
        return;
    }
    if !seen.insert((path.clone(), file.id.clone())) {
        return;
    }
    out.files
        .entry(node.to_string())
        .or_default()
        .push(FileRef {
            node: node.to_string(),
            hour,
            path,
            blob: file.id,
            place: place.clone(),
        });
}

fn bad(out: &mut Layout, wanted: bool, path: &str, place: &Place, why: &str) {
    if wanted {
        out.findings
            .push(Violation::new(ViolationKind::BadName, path, place, why));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Folders by path.
    struct Fake(HashMap<String, Vec<Entry>>);

    fn e(name: &str, kind: EntryKind, id: &str) -> Entry {
        Entry {
            name: name.into(),
            kind,
            mode: None,
            size: None,
            id: id.into(),
        }
    }

    impl Lister for Fake {
        fn top(&mut self, place: &Place, name: &str) -> Result<Vec<Entry>> {
            let root = self.0.get(&format!("/{}", place.branch));
            Ok(root
                .into_iter()
                .flatten()
                .filter(|e| e.name.eq_ignore_ascii_case(name))
                .cloned()
                .collect())
        }
        fn list(&mut self, _: &Place, path: &str, _: &Entry) -> Result<Vec<Entry>> {
            Ok(self.0.get(path).cloned().unwrap_or_default())
        }
    }

    #[test]
    fn hour_files_kept_other_names_reported() {
        let mut dirs = HashMap::new();
        dirs.insert("/main".to_string(), vec![e("nodes", EntryKind::Dir, "t")]);
        dirs.insert(
            "nodes".to_string(),
            vec![
                e("n1", EntryKind::Dir, "d1"),
                e(".n2", EntryKind::Dir, "d2"),
                e("README", EntryKind::File, "b0"),
            ],
        );
        dirs.insert(
            "nodes/n1".to_string(),
            vec![
                e("usage_2026-11-26-16.otoml", EntryKind::File, "b1"),
                e("usage_2026-11-26-17.otoml", EntryKind::Other, "b2"),
                e("notes.txt", EntryKind::File, "b3"),
            ],
        );
        let places = [
            Place {
                branch: "main".into(),
                commit: None,
            },
            Place {
                branch: "usage/x".into(),
                commit: None,
            },
        ];
        let l = collect(&mut Fake(dirs), &places, &Filter::default()).unwrap();
        assert_eq!(l.file_count(), 1);
        assert_eq!(l.files["n1"][0].path, "nodes/n1/usage_2026-11-26-16.otoml");
        let bad: Vec<&str> = l.findings.kept.iter().map(|v| v.file.as_str()).collect();
        assert_eq!(
            bad,
            [
                "nodes/n1/usage_2026-11-26-17.otoml",
                "nodes/n1/notes.txt",
                "nodes/.n2/",
                "nodes/README"
            ]
        );
    }
}
