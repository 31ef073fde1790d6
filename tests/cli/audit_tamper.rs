//! `hero_usage_audit` against tampered repositories, each built with plain
//! git plumbing the way a token holder could push it (issue 18's red team):
//! every one passed the audit once with `violations: 0`; each must now be
//! exit 65 naming the key, file, branch or reference, or exit 66 saying
//! what cannot be told. And innocent merges still pass.

use crate::audit::{Repo, clean_repo, rec};
use crate::support::{Run, fake_server, git_cmd, run, stderr, stdout};
use hero_usage::otoml::render_batch;
use hero_usage::record::UsageRecord;
use serde_json::Value;
use std::io::Write;
use std::process::Stdio;

const HOUR: &str = "nodes/n1/usage_2026-11-26-16.otoml";
const PUSH_N1: (&str, &str) = ("hero_usage_push on n1", "n1@hero-usage.invalid");

/// `git ARGS` with `input` on stdin: its stdout, trimmed.
fn git_in(r: &Repo, args: &[&str], input: &[u8]) -> String {
    let mut child = git_cmd(&r.dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("git");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    stdout(&out).trim().to_string()
}

fn blob(r: &Repo, bytes: &[u8]) -> String {
    git_in(r, &["hash-object", "-w", "--stdin"], bytes)
}

/// A tree of `(mode, kind, id, name)` entries, as given (names may repeat).
fn tree(r: &Repo, entries: &[(&str, &str, &str, &str)]) -> String {
    let lines: String = entries
        .iter()
        .map(|(mode, kind, id, name)| format!("{mode} {kind} {id}\t{name}\n"))
        .collect();
    git_in(r, &["mktree", "--missing"], lines.as_bytes())
}

/// A commit of `tree` on `parents` by `who`, and `branch` moved to it.
fn commit_on(r: &Repo, branch: &str, tree: &str, parents: &[&str], who: (&str, &str)) -> String {
    let mut args = vec!["commit-tree", tree];
    for p in parents {
        args.extend(["-p", p]);
    }
    args.extend(["-m", "tampered"]);
    let out = git_cmd(&r.dir)
        .args(&args)
        .env("GIT_AUTHOR_NAME", who.0)
        .env("GIT_AUTHOR_EMAIL", who.1)
        .env("GIT_COMMITTER_NAME", who.0)
        .env("GIT_COMMITTER_EMAIL", who.1)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let c = stdout(&out).trim().to_string();
    r.git(&["update-ref", &format!("refs/heads/{branch}"), &c]);
    c
}

fn k(key: &str, amount: u64) -> UsageRecord {
    rec("n1", key, "0a1b", "2026-11-26 16:10:00", amount)
}

/// What the clean repository's hour 16 of n1 holds, plus `extra`.
fn hour16(extra: &[UsageRecord]) -> Vec<UsageRecord> {
    let mut v = vec![
        rec("n1", "k1", "0a1b", "2026-11-26 16:04:05", 250),
        rec("n1", "k2", "0a1b", "2026-11-26 16:30:00", 100),
    ];
    v.extend_from_slice(extra);
    v
}

/// The violations of `kind` in a JSON report.
fn of_kind(v: &Value, kind: &str) -> Vec<Value> {
    v["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["kind"] == kind)
        .cloned()
        .collect()
}

#[track_caller]
fn violations(r: &Repo, args: &[&str]) -> Value {
    let (out, v) = r.audit_json(args);
    out.exit(65);
    v
}

// ------------------------------------------------------------ 1. laundering

#[test]
fn a_removal_laundered_through_an_unparsable_version_is_found() {
    for broken in [&b"garbage = \n"[..], b"\xff\xfe not UTF-8\n"] {
        let r = clean_repo();
        let big = k("k-big", 1_000_000_000_000);
        r.put("n1", "2026-11-26-16", &hour16(std::slice::from_ref(&big)));
        let mut bytes = render_batch(&hour16(&[big])).into_bytes();
        bytes.extend_from_slice(broken);
        let c1 = r.put_raw("n1", HOUR, &bytes);
        let c2 = r.put("n1", "2026-11-26-16", &hour16(&[]));
        let v = violations(&r, &[]);
        let unparsable = of_kind(&v, "unparsable-version");
        assert_eq!(unparsable.len(), 1, "{v:#}");
        assert_eq!(
            (
                unparsable[0]["file"].as_str(),
                unparsable[0]["commit"].as_str()
            ),
            (Some(HOUR), Some(c1.as_str()))
        );
        let removed = of_kind(&v, "removed-record");
        assert_eq!(removed.len(), 1, "{v:#}");
        assert_eq!(removed[0]["key"], "k-big");
        assert_eq!(removed[0]["commit"], c2.as_str());
        assert_eq!(removed[0]["branch"], "main");
    }
}

#[test]
fn an_amount_changed_through_an_unparsable_version_is_found() {
    let r = clean_repo();
    r.put(
        "n1",
        "2026-11-26-16",
        &hour16(&[k("k-big", 1_000_000_000_000)]),
    );
    r.put_raw("n1", HOUR, b"O:\n[[records]\nbroken\n");
    r.put("n1", "2026-11-26-16", &hour16(&[k("k-big", 1)]));
    let v = violations(&r, &[]);
    let changed = of_kind(&v, "changed-record");
    assert_eq!(changed.len(), 1, "{v:#}");
    assert_eq!(changed[0]["key"], "k-big");
    assert!(
        changed[0]["detail"]
            .as_str()
            .unwrap()
            .contains("amount_cents")
    );
    assert_eq!(of_kind(&v, "unparsable-version").len(), 1, "{v:#}");
}

// ---------------------------------------------------------------- 2. merges

/// Two lines of n1's own work to merge: branch `side` with k8 in hour 18,
/// and main with k9 in hour 19. Returns side's tip.
fn side_and_main(r: &Repo) -> String {
    r.git(&["checkout", "-q", "-b", "side"]);
    r.put(
        "n1",
        "2026-11-26-18",
        &[rec("n1", "k8", "0a1b", "2026-11-26 18:00:00", 800)],
    );
    let side = r.git(&["rev-parse", "HEAD"]);
    r.git(&["checkout", "-q", "main"]);
    r.put(
        "n1",
        "2026-11-26-19",
        &[rec("n1", "k9", "0a1b", "2026-11-26 19:00:00", 9)],
    );
    side
}

#[test]
fn a_merge_dropping_what_only_its_second_parent_held_is_found() {
    let r = clean_repo();
    let side = side_and_main(&r);
    // The merge moves k8 to hour 19 with another amount: hour 18 is gone.
    r.merge_as_admin(&["--no-commit", "--no-ff", "side"]);
    r.git(&["rm", "-q", "-f", "nodes/n1/usage_2026-11-26-18.otoml"]);
    std::fs::write(
        r.dir.join("nodes/n1/usage_2026-11-26-19.otoml"),
        render_batch(&[
            rec("n1", "k8", "0a1b", "2026-11-26 19:00:00", 1),
            rec("n1", "k9", "0a1b", "2026-11-26 19:00:00", 9),
        ]),
    )
    .unwrap();
    r.git(&["add", "-A"]);
    let merge = r.commit_as(PUSH_N1.0, PUSH_N1.1, "merge side");
    r.git(&["branch", "-q", "-D", "side"]);
    let v = violations(&r, &[]);
    let removed = of_kind(&v, "removed-record");
    assert_eq!(removed.len(), 1, "{v:#}");
    assert_eq!(removed[0]["key"], "k8");
    assert_eq!(removed[0]["file"], "nodes/n1/usage_2026-11-26-18.otoml");
    assert_eq!(removed[0]["commit"], merge.as_str());
    assert_eq!(removed[0]["other_commit"], side.as_str());
}

/// `usage/n3` merged into `main` like a pull request (by a person), then
/// the branch deleted.
fn pr_merge(drop_one: bool) -> (Repo, String) {
    let r = clean_repo();
    r.git(&["checkout", "-q", "--orphan", "usage/n3"]);
    r.git(&["rm", "-q", "-r", "-f", "."]);
    let both = [
        rec("n3", "k30", "0a1b", "2026-11-26 16:00:00", 30),
        rec("n3", "k31", "0a1b", "2026-11-26 16:00:01", 31),
    ];
    r.put("n3", "2026-11-26-16", &both[..1]);
    r.put("n3", "2026-11-26-16", &both);
    r.git(&["checkout", "-q", "main"]);
    r.merge_as_admin(&["--no-commit", "--allow-unrelated-histories", "usage/n3"]);
    if drop_one {
        let p = "nodes/n3/usage_2026-11-26-16.otoml";
        std::fs::write(r.dir.join(p), render_batch(&both[..1])).unwrap();
        r.git(&["add", p]);
    }
    let merge = r.commit_as(
        "Admin",
        "admin@example.org",
        "Merge pull request 'usage/n3'",
    );
    r.git(&["branch", "-q", "-D", "usage/n3"]);
    (r, merge)
}

#[test]
fn a_pull_request_merge_dropping_a_record_then_the_branch_deleted_is_found() {
    let (r, merge) = pr_merge(true);
    let v = violations(&r, &[]);
    let removed = of_kind(&v, "removed-record");
    assert_eq!(removed.len(), 1, "{v:#}");
    assert_eq!(removed[0]["key"], "k31");
    assert_eq!(removed[0]["branch"], "main");
    assert_eq!(removed[0]["commit"], merge.as_str());
    // The person's merge wrote n3's file itself: not n3's push.
    assert_eq!(of_kind(&v, "wrong-author").len(), 1, "{v:#}");
}

#[test]
fn innocent_merges_pass() {
    let (r, _) = pr_merge(false);
    // And a merge of two lines of one node's own work.
    side_and_main(&r);
    r.merge_as_admin(&["--no-ff", "-m", "merge", "side"]);
    r.git(&["branch", "-q", "-D", "side"]);
    let (out, v) = r.audit_json(&["--totals", "month"]);
    out.exit(0);
    assert_eq!(v["records"], 8, "{v:#}");
    assert_eq!(v["violation_count"], 0, "{v:#}");
}

// ------------------------------------------------------- 3. replacements

#[test]
fn a_replacement_object_is_a_violation_and_changes_nothing_read() {
    let r = clean_repo();
    // The commit that removes k2, and a look-alike whose tree keeps it.
    let before = r.git(&["rev-parse", "HEAD"]);
    let bad = r.put("n1", "2026-11-26-16", &hour16(&[])[..1]);
    let fake = commit_on(
        &r,
        "scratch",
        &r.git(&["rev-parse", &format!("{before}^{{tree}}")]),
        &[&before],
        PUSH_N1,
    );
    r.git(&["branch", "-q", "-D", "scratch"]);
    r.git(&["replace", &bad, &fake]);
    // A replaced blob would change the totals too.
    let head_blob = r.git(&["rev-parse", "HEAD:nodes/n1/usage_2026-11-27-00.otoml"]);
    let richer = blob(
        &r,
        render_batch(&[rec("n1", "k3", "zz99", "2026-11-27 00:00:00", 7_000)]).as_bytes(),
    );
    r.git(&["replace", &head_blob, &richer]);
    // Even when the repository's own config asks for replacements.
    r.git(&["config", "core.useReplaceRefs", "true"]);
    let v = violations(&r, &["--totals", "month"]);
    let replaced = of_kind(&v, "replace-ref");
    assert_eq!(replaced.len(), 2, "{v:#}");
    assert!(
        replaced
            .iter()
            .any(|x| x["file"] == format!("refs/replace/{bad}")),
        "{v:#}"
    );
    let removed = of_kind(&v, "removed-record");
    assert_eq!(
        (removed.len(), removed[0]["key"].as_str()),
        (1, Some("k2")),
        "{v:#}"
    );
    let zz99: Vec<&Value> = v["totals"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["user_sid"] == "zz99")
        .collect();
    assert_eq!(zz99[0]["amount_cents"], 7, "{v:#}");
}

// ------------------------------------------------------------- 4. trees

/// Replace main's head with a commit of `nodes/n1` built from `entries`
/// (the clean repository's other files kept).
fn with_n1_tree(
    r: &Repo,
    entries: &[(&str, &str, &str, &str)],
    extra_nodes: &[(&str, &str, &str, &str)],
) -> String {
    let n1 = tree(r, entries);
    let mut nodes = vec![("040000", "tree", n1.as_str(), "n1")];
    nodes.extend_from_slice(extra_nodes);
    let nodes = tree(r, &nodes);
    let root = tree(r, &[("040000", "tree", nodes.as_str(), "nodes")]);
    let head = r.git(&["rev-parse", "main"]);
    commit_on(r, "main", &root, &[&head], PUSH_N1)
}

fn n1_files(r: &Repo) -> (String, String) {
    let id = |p: &str| r.git(&["rev-parse", &format!("main:nodes/n1/{p}")]);
    (
        id("usage_2026-11-26-16.otoml"),
        id("usage_2026-11-27-00.otoml"),
    )
}

#[test]
fn a_tree_holding_one_hour_file_twice_is_found() {
    let r = clean_repo();
    let (h16, h27) = n1_files(&r);
    let other = blob(&r, render_batch(&hour16(&[k("k-x", 5)])).as_bytes());
    let name = "usage_2026-11-26-16.otoml";
    let c = with_n1_tree(
        &r,
        &[
            ("100644", "blob", &h16, name),
            ("100644", "blob", &other, name),
            ("100644", "blob", &h27, "usage_2026-11-27-00.otoml"),
        ],
        &[],
    );
    let v = violations(&r, &[]);
    let dup = of_kind(&v, "duplicate-entry");
    assert_eq!(dup.len(), 1, "{v:#}");
    assert_eq!(
        (dup[0]["file"].as_str(), dup[0]["commit"].as_str()),
        (Some(HOUR), Some(c.as_str()))
    );
}

#[test]
fn case_colliding_nodes_odd_modes_and_huge_files_are_found() {
    let r = clean_repo();
    let (h16, h27) = n1_files(&r);
    let upper_file = blob(
        &r,
        render_batch(&[rec("N1", "kN", "0a1b", "2026-11-26 16:00:00", 1)]).as_bytes(),
    );
    let upper = tree(
        &r,
        &[("100644", "blob", &upper_file, "usage_2026-11-26-16.otoml")],
    );
    // 65 MiB of zeros: 64 KiB on disk, never read.
    let huge = git_in(&r, &["hash-object", "-w", "--stdin"], &vec![0u8; 65 << 20]);
    with_n1_tree(
        &r,
        &[
            ("100755", "blob", &h16, "usage_2026-11-26-16.otoml"),
            ("100644", "blob", &huge, "usage_2026-11-26-17.otoml"),
            ("100644", "blob", &h27, "usage_2026-11-27-00.otoml"),
        ],
        &[("040000", "tree", &upper, "N1")],
    );
    let v = violations(&r, &[]);
    let case = of_kind(&v, "case-collision");
    assert_eq!(case.len(), 1, "{v:#}");
    assert!(
        case[0]["file"].as_str().unwrap().starts_with("nodes/"),
        "{v:#}"
    );
    let mode = of_kind(&v, "bad-mode");
    assert_eq!(
        (mode.len(), mode[0]["file"].as_str()),
        (1, Some(HOUR)),
        "{v:#}"
    );
    let large = of_kind(&v, "too-large");
    assert!(!large.is_empty(), "{v:#}");
    assert!(
        large
            .iter()
            .all(|x| x["file"] == "nodes/n1/usage_2026-11-26-17.otoml"),
        "{v:#}"
    );
}

#[test]
fn a_huge_version_in_history_is_too_large_and_never_read() {
    let r = clean_repo();
    let c = r.put_raw("n1", HOUR, &vec![0u8; 65 << 20]);
    r.put("n1", "2026-11-26-16", &hour16(&[]));
    let v = violations(&r, &[]);
    assert_eq!(
        v["violation_counts"],
        serde_json::json!({"too-large": 1}),
        "{v:#}"
    );
    let large = of_kind(&v, "too-large");
    assert_eq!(
        (large[0]["file"].as_str(), large[0]["commit"].as_str()),
        (Some(HOUR), Some(c.as_str())),
        "{v:#}"
    );
}

// -------------------------------------------------------- 5. default branch

/// A repository whose default branch is `billing`, with a stale `main`.
fn billing_default() -> Repo {
    let r = clean_repo();
    r.git(&["branch", "-q", "-m", "main", "billing"]);
    r.put(
        "n1",
        "2026-11-26-20",
        &[rec("n1", "k20", "0a1b", "2026-11-26 20:00:00", 20)],
    );
    r.git(&["branch", "-q", "main", "billing~1"]);
    r
}

#[test]
fn a_clone_without_origin_head_needs_the_default_branch_named() {
    let r = billing_default();
    let clone = r.clone_as("clone", &[]);
    let audit = |args: &[&str]| r.audit_at(&clone, args);
    let out = audit(&[]);
    out.exit(0);
    assert!(
        stdout(&out).contains("branches: billing, usage/n2"),
        "{}",
        stdout(&out)
    );
    git_cmd(&clone)
        .args(["remote", "set-head", "origin", "-d"])
        .output()
        .unwrap();
    let out = audit(&[]);
    out.exit(66);
    assert!(
        stderr(&out).contains("origin/HEAD") && stderr(&out).contains("--default-branch"),
        "{}",
        stderr(&out)
    );
    let out = audit(&["--default-branch", "billing"]);
    out.exit(0);
    assert!(stdout(&out).contains("5 records"), "{}", stdout(&out));
    let out = audit(&["--default-branch", "nope"]);
    out.exit(66);
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
}

#[test]
fn a_mirror_whose_head_names_a_missing_branch_is_66() {
    let r = billing_default();
    let mirror = r.clone_as("mirror.git", &["--mirror"]);
    git_cmd(&mirror)
        .args(["symbolic-ref", "HEAD", "refs/heads/gone"])
        .output()
        .unwrap();
    let out = r.audit_at(&mirror, &[]);
    out.exit(66);
    assert!(stderr(&out).contains("gone"), "{}", stderr(&out));
}

#[test]
fn a_shallow_clone_says_so() {
    let r = clean_repo();
    r.put(
        "n1",
        "2026-11-26-20",
        &[rec("n1", "k20", "0a1b", "2026-11-26 20:00:00", 20)],
    );
    let clone = r.clone_as("shallow", &["--depth", "1"]);
    let out = r.audit_at(&clone, &[]);
    out.exit(66);
    assert!(stderr(&out).contains("shallow"), "{}", stderr(&out));
    r.audit_at(&clone, &["--no-history"]).exit(0);
}

// ------------------------------------------------------------- 6. --state

fn state_audit(r: &Repo, state: &std::path::Path) -> (std::process::Output, Value) {
    r.audit_json(&["--state", state.to_str().unwrap()])
}

#[test]
fn state_proves_appends_and_finds_force_pushes_and_deleted_branches() {
    let r = clean_repo();
    let state = r.env.path("audit-state");
    let (out, v) = state_audit(&r, &state);
    out.exit(0);
    assert_eq!(
        (v["records"].as_u64(), v["commits"].as_u64()),
        (Some(4), Some(5)),
        "{v:#}"
    );
    // An append: only the new commit is walked, every record still counted.
    r.put("n1", "2026-11-26-16", &hour16(&[k("k4", 4)]));
    let (out, v) = state_audit(&r, &state);
    out.exit(0);
    assert_eq!(
        (
            v["records"].as_u64(),
            v["commits"].as_u64(),
            v["files"].as_u64()
        ),
        (Some(5), Some(1), Some(1)),
        "{v:#}"
    );
    // A new record reusing a proved key in another hour is still found.
    r.put(
        "n1",
        "2026-11-26-21",
        &[rec("n1", "k3", "0a1b", "2026-11-26 21:00:00", 3)],
    );
    let (out, v) = state_audit(&r, &state);
    out.exit(65);
    assert_eq!(of_kind(&v, "duplicate-key")[0]["key"], "k3", "{v:#}");
    r.git(&["reset", "-q", "--hard", "HEAD~1"]);
    // A force push: main rewritten without the last append.
    let proved = r.git(&["rev-parse", "HEAD"]);
    r.git(&["reset", "-q", "--hard", "HEAD~1"]);
    r.put("n1", "2026-11-26-16", &hour16(&[k("k5", 5)]));
    let (out, v) = state_audit(&r, &state);
    out.exit(65);
    let rewritten = of_kind(&v, "rewritten-branch");
    assert_eq!(rewritten.len(), 1, "{v:#}");
    assert_eq!(
        (
            rewritten[0]["branch"].as_str(),
            rewritten[0]["commit"].as_str()
        ),
        (Some("main"), Some(proved.as_str()))
    );
    // The state was not updated: the next run says so again.
    (state_audit(&r, &state).0).exit(65);
    r.git(&["reset", "-q", "--hard", &proved]);
    (state_audit(&r, &state).0).exit(0);
    // A deleted node branch.
    r.git(&["branch", "-q", "-D", "usage/n2"]);
    let (out, v) = state_audit(&r, &state);
    out.exit(65);
    let deleted = of_kind(&v, "deleted-branch");
    assert_eq!(
        (deleted.len(), deleted[0]["branch"].as_str()),
        (1, Some("usage/n2")),
        "{v:#}"
    );
    // --state proves the whole history only.
    r.audit(&["--state", state.to_str().unwrap(), "--node", "n1"])
        .exit(64);
}

// ------------------------------------------------ 7. one node, one spool

const SPOOL_A: &str = "0123456789abcdef0123456789abcdef";
const SPOOL_B: &str = "fedcba9876543210fedcba9876543210";

fn put_from(r: &Repo, hour: &str, records: &[UsageRecord], trailers: &str) -> String {
    let path = format!("nodes/n1/usage_{hour}.otoml");
    std::fs::write(r.dir.join(&path), render_batch(records)).unwrap();
    r.git(&["add", &path]);
    r.commit_as(PUSH_N1.0, PUSH_N1.1, &format!("n1: records\n\n{trailers}"))
}

#[test]
fn two_spools_writing_one_node_without_an_adoption_are_found() {
    let r = clean_repo();
    put_from(
        &r,
        "2026-11-26-22",
        &[rec("n1", "s1", "0a1b", "2026-11-26 22:00:00", 1)],
        &format!("Hero-Usage-Spool: {SPOOL_A}"),
    );
    let c = put_from(
        &r,
        "2026-11-26-23",
        &[rec("n1", "s2", "0a1b", "2026-11-26 23:00:00", 1)],
        &format!("Hero-Usage-Spool: {SPOOL_B}"),
    );
    let v = violations(&r, &[]);
    let two = of_kind(&v, "two-spools");
    assert_eq!(
        (two.len(), two[0]["commit"].as_str()),
        (1, Some(c.as_str())),
        "{v:#}"
    );
    assert_eq!(v["spools"]["n1"], serde_json::json!([SPOOL_A, SPOOL_B]));

    let r = clean_repo();
    put_from(
        &r,
        "2026-11-26-22",
        &[rec("n1", "s1", "0a1b", "2026-11-26 22:00:00", 1)],
        &format!("Hero-Usage-Spool: {SPOOL_A}"),
    );
    put_from(
        &r,
        "2026-11-26-23",
        &[rec("n1", "s2", "0a1b", "2026-11-26 23:00:00", 1)],
        &format!("Hero-Usage-Spool: {SPOOL_B}\nHero-Usage-Adopts: {SPOOL_A}"),
    );
    let (out, v) = r.audit_json(&[]);
    out.exit(0);
    assert_eq!(v["spools"]["n1"], serde_json::json!([SPOOL_A, SPOOL_B]));
    assert!(stdout(&r.audit(&[])).contains(&format!("spools of n1: {SPOOL_A}, {SPOOL_B}")));
}

// ------------------------------------------------------ 8. the API source

/// A forge whose repository answers well and whose branch listing is
/// `branches(page)`: (status line, body).
fn hostile_forge(branches: fn(usize) -> (&'static str, String)) -> String {
    fake_server(move |head: &str| {
        let path = head
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        if let Some(q) = path.split_once("/branches?page=") {
            let page = q.1.split('&').next().unwrap().parse().unwrap_or(0);
            let (status, body) = branches(page);
            return (status.to_string(), "application/json".to_string(), body);
        }
        if path.ends_with("/repos/o/billing") {
            let body = r#"{"name":"billing","full_name":"o/billing","default_branch":"main","empty":false}"#;
            return ("200 OK".into(), "application/json".into(), body.to_string());
        }
        (
            "404 Not Found".into(),
            "application/json".into(),
            r#"{"message":"not found"}"#.into(),
        )
    })
}

fn audit_api(url: &str, knobs: &[(&str, &str)]) -> std::process::Output {
    let env = crate::support::TestEnv::new();
    std::fs::write(env.path("token"), "token-abcdefgh").unwrap();
    let mut cmd = env.cmd("hero_usage_audit");
    cmd.env("HERO_USAGE_FORGEJO_URL", url)
        .env("HERO_USAGE_FORGEJO_TOKEN_FILE", env.path("token"))
        .env("HERO_USAGE_REPO", "o/billing");
    for (k, v) in knobs {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

fn page_of(page: usize) -> String {
    let items: Vec<String> = (0..50)
        .map(|i| {
            format!(
                r#"{{"name":"b{page}-{i}","commit":{{"id":"{:040x}"}}}}"#,
                page * 50 + i
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

#[test]
fn the_api_source_pages_a_bounded_number_of_times() {
    // A branch listing that never ends (the bound is 2000 pages; 20 here).
    let endless = hostile_forge(|page| ("200 OK", page_of(page)));
    let out = audit_api(&endless, &[("HERO_USAGE_TEST_AUDIT_MAX_PAGES", "20")]);
    out.exit(75);
    let why = stderr(&out);
    assert!(why.contains("did not end after 20 pages"), "{why}");
}

#[test]
fn the_api_source_calls_an_answer_that_is_not_the_json_expected_75() {
    // 200 answers that are not the JSON expected.
    for body in [
        "<html>nginx</html>",
        r#"{"branches":"all of them"}"#,
        r#"[{"nom":"main"}]"#,
    ] {
        let url = match body {
            "<html>nginx</html>" => hostile_forge(|_| ("200 OK", "<html>nginx</html>".into())),
            b if b.starts_with('{') => {
                hostile_forge(|_| ("200 OK", r#"{"branches":"all of them"}"#.into()))
            }
            _ => hostile_forge(|_| ("200 OK", r#"[{"nom":"main"}]"#.into())),
        };
        let out = audit_api(&url, &[]);
        out.exit(75);
        assert!(
            stderr(&out).contains("not what the Forgejo API gives"),
            "{body}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn the_api_source_refuses_a_huge_page_and_meets_its_deadline() {
    // A 57 MB page is refused unread, not parsed into GBs.
    let out = audit_api(
        &hostile_forge(|_| ("200 OK", format!("[{}]", "0,".repeat(28 << 20) + "0"))),
        &[],
    );
    out.exit(75);
    // A server that pages slowly for ever meets the deadline.
    let slow = hostile_forge(|page| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        ("200 OK", page_of(page))
    });
    let out = audit_api(&slow, &[("HERO_USAGE_TEST_AUDIT_DEADLINE_MS", "300")]);
    out.exit(75);
    assert!(stderr(&out).contains("deadline"), "{}", stderr(&out));
}

// -------------------------------------------------------- 9. signatures/

#[test]
fn signatures_folders_hold_only_signatures_written_by_their_node() {
    let r = clean_repo();
    // Checked with or without --allowed-signers: names, modes, branches.
    r.put_raw(
        "n1",
        "signatures/n1/usage_2026-11-26-16.otoml.sig.bak",
        b"x",
    );
    r.put_raw("n1", "signatures/README", b"x");
    let exec = "signatures/n1/usage_2026-11-27-00.otoml.sig";
    std::fs::write(r.dir.join(exec), b"sig").unwrap();
    let executable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(r.dir.join(exec), executable).unwrap();
    r.git(&["add", exec]);
    r.commit_as(PUSH_N1.0, PUSH_N1.1, "n1: an executable signature");
    r.git(&["checkout", "-q", "usage/n2"]);
    let foreign = "signatures/n3/usage_2026-11-26-16.otoml.sig";
    let c = r.put_raw("n2", foreign, b"sig");
    r.git(&["checkout", "-q", "main"]);
    let v = violations(&r, &[]);
    let mut bad: Vec<Value> = of_kind(&v, "bad-name")
        .iter()
        .map(|x| x["file"].clone())
        .collect();
    bad.sort_by_key(|f| f.to_string());
    assert_eq!(
        bad,
        [
            "signatures/README",
            "signatures/n1/usage_2026-11-26-16.otoml.sig.bak"
        ],
        "{v:#}"
    );
    assert_eq!(of_kind(&v, "bad-mode")[0]["file"], exec, "{v:#}");
    // A signature proves itself whoever commits it (--allowed-signers
    // checks it), but a node's branch holds that node's folders only.
    let found = of_kind(&v, "foreign-node");
    assert_eq!(
        (found[0]["file"].as_str(), found[0]["commit"].as_str()),
        (Some(foreign), Some(c.as_str())),
        "{v:#}"
    );
    assert_eq!(v["violation_count"], 4, "{v:#}");
}
