//! `hero_usage_audit` on real git repositories built with `git` here (one
//! violation at a time, and clean ones), and on what the real push job wrote
//! to the test forge, read through the API and through the bare repository.

use crate::support::{Run, TestEnv, git, git_cmd, run, stderr, stdout};
use hero_usage::otoml::render_batch;
use hero_usage::record::{UsageRecord, UtcSecond};
use hero_usage_test_forge::{ForgeOptions, TestForge};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

pub(crate) fn rec(node: &str, key: &str, sid: &str, at: &str, amount: u64) -> UsageRecord {
    UsageRecord {
        amount_cents: amount,
        description: "test".into(),
        idempotency_key: key.into(),
        node_id: node.into(),
        occurred_at: UtcSecond::parse(at).unwrap(),
        resource_kind: "cpu_hours".into(),
        user_sid: sid.into(),
    }
}

/// A working repository built with `git`, with one helper per kind of commit.
pub(crate) struct Repo {
    pub(crate) env: TestEnv,
    pub(crate) dir: PathBuf,
}

impl Repo {
    /// A repository on branch `main` with a README commit by a person.
    pub(crate) fn new() -> Repo {
        let env = TestEnv::new();
        let dir = env.path("billing");
        std::fs::create_dir_all(&dir).unwrap();
        let r = Repo { env, dir };
        r.git(&["init", "-q", "-b", "main"]);
        std::fs::write(r.dir.join("README"), "billing\n").unwrap();
        r.git(&["add", "README"]);
        r.commit_as("Admin", "admin@example.org", "README");
        r
    }

    pub(crate) fn git(&self, args: &[&str]) -> String {
        git(&self.dir, args).trim().to_string()
    }

    pub(crate) fn commit_as(&self, name: &str, email: &str, msg: &str) -> String {
        let out = git_cmd(&self.dir)
            .env("GIT_AUTHOR_NAME", name)
            .env("GIT_AUTHOR_EMAIL", email)
            .env("GIT_COMMITTER_NAME", name)
            .env("GIT_COMMITTER_EMAIL", email)
            .args(["commit", "-q", "--allow-empty", "-m", msg])
            .output()
            .expect("git");
        assert!(out.status.success(), "git commit: {}", stderr(&out));
        self.git(&["rev-parse", "HEAD"])
    }

    /// Write `bytes` at `path` and commit it as `node`'s push would.
    pub(crate) fn put_raw(&self, node: &str, path: &str, bytes: &[u8]) -> String {
        let full = self.dir.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, bytes).unwrap();
        self.git(&["add", path]);
        self.commit_as(
            &format!("hero_usage_push on {node}"),
            &format!("{node}@hero-usage.invalid"),
            &format!("{node}: {path}"),
        )
    }

    /// Write `records` as the canonical hour file of `node` and `hour`.
    pub(crate) fn put(&self, node: &str, hour: &str, records: &[UsageRecord]) -> String {
        self.put_raw(
            node,
            &format!("nodes/{node}/usage_{hour}.otoml"),
            render_batch(records).as_bytes(),
        )
    }

    pub(crate) fn audit(&self, args: &[&str]) -> Output {
        self.audit_at(&self.dir, args)
    }

    /// `hero_usage_audit --git-dir DIR ARGS` (a clone of this repository).
    pub(crate) fn audit_at(&self, dir: &Path, args: &[&str]) -> Output {
        run(self
            .env
            .cmd("hero_usage_audit")
            .arg("--git-dir")
            .arg(dir)
            .args(args))
    }

    /// `git clone -q FLAGS` of this repository (by `file://` URL, so that
    /// `--depth` holds) into the env's `name`: its path.
    pub(crate) fn clone_as(&self, name: &str, flags: &[&str]) -> PathBuf {
        let to = self.env.path(name);
        let url = format!("file://{}", self.dir.display());
        let target = to.to_str().unwrap();
        self.git(&[&["clone", "-q"], flags, &[url.as_str(), target]].concat());
        to
    }

    /// `git merge -q ARGS` made by a person (the admin), not a node's push.
    pub(crate) fn merge_as_admin(&self, args: &[&str]) {
        let who = [
            "-c",
            "user.name=Admin",
            "-c",
            "user.email=admin@example.org",
        ];
        self.git(&[&who[..], &["merge", "-q"], args].concat());
    }

    pub(crate) fn audit_json(&self, args: &[&str]) -> (Output, Value) {
        let out = self.audit(&[&["--json"], args].concat());
        let v: Value = serde_json::from_str(&stdout(&out))
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(&out), stderr(&out)));
        (out, v)
    }
}

/// Two nodes, two hours, a file appended to once, a per-node branch.
pub(crate) fn clean_repo() -> Repo {
    let r = Repo::new();
    let a1 = rec("n1", "k1", "0a1b", "2026-11-26 16:04:05", 250);
    let a2 = rec("n1", "k2", "0a1b", "2026-11-26 16:30:00", 100);
    r.put("n1", "2026-11-26-16", std::slice::from_ref(&a1));
    r.put("n1", "2026-11-26-16", &[a1, a2]);
    r.put(
        "n1",
        "2026-11-27-00",
        &[rec("n1", "k3", "zz99", "2026-11-27 00:00:00", 7)],
    );
    // A node's branch never carries another node's files: it starts empty.
    r.git(&["checkout", "-q", "--orphan", "usage/n2"]);
    r.git(&["rm", "-q", "-r", "-f", "."]);
    r.put(
        "n2",
        "2026-11-26-16",
        &[rec("n2", "k1b", "0a1b", "2026-11-26 16:59:59", 40)],
    );
    r.git(&["checkout", "-q", "main"]);
    r
}

/// The lines of the totals table, split into words.
fn table_rows(text: &str) -> Vec<Vec<String>> {
    text.split_once("totals per ")
        .map(|(_, t)| t)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// The one kind of violation found, and the violation itself.
#[track_caller]
pub(crate) fn only_violation(r: &Repo, kind: &str) -> Value {
    let (out, v) = r.audit_json(&[]);
    out.exit(65);
    let counts = v["violation_counts"].as_object().unwrap();
    assert_eq!(counts.keys().collect::<Vec<_>>(), [kind], "{v:#}");
    assert!(stderr(&out).contains(&format!("violations found: {}", v["violation_count"])));
    v["violations"][0].clone()
}

#[test]
fn a_clean_repository_passes_with_history() {
    let r = clean_repo();
    let out = r.audit(&[]);
    out.exit(0);
    let text = stdout(&out);
    assert!(text.contains("violations: 0"), "{text}");
    assert!(text.contains("branches: main, usage/n2"), "{text}");
    assert!(
        text.contains("read: 2 nodes, 3 files, 4 records; 5 commits walked"),
        "{text}"
    );
    assert!(stderr(&out).is_empty());
}

#[test]
fn no_history_reads_the_heads_only() {
    let r = clean_repo();
    let a1 = rec("n1", "k1", "0a1b", "2026-11-26 16:04:05", 999);
    let a2 = rec("n1", "k2", "0a1b", "2026-11-26 16:30:00", 100);
    r.put("n1", "2026-11-26-16", &[a1, a2]);
    r.audit(&[]).exit(65);
    let out = r.audit(&["--no-history"]);
    out.exit(0);
    assert!(
        stdout(&out).contains("4 records; no history checks (--no-history)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_bare_mirror_reads_the_same() {
    let r = clean_repo();
    let mirror = r.clone_as("mirror.git", &["--mirror"]);
    let out = r.audit_at(&mirror, &[]);
    out.exit(0);
    assert!(stdout(&out).contains("4 records"), "{}", stdout(&out));
}

#[test]
fn a_clone_reads_the_branches_git_fetch_keeps_current() {
    let r = clean_repo();
    let clone = r.clone_as("clone", &[]);
    // Work that lands after the clone reaches it with git fetch.
    r.git(&["checkout", "-q", "usage/n2"]);
    r.put(
        "n2",
        "2026-11-26-17",
        &[rec("n2", "k9", "0a1b", "2026-11-26 17:00:00", 1)],
    );
    let fetch = git_cmd(&clone).args(["fetch", "-q"]).output().unwrap();
    assert!(fetch.status.success());
    let out = r.audit_at(&clone, &[]);
    out.exit(0);
    assert!(
        stdout(&out).contains("branches: main, usage/n2"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("4 files, 5 records"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn totals_match_a_hand_count() {
    let r = clean_repo();
    let csv = r.env.path("totals.csv");
    let (out, v) = r.audit_json(&["--totals", "day", "--csv", csv.to_str().unwrap()]);
    out.exit(0);
    // 0a1b on 2026-11-26: 250 + 100 (n1) + 40 (n2), 3 records; zz99: 7, 1.
    assert_eq!(
        std::fs::read_to_string(&csv).unwrap(),
        "day,user_sid,resource_kind,amount_cents,count\n\
         2026-11-26,0a1b,cpu_hours,390,3\n\
         2026-11-27,zz99,cpu_hours,7,1\n"
    );
    assert_eq!(v["totals"]["period"], "day");
    assert_eq!(v["totals"]["rows"][0]["amount_cents"], 390);
    let out = r.audit(&["--totals", "month", "--node", "n1"]);
    out.exit(0);
    let text = stdout(&out);
    assert!(text.contains("totals per month:"), "{text}");
    assert_eq!(
        table_rows(&text),
        [
            [
                "month",
                "user_sid",
                "resource_kind",
                "amount_cents",
                "count"
            ],
            ["2026-11", "0a1b", "cpu_hours", "350", "2"],
            ["2026-11", "zz99", "cpu_hours", "7", "1"]
        ]
    );
    let out = r.audit(&[
        "--totals",
        "hour",
        "--from",
        "2026-11-27-00",
        "--to",
        "2026-11-27-00",
    ]);
    assert_eq!(
        table_rows(&stdout(&out))[1],
        ["2026-11-27-00", "zz99", "cpu_hours", "7", "1"]
    );
}

#[test]
fn a_name_outside_the_pattern_is_reported() {
    let r = clean_repo();
    let c = r.put_raw("n1", "nodes/n1/usage_2026-11-26-16.otoml.bak", b"x");
    let v = only_violation(&r, "bad-name");
    assert_eq!(v["file"], "nodes/n1/usage_2026-11-26-16.otoml.bak");
    assert_eq!(v["commit"], c.as_str());
    assert_eq!(v["branch"], "main");
}

#[test]
fn an_unparsable_file_is_reported() {
    let r = clean_repo();
    let c = r.put_raw(
        "n1",
        "nodes/n1/usage_2026-11-26-18.otoml",
        b"O:\n[[records]\n",
    );
    let v = only_violation(&r, "unparsable");
    assert_eq!(v["file"], "nodes/n1/usage_2026-11-26-18.otoml");
    assert_eq!(v["commit"], c.as_str());
}

#[test]
fn a_file_that_is_not_canonical_is_reported() {
    let r = clean_repo();
    let text = render_batch(&[rec("n1", "k5", "0a1b", "2026-11-26 18:00:00", 1)]);
    r.put_raw(
        "n1",
        "nodes/n1/usage_2026-11-26-18.otoml",
        text.replace(" = ", "=").as_bytes(),
    );
    let v = only_violation(&r, "not-canonical");
    assert_eq!(v["file"], "nodes/n1/usage_2026-11-26-18.otoml");
    assert!(v["detail"].as_str().unwrap().contains("line 3"), "{v}");
}

#[test]
fn a_record_breaking_a_field_rule_is_reported_with_its_key() {
    let r = clean_repo();
    let text = render_batch(&[rec("n1", "k5", "0a1b", "2026-11-26 18:00:00", 1)]);
    r.put_raw(
        "n1",
        "nodes/n1/usage_2026-11-26-18.otoml",
        text.replace("\"0a1b\"", "\"0A1B\"").as_bytes(),
    );
    let v = only_violation(&r, "bad-record");
    assert_eq!(v["key"], "k5");
    assert!(v["detail"].as_str().unwrap().contains("user_sid"), "{v}");
}

#[test]
fn a_record_outside_its_files_hour_is_reported() {
    let r = clean_repo();
    r.put(
        "n1",
        "2026-11-26-18",
        &[rec("n1", "k5", "0a1b", "2026-11-26 19:00:00", 1)],
    );
    let v = only_violation(&r, "wrong-hour");
    assert_eq!(
        (v["file"].as_str(), v["key"].as_str()),
        (Some("nodes/n1/usage_2026-11-26-18.otoml"), Some("k5"))
    );
}

#[test]
fn a_record_of_another_node_is_reported() {
    let r = clean_repo();
    r.put(
        "n1",
        "2026-11-26-18",
        &[rec("n2", "k5", "0a1b", "2026-11-26 18:00:00", 1)],
    );
    let v = only_violation(&r, "wrong-node");
    assert_eq!(v["key"], "k5");
}

#[test]
fn a_key_twice_within_a_node_is_reported_across_hours_and_branches() {
    let r = clean_repo();
    // k1 is in hour 16 on main; here it is again in hour 18 on the node's branch.
    r.git(&["checkout", "-q", "-b", "usage/n1"]);
    r.put(
        "n1",
        "2026-11-26-18",
        &[rec("n1", "k1", "0a1b", "2026-11-26 18:00:00", 250)],
    );
    r.git(&["checkout", "-q", "main"]);
    let v = only_violation(&r, "duplicate-key");
    assert_eq!(v["key"], "k1");
    assert_eq!(v["branch"], "usage/n1");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("nodes/n1/usage_2026-11-26-16.otoml"),
        "{v}"
    );
}

#[test]
fn a_key_in_two_nodes_is_a_note_not_a_violation() {
    let r = clean_repo();
    r.put(
        "n2",
        "2026-11-26-18",
        &[rec("n2", "k1", "0a1b", "2026-11-26 18:00:00", 250)],
    );
    // n2's commit on main is fine: main is the shared branch.
    let (out, v) = r.audit_json(&[]);
    out.exit(0);
    assert_eq!(v["shared_keys"], 1);
    assert_eq!(v["notes"][0]["key"], "k1");
    assert_eq!(v["notes"][0]["nodes"], serde_json::json!(["n1", "n2"]));
    assert!(stdout(&r.audit(&[])).contains("note shared-key: key k1 in nodes n1, n2"));
}

#[test]
fn a_changed_record_names_both_commits() {
    let r = clean_repo();
    let before = r.git(&[
        "log",
        "-1",
        "--format=%H",
        "--",
        "nodes/n1/usage_2026-11-26-16.otoml",
    ]);
    let a1 = rec("n1", "k1", "0a1b", "2026-11-26 16:04:05", 999);
    let a2 = rec("n1", "k2", "0a1b", "2026-11-26 16:30:00", 100);
    let after = r.put("n1", "2026-11-26-16", &[a1, a2]);
    let v = only_violation(&r, "changed-record");
    assert_eq!(v["key"], "k1");
    assert_eq!(v["commit"], after.as_str());
    assert_eq!(v["other_commit"], before.as_str());
    assert!(
        v["detail"].as_str().unwrap().contains("amount_cents"),
        "{v}"
    );
}

#[test]
fn a_removed_record_and_a_removed_file_are_reported() {
    let r = clean_repo();
    r.put(
        "n1",
        "2026-11-26-16",
        &[rec("n1", "k2", "0a1b", "2026-11-26 16:30:00", 100)],
    );
    let v = only_violation(&r, "removed-record");
    assert_eq!(v["key"], "k1");

    let r = clean_repo();
    r.git(&["rm", "-q", "nodes/n1/usage_2026-11-27-00.otoml"]);
    let c = r.commit_as("hero_usage_push on n1", "n1@hero-usage.invalid", "rm");
    let v = only_violation(&r, "removed-record");
    assert_eq!(
        (v["key"].as_str(), v["commit"].as_str()),
        (Some("k3"), Some(c.as_str()))
    );
}

#[test]
fn a_commit_by_someone_else_is_reported() {
    let r = clean_repo();
    std::fs::write(
        r.dir.join("nodes/n1/usage_2026-11-26-18.otoml"),
        render_batch(&[rec("n1", "k5", "0a1b", "2026-11-26 18:00:00", 1)]),
    )
    .unwrap();
    r.git(&["add", "."]);
    let c = r.commit_as("Mallory", "mallory@example.org", "fix billing");
    let v = only_violation(&r, "wrong-author");
    assert_eq!(v["commit"], c.as_str());
    assert!(v["detail"].as_str().unwrap().contains("Mallory"), "{v}");
}

#[test]
fn a_commit_on_a_nodes_branch_touching_another_node_is_reported() {
    let r = clean_repo();
    r.git(&["checkout", "-q", "usage/n2"]);
    // Made by n3's push, so only the branch is wrong.
    let c = r.put(
        "n3",
        "2026-11-26-18",
        &[rec("n3", "k5", "0a1b", "2026-11-26 18:00:00", 1)],
    );
    r.git(&["checkout", "-q", "main"]);
    let v = only_violation(&r, "foreign-node");
    assert_eq!(
        (v["commit"].as_str(), v["branch"].as_str()),
        (Some(c.as_str()), Some("usage/n2"))
    );
    assert_eq!(v["file"], "nodes/n3/usage_2026-11-26-18.otoml");
}

#[test]
fn node_and_hour_filters_limit_the_audit() {
    let r = clean_repo();
    r.put(
        "n2",
        "2026-11-26-18",
        &[rec("n2", "k7", "0a1b", "2026-11-26 19:00:00", 1)],
    );
    r.audit(&[]).exit(65);
    r.audit(&["--node", "n1"]).exit(0);
    // --node is repeatable: both nodes are read.
    let (out, v) = r.audit_json(&["--node", "n1", "--node", "n2"]);
    out.exit(65);
    assert_eq!(v["nodes"], 2, "{v:#}");
    r.audit(&["--to", "2026-11-26-17"]).exit(0);
    r.audit(&["--from", "2026-11-26-18", "--node", "n2"])
        .exit(65);
    let out = r.audit(&["--from", "2026-11-26-18", "--to", "2026-11-26-17"]);
    out.exit(64);
    assert!(stderr(&out).contains("--from"), "{}", stderr(&out));
    r.audit(&["--from", "2026-11-26 18"]).exit(64);
    r.audit(&["--node", "../x"]).exit(64);
    r.audit(&["--csv", "x.csv"]).exit(64);
}

#[test]
fn a_git_dir_that_cannot_be_read_is_66() {
    let env = TestEnv::new();
    for p in [env.path("missing"), env.path("")] {
        let out = run(env.cmd("hero_usage_audit").arg("--git-dir").arg(&p));
        out.exit(66);
        assert!(
            stderr(&out).starts_with("hero_usage_audit: error: cannot read the git directory"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn user_and_system_git_config_are_never_read() {
    let r = clean_repo();
    // A config git itself refuses to start with, as the user's, the
    // system's and the one HOME holds.
    let bad = r.env.path("bad.gitconfig");
    std::fs::write(&bad, "[core\ngarbage\n").unwrap();
    std::fs::write(r.env.home.join(".gitconfig"), "[core\ngarbage\n").unwrap();
    let with_bad = |c: &mut std::process::Command| {
        c.env("HOME", &r.env.home)
            .env("GIT_CONFIG_GLOBAL", &bad)
            .env("GIT_CONFIG_SYSTEM", &bad)
            .env_remove("GIT_CONFIG_NOSYSTEM");
    };
    let mut git = std::process::Command::new("git");
    with_bad(git.arg("-C").arg(&r.dir).arg("log"));
    run(&mut git).fails();
    let mut audit = r.env.cmd("hero_usage_audit");
    with_bad(audit.arg("--git-dir").arg(&r.dir));
    let out = run(&mut audit);
    out.exit(0);
    assert!(stdout(&out).contains("4 records"), "{}", stdout(&out));
}

#[test]
fn a_report_or_totals_file_that_cannot_be_written_is_74() {
    let r = clean_repo();
    for args in [&[][..], &["--json", "--totals", "day"]] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = run(r
            .env
            .cmd("hero_usage_audit")
            .arg("--git-dir")
            .arg(&r.dir)
            .args(args)
            .stdout(full));
        out.exit(74).stderr_has("cannot write to stdout");
    }
    let csv = r.env.path("no-such-dir/totals.csv");
    let out = r.audit(&["--totals", "day", "--csv", csv.to_str().unwrap()]);
    out.exit(74).stderr_has("totals file");
}

// ------------------------------------------------------------------ the forge

const OWNER: &str = "lhumina_code";

fn forge() -> TestForge {
    TestForge::start(ForgeOptions::default())
}

/// Record `records` on `node` and push them to the forge with the real binaries.
/// Each node keeps one spool across calls (one node, one spool).
fn push_as(f: &TestForge, node: &str, records: &[UsageRecord]) {
    push_from(f, node, &format!("spool-of-{node}"), records, &[]);
}

/// Record `records` in the spool `spool` as `node` and push them.
pub(crate) fn push_from(
    f: &TestForge,
    node: &str,
    spool: &str,
    records: &[UsageRecord],
    args: &[&str],
) {
    let mut env = TestEnv::new();
    env.node = node.to_string();
    env.spool = f.root().join(spool);
    let token = env.path("token");
    std::fs::write(&token, f.token()).unwrap();
    for r in records {
        let out = run(env.cmd("hero_usage_record").args([
            "--idempotency-key",
            &r.idempotency_key,
            "--user-sid",
            &r.user_sid,
            "--amount-cents",
            &r.amount_cents.to_string(),
            "--resource-kind",
            &r.resource_kind,
            "--description",
            &r.description,
            "--occurred-at",
            &r.occurred_at.to_string(),
        ]));
        out.exit(0);
    }
    let out = run(env
        .cmd("hero_usage_push")
        .env("HERO_USAGE_FORGEJO_URL", f.base_url())
        .env("HERO_USAGE_FORGEJO_TOKEN_FILE", &token)
        .env("HERO_USAGE_REPO", format!("{OWNER}/billing"))
        .args(args));
    out.exit(0);
}

fn audit_forge(f: &TestForge, token: &str, args: &[&str]) -> Output {
    let env = TestEnv::new();
    let token_file = env.path("token");
    std::fs::write(&token_file, token).unwrap();
    run(env
        .cmd("hero_usage_audit")
        .env("HERO_USAGE_FORGEJO_URL", f.base_url())
        .env("HERO_USAGE_FORGEJO_TOKEN_FILE", &token_file)
        .env("HERO_USAGE_REPO", format!("{OWNER}/billing"))
        .args(args))
}

fn audit_dir(dir: &Path, args: &[&str]) -> Output {
    let env = TestEnv::new();
    run(env
        .cmd("hero_usage_audit")
        .arg("--git-dir")
        .arg(dir)
        .args(args))
}

#[test]
fn what_the_push_job_wrote_passes_through_the_api_and_the_bare_repository() {
    let f = forge();
    push_as(
        &f,
        "n1",
        &[
            rec("n1", "k1", "0a1b", "2026-11-26 16:04:05", 250),
            rec("n1", "k2", "0a1b", "2026-11-26 17:00:00", 5),
        ],
    );
    push_as(
        &f,
        "n1",
        &[rec("n1", "k3", "0a1b", "2026-11-26 16:05:00", 1)],
    );
    push_as(
        &f,
        "n2",
        &[rec("n2", "k1", "zz99", "2026-11-26 16:00:00", 10)],
    );

    let out = audit_forge(&f, &f.token(), &["--totals", "day"]);
    out.exit(0);
    let text = stdout(&out);
    assert!(text.contains("no history checks"), "{text}");
    assert!(text.contains("read: 2 nodes, 3 files, 4 records"), "{text}");
    assert!(
        text.contains("note shared-key: key k1 in nodes n1, n2"),
        "{text}"
    );
    assert_eq!(
        table_rows(&text)[1],
        ["2026-11-26", "0a1b", "cpu_hours", "256", "3"]
    );

    let bare = f.bare_repo(OWNER, "billing");
    let out = audit_dir(&bare, &["--json"]);
    out.exit(0);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        (v["history_checked"].as_bool(), v["records"].as_u64()),
        (Some(true), Some(4))
    );
    assert!(v["commits"].as_u64().unwrap() >= 3, "{v}");
}

#[test]
fn the_api_source_finds_a_bad_file_and_maps_forge_failures() {
    let f = forge();
    push_as(
        &f,
        "n1",
        &[rec("n1", "k1", "0a1b", "2026-11-26 16:04:05", 250)],
    );
    // Someone edits the file by hand through the forge's web editor.
    let client = hero_usage::forgejo::ForgejoClient::new(hero_usage::forgejo::ClientConfig::new(
        &f.base_url(),
        hero_usage::secret::Secret::new(f.token()),
    ))
    .unwrap();
    let path = "nodes/n1/usage_2026-11-26-16.otoml";
    let repo = hero_usage::forgejo::RepoRef::new(OWNER, "billing");
    let old = client.read_file(&repo, path, None).unwrap().unwrap();
    let edited = String::from_utf8(old.content).unwrap().replace("O:\n", "");
    client
        .update_file(
            &repo,
            path,
            edited.as_bytes(),
            &old.sha,
            &hero_usage::forgejo::CommitOptions {
                message: "edit".into(),
                ..Default::default()
            },
        )
        .unwrap();
    let out = audit_forge(&f, &f.token(), &[]);
    out.exit(65);
    assert!(
        stdout(&out).contains(&format!("violation not-canonical: {path}")),
        "{}",
        stdout(&out)
    );

    audit_forge(&f, "wrong-token-123456", &[]).exit(77);
    let bare_env = TestEnv::new();
    let out = run(&mut bare_env.cmd("hero_usage_audit"));
    out.exit(78);
    let dead = format!(
        "http://{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    );
    drop(f);
    let env = TestEnv::new();
    std::fs::write(env.path("t"), "token-abcdefgh").unwrap();
    let out = run(env
        .cmd("hero_usage_audit")
        .env("HERO_USAGE_FORGEJO_URL", dead)
        .env("HERO_USAGE_FORGEJO_TOKEN_FILE", env.path("t")));
    out.exit(75);
}

#[test]
fn the_api_source_reads_every_nodes_branch() {
    let f = forge();
    push_as(
        &f,
        "n1",
        &[rec("n1", "k1", "0a1b", "2026-11-26 16:04:05", 250)],
    );
    // n2 pushes to a branch of its own (made here with git, as the forge would).
    let bare = f.bare_repo(OWNER, "billing");
    let r = Repo::new();
    r.git(&["checkout", "-q", "--orphan", "usage/n2"]);
    r.git(&["rm", "-q", "-r", "-f", "."]);
    r.put(
        "n2",
        "2026-11-26-16",
        &[rec("n2", "k2", "0a1b", "2026-11-26 16:00:00", 5)],
    );
    r.git(&["checkout", "-q", "-b", "feature"]);
    r.put(
        "n3",
        "2026-11-26-16",
        &[rec("n3", "k3", "0a1b", "2026-11-26 16:00:00", 7)],
    );
    r.git(&["push", "-q", bare.to_str().unwrap(), "usage/n2", "feature"]);

    let out = audit_forge(&f, &f.token(), &["--json", "--totals", "month"]);
    out.exit(0);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["branches"], serde_json::json!(["main", "usage/n2"]));
    assert_eq!(v["ignored_branches"], serde_json::json!(["feature"]));
    assert_eq!(
        (v["nodes"].as_u64(), v["records"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(v["totals"]["rows"][0]["amount_cents"], 255);
    assert_eq!(v["history_checked"], false);
}

#[test]
fn two_spools_pushing_as_one_node_are_found_and_an_adoption_is_not() {
    let f = forge();
    let at = |key: &str, node: &str, t: &str| rec(node, key, "0a1b", t, 1);
    push_from(&f, "n1", "a", &[at("k1", "n1", "2026-11-26 16:00:00")], &[]);
    // Another spool as n1, a new hour file: nothing for the push to refuse.
    push_from(&f, "n1", "b", &[at("k2", "n1", "2026-11-26 18:00:00")], &[]);
    push_from(&f, "n2", "c", &[at("k3", "n2", "2026-11-26 16:00:00")], &[]);
    push_from(
        &f,
        "n2",
        "d",
        &[at("k4", "n2", "2026-11-26 16:30:00")],
        &["--adopt-node"],
    );
    let out = audit_dir(&f.bare_repo(OWNER, "billing"), &["--json"]);
    out.exit(65);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        v["violation_counts"],
        serde_json::json!({"two-spools": 1}),
        "{v:#}"
    );
    assert_eq!(
        v["violations"][0]["file"],
        "nodes/n1/usage_2026-11-26-18.otoml"
    );
    assert_eq!(v["spools"]["n1"].as_array().unwrap().len(), 2, "{v:#}");
    assert_eq!(v["spools"]["n2"].as_array().unwrap().len(), 2, "{v:#}");
}
