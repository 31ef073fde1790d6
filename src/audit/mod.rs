//! The billing repository's auditor and reference reader (`hero_usage_audit`,
//! `man 1 hero_usage_audit`): reads a local clone (with history) or the
//! forge's heads, checks every hour file, key and commit against the
//! contract, and sums the totals the billing aggregator computes.
//!
//! Sources ([`git`], [`api`]) list folders and read files; [`walk`] turns
//! listings into hour files; [`node`] checks one node's files ([`check`],
//! [`keys`], [`totals`]); [`history`] holds the history rules; [`report`]
//! renders. Nothing here writes anywhere.

pub mod api;
pub mod check;
pub mod commits;
pub mod fast;
pub mod filter;
pub mod findings;
pub mod git;
pub mod history;
pub mod keys;
pub mod node;
pub mod report;
pub mod signed;
pub mod spools;
pub mod state;
pub mod totals;
pub mod walk;

use crate::error::{Kind, fail};
use crate::settings::ForgeSettings;
use anyhow::Result;
use chrono::NaiveDateTime;
use filter::Filter;
use findings::{Findings, Note, Place};
use findings::{Violation, ViolationKind};
use node::{Memory, NodeOutcome, Reader, audit_node};
use report::Report;
use state::{State, StateDir};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use totals::{Period, Totals};
use walk::Layout;

/// Keys shared between nodes named in notes; the rest are counted.
const NOTES_NAMED: usize = 100;

/// Where the repository is read from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A local clone, bare or not: heads and history.
    Git(PathBuf),
    /// The forge's API: heads only.
    Forge(ForgeSettings),
}

/// What to audit and how.
#[derive(Debug, Clone)]
pub struct Options {
    pub source: Source,
    pub filter: Filter,
    pub period: Option<Period>,
    /// Walk the history (a local clone only); false: heads and totals only.
    pub history: bool,
    /// Bounds `occurred_at` (5 minutes of clock skew allowed).
    pub now: NaiveDateTime,
    /// `--default-branch`: the default branch when the clone cannot tell.
    pub default_branch: Option<String>,
    /// `--state DIR`: remember what a clean run proved, prove only what is newer.
    pub state: Option<PathBuf>,
    /// `--allowed-signers FILE`: every hour file must be signed by its node.
    pub allowed_signers: Option<crate::signing::AllowedSigners>,
    /// Told what the audit is at (a node read, a branch's history walked):
    /// the binary shows it on a terminal, so that a long audit is seen to move.
    pub progress: fn(&str),
}

/// Run the audit.
pub fn run(opts: &Options) -> Result<Report> {
    match &opts.source {
        Source::Git(path) => run_git(path, opts),
        Source::Forge(settings) => run_forge(settings, opts),
    }
}

fn run_git(path: &std::path::Path, opts: &Options) -> Result<Report> {
    let repo = git::open(path)?;
    if opts.history {
        git::refuse_shallow(&repo, path)?;
    }
    let branches = git::branches(&repo, opts.default_branch.as_deref())?;
    let places: Vec<Place> = branches.all().iter().map(|b| b.place()).collect();
    let mut layout = walk::collect(&mut git::GitLister::new(&repo), &places, &opts.filter)?;
    let state_dir = opts.state.as_deref().map(StateDir::new);
    let before = match &state_dir {
        Some(d) => d.load()?,
        None => None,
    };
    let mut memory = Remembered::default();
    if let (Some(st), Some(dir)) = (&before, &state_dir) {
        memory = remembered(&repo, st, dir, &branches, &mut layout, opts)?;
    }
    let empty = State::empty();
    let spill = state_dir
        .as_ref()
        .map(|d| (d, before.as_ref().unwrap_or(&empty)));
    let (outcomes, totals) = git_nodes_in_parallel(path, &layout, opts, &memory.proved, spill)?;
    let head_blobs = layout
        .files
        .values()
        .flatten()
        .filter_map(|f| git::parse_id(&f.blob).ok())
        .collect();
    let mut history = commits::HistoryWalk::new(&repo, &opts.filter, head_blobs);
    if let Some(st) = &before {
        history.spools = st.spools.clone();
        history.skip(memory.tips.iter().map(|(_, id)| *id));
    }
    if opts.history {
        if let Some(d) = &branches.default {
            (opts.progress)(&format!("walking the history of {}", d.name));
            history.walk(d, None)?;
        }
        for b in &branches.usage {
            (opts.progress)(&format!("walking the history of {}", b.name));
            history.walk(b, b.name.strip_prefix("usage/"))?;
        }
    }
    let new_keys: NewKeys = layout
        .files
        .keys()
        .zip(outcomes.iter())
        .map(|(n, o)| (n.clone(), (o.records, o.new_keys)))
        .collect();
    let commits = history.commits();
    let mut report = assemble(
        format!("git {}", path.display()),
        &places,
        &layout,
        (outcomes, totals),
        &mut |f| git::read_blob(&repo, &f.blob),
    )?;
    report.findings.merge(branches.findings.clone());
    report.findings.merge(memory.findings);
    report.findings.merge(history.findings);
    check_signatures(
        &mut signed::GitHeads::new(&repo),
        &places,
        opts,
        &mut report,
    )?;
    report.spools = history.spools;
    report.no_history_because = (!opts.history).then(|| "--no-history".to_string());
    report.commits = commits;
    report.ignored_branches = branches.ignored.clone();
    if let Some(st) = &before {
        report.records += st.nodes.values().map(|n| n.records).sum::<u64>();
        report.remembered = Some(st.tips.len());
    }
    if let Some(dir) = state_dir.filter(|_| report.clean()) {
        let old = before.unwrap_or_else(State::empty);
        let next = next_state(&old, &branches, &report.spools, &new_keys);
        dir.save(&next)?;
    }
    Ok(report)
}

/// Per node: the records this run counted and the digests it appended.
type NewKeys = BTreeMap<String, (u64, u64)>;

/// What an earlier clean run proved, as this run uses it.
#[derive(Default)]
struct Remembered {
    /// Branches whose remembered tip is an ancestor of their tip now.
    tips: Vec<(String, gix::ObjectId)>,
    /// Per node read, its proved keys.
    proved: BTreeMap<String, state::Proved>,
    /// Branches force-pushed or deleted since.
    findings: Findings,
}

/// Check the remembered tips against the branches now (a tip that is no
/// ancestor of its branch's tip, or a branch that is gone, is a
/// violation), drop from `layout` the files those tips held already (unless
/// the totals need every file), and load the proved keys of the nodes read.
fn remembered(
    repo: &gix::Repository,
    st: &State,
    dir: &StateDir,
    branches: &git::Branches,
    layout: &mut Layout,
    opts: &Options,
) -> Result<Remembered> {
    let mut out = Remembered::default();
    let now: BTreeMap<&str, gix::ObjectId> = branches
        .all()
        .into_iter()
        .map(|b| (b.name.as_str(), b.tip))
        .collect();
    for (name, old) in &st.tips {
        let old = git::parse_id(old)?;
        let place = Place {
            branch: name.clone(),
            commit: Some(old.to_string()),
        };
        let kind = match now.get(name.as_str()) {
            None => ViolationKind::DeletedBranch,
            Some(tip) if git::is_ancestor(repo, old, *tip)? => {
                out.tips.push((name.clone(), old));
                continue;
            }
            Some(_) => ViolationKind::RewrittenBranch,
        };
        let why = match kind {
            ViolationKind::DeletedBranch => format!(
                "branch {name} was proved at commit {old} by an earlier audit (--state) and is gone"
            ),
            _ => format!(
                "branch {name} was proved at commit {old} by an earlier audit (--state), which is no ancestor of its tip now: history was rewritten (a force push)"
            ),
        };
        out.findings.push(Violation::new(kind, name, &place, why));
    }
    if opts.period.is_none() {
        let old_places: Vec<Place> = out
            .tips
            .iter()
            .map(|(b, id)| Place {
                branch: b.clone(),
                commit: Some(id.to_string()),
            })
            .collect();
        let old = walk::collect(
            &mut git::GitLister::names_only(repo),
            &old_places,
            &opts.filter,
        )?;
        let known: HashSet<(&str, &str)> = old
            .files
            .values()
            .flatten()
            .map(|f| (f.path.as_str(), f.blob.as_str()))
            .collect();
        for files in layout.files.values_mut() {
            files.retain(|f| !known.contains(&(f.path.as_str(), f.blob.as_str())));
        }
        layout.files.retain(|_, files| !files.is_empty());
    }
    for node in layout.files.keys() {
        if let Some(ns) = st.nodes.get(node) {
            out.proved.insert(node.clone(), dir.keys(node, ns)?);
        }
    }
    Ok(out)
}

/// The state a clean run leaves: every branch's tip now, the spools, and
/// each node's counts grown by what this run found new.
fn next_state(
    old: &State,
    branches: &git::Branches,
    spools: &spools::Spools,
    new_keys: &NewKeys,
) -> State {
    let mut next = old.clone();
    next.tips = branches
        .all()
        .into_iter()
        .map(|b| (b.name.clone(), b.tip.to_string()))
        .collect();
    next.spools = spools.clone();
    for (node, (records, keys)) in new_keys {
        let n = next.nodes.entry(node.clone()).or_default();
        n.records += records;
        n.keys += keys;
    }
    next
}

/// What the threads checking nodes bring back: each node's outcome by its
/// index, and each thread's totals.
type Done = (Vec<(usize, Result<NodeOutcome>)>, Option<Totals>);

/// Check nodes on a few threads (each opens the repository itself: gix
/// handles are not shared between threads without its `parallel` feature):
/// reading and parsing are what the audit spends its time on.
fn git_nodes_in_parallel(
    path: &std::path::Path,
    layout: &Layout,
    opts: &Options,
    proved: &BTreeMap<String, state::Proved>,
    spill: Option<(&StateDir, &State)>,
) -> Result<(Vec<NodeOutcome>, Option<Totals>)> {
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    let nodes: Vec<(&String, &Vec<walk::FileRef>)> = layout.files.iter().collect();
    let next = AtomicUsize::new(0);
    let finished = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let work = || -> Done {
        let mut totals = opts.period.map(Totals::new);
        let repo = match git::open(path) {
            Ok(r) => r,
            Err(e) => return (vec![(next.fetch_add(1, Relaxed), Err(e))], totals),
        };
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Relaxed);
            let Some((node, files)) = nodes.get(i) else {
                break;
            };
            let mut read = |f: &walk::FileRef| git::read_blob(&repo, &f.blob);
            let memory = Memory {
                proved: proved.get(*node),
                remember: opts.state.is_some(),
            };
            let outcome = audit_node(files, &mut read, opts.now, &mut totals, memory);
            done.push((i, outcome.and_then(|o| spill_keys(node, o, spill))));
            let read = finished.fetch_add(1, Relaxed) + 1;
            (opts.progress)(&format!(
                "node {node}: {} hour file(s) read ({read} of {} nodes)",
                files.len(),
                nodes.len()
            ));
        }
        (done, totals)
    };
    let results: Vec<Done> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers).map(|_| s.spawn(work)).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut totals = opts.period.map(Totals::new);
    let mut ordered: Vec<Option<Result<NodeOutcome>>> = (0..nodes.len()).map(|_| None).collect();
    for (done, t) in results {
        for (i, r) in done {
            if let Some(slot) = ordered.get_mut(i) {
                *slot = Some(r);
            }
        }
        if let (Some(all), Some(t)) = (&mut totals, t) {
            all.merge(t);
        }
    }
    let outcomes = ordered
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(fail(Kind::Internal, "a worker thread failed"))))
        .collect::<Result<Vec<_>>>()?;
    Ok((outcomes, totals))
}

fn run_forge(settings: &ForgeSettings, opts: &Options) -> Result<Report> {
    let mut forge = api::Forge::connect(settings)?;
    let repo = forge
        .client
        .get_repo(&crate::forgejo::RepoRef::new(&forge.owner, &forge.repo))
        .map_err(api::api_err)?;
    let mut places = vec![Place {
        branch: repo.default_branch.clone(),
        commit: None,
    }];
    let mut ignored = Vec::new();
    if let Some(list) = forge.branches()? {
        places.clear();
        let (default, others): (Vec<Place>, Vec<Place>) = list
            .into_iter()
            .partition(|p| p.branch == repo.default_branch);
        for place in default.into_iter().chain(others) {
            if place.branch == repo.default_branch || place.branch.starts_with("usage/") {
                places.push(place);
            } else {
                ignored.push(place.branch);
            }
        }
    }
    let layout = if repo.empty {
        Layout::default()
    } else {
        walk::collect(&mut forge, &places, &opts.filter)?
    };
    let mut read = |f: &walk::FileRef| forge.read(&f.place, &f.path);
    let mut totals = opts.period.map(Totals::new);
    let nodes = layout.files.len();
    let outcomes = layout
        .files
        .iter()
        .enumerate()
        .map(|(i, (node, files))| {
            let outcome = audit_node(files, &mut read, opts.now, &mut totals, Memory::default());
            (opts.progress)(&format!(
                "node {node}: {} hour file(s) read ({} of {nodes} nodes)",
                files.len(),
                i + 1
            ));
            outcome
        })
        .collect::<Result<Vec<_>>>()?;
    let source = format!(
        "forge {} {}/{}",
        forge.client.base_url(),
        forge.owner,
        forge.repo
    );
    let mut report = assemble(source, &places, &layout, (outcomes, totals), &mut read)?;
    report.ignored_branches = ignored;
    check_signatures(
        &mut signed::ForgeHeads(&mut forge),
        &places,
        opts,
        &mut report,
    )?;
    Ok(report)
}

/// With `--allowed-signers`, every hour file at the heads `src` reads needs
/// its node's signature (man 1 hero_usage_audit, SIGNATURES).
fn check_signatures(
    src: &mut dyn signed::HeadSource,
    places: &[Place],
    opts: &Options,
    report: &mut Report,
) -> Result<()> {
    if let Some(allowed) = &opts.allowed_signers {
        let found = signed::check(src, places, &opts.filter, allowed, &mut report.findings)?;
        report.signatures = Some(found);
    }
    Ok(())
}

/// With `--state`, append a node's new keys to its keys file at once (so
/// that memory holds one node's at a time); they count only once a clean
/// run saves the state.
fn spill_keys(
    node: &str,
    mut o: NodeOutcome,
    spill: Option<(&StateDir, &State)>,
) -> Result<NodeOutcome> {
    if let Some((dir, old)) = spill {
        dir.append_keys(node, old, &o.new_pairs)?;
        o.new_keys = o.new_pairs.len() as u64;
        o.new_pairs = Vec::new();
    }
    Ok(o)
}

/// Put the nodes' outcomes together and name the keys nodes share.
fn assemble(
    source: String,
    places: &[Place],
    layout: &Layout,
    (outcomes, totals): (Vec<NodeOutcome>, Option<Totals>),
    read: &mut Reader,
) -> Result<Report> {
    let mut findings = Findings::default();
    findings.merge(layout.findings.clone());
    let mut records = 0;
    let mut key_lists = Vec::with_capacity(outcomes.len());
    for o in outcomes {
        findings.merge(o.findings);
        records += o.records;
        key_lists.push(o.keys);
    }
    let (shared_keys, notes) = shared_key_notes(layout, &key_lists, read)?;
    Ok(Report {
        source,
        no_history_because: Some(
            "the API source reads the heads only; use --git-dir for history".into(),
        ),
        branches: places.iter().map(|p| p.branch.clone()).collect(),
        ignored_branches: Vec::new(),
        nodes: layout.files.len(),
        files: layout.file_count(),
        records,
        commits: 0,
        spools: spools::Spools::default(),
        remembered: None,
        findings,
        notes,
        shared_keys,
        totals,
        signatures: None,
    })
}

/// Keys held by two or more nodes: counted, and the first few named (read
/// again from the nodes concerned: only digests were kept).
fn shared_key_notes(
    layout: &Layout,
    lists: &[Vec<keys::ShortDigest>],
    read: &mut Reader,
) -> Result<(usize, Vec<Note>)> {
    let shared = keys::shared_keys(lists);
    let named = &shared[..shared.len().min(NOTES_NAMED)];
    let wanted: HashSet<keys::ShortDigest> = named.iter().map(|(d, _)| *d).collect();
    let involved: BTreeSet<usize> = named.iter().flat_map(|(_, n)| n.iter().copied()).collect();
    let nodes: Vec<(&String, &Vec<walk::FileRef>)> = layout.files.iter().collect();
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in involved {
        let (node, files) = nodes[i];
        for key in node::keys_with_digests(files, read, &wanted)? {
            by_key.entry(key).or_default().push(node.clone());
        }
    }
    let notes = by_key
        .into_iter()
        .filter(|(_, n)| n.len() >= 2)
        .map(|(key, nodes)| Note { key, nodes })
        .collect();
    Ok((shared.len(), notes))
}
