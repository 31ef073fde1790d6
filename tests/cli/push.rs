//! The push job end to end: the real `hero_usage_record` and
//! `hero_usage_push` binaries against the in-process test forge (real HTTP on
//! loopback, real bare git repositories).

use crate::support::forge::{
    Node, OWNER, REPO, commits, file, git, keys_on, rec, start as forge, start_old,
};
use crate::support::{Run, TestEnv, files_under, run, stderr, stdout};
use hero_usage::otoml::{parse_batch, render_batch};
use hero_usage::record::UsageRecord;
use hero_usage_test_forge::{Fault, FaultAction, ForgeOptions, RawReply, TestForge};

use std::time::Duration;

/// Three records over two hours, recent enough to be valid.
fn three() -> Vec<UsageRecord> {
    vec![
        rec("job-1", "2026-11-20 16:04:05", 250),
        rec("job-2", "2026-11-20 16:59:59", 100),
        rec("job-3", "2026-11-20 17:00:00", 7),
    ]
}

const H16: &str = "nodes/test-node/usage_2026-11-20-16.otoml";
const H17: &str = "nodes/test-node/usage_2026-11-20-17.otoml";

/// Every key in the billing repo's files for this node, with repeats.
fn remote_keys(forge: &TestForge, paths: &[&str]) -> Vec<String> {
    let mut keys: Vec<String> = paths
        .iter()
        .filter_map(|p| file(forge, p))
        .flat_map(|t| parse_batch(&t).unwrap())
        .map(|r| r.idempotency_key)
        .collect();
    keys.sort();
    keys
}

/// The many-files commit requests the forge saw (`POST .../contents`).
fn commit_requests(forge: &TestForge) -> usize {
    forge
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/contents"))
        .count()
}

#[test]
fn three_records_two_hours_one_canonical_commit() {
    let forge = forge();
    let node = Node::new(&forge);
    let records = three();
    for r in &records {
        node.record(r);
    }
    let out = node.push(&["--json"]);
    out.exit(0);
    assert_eq!(stdout(&out).lines().count(), 1, "one summary line");
    let summary: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(summary["outcome"], "pushed");
    assert_eq!(summary["pushed"], 3);

    assert_eq!(file(&forge, H16).unwrap(), render_batch(&records[..2]));
    assert_eq!(file(&forge, H17).unwrap(), render_batch(&records[2..]));
    assert_eq!(commits(&forge), 1, "the repo was created empty: one commit");
    // The author the audit tells a node's commits by; the subject names
    // the node and the counts.
    let author = git(&forge, &["log", "-1", "--format=%an <%ae>|%s", "main"]);
    assert_eq!(
        author.trim(),
        "hero_usage_push on test-node <test-node@hero-usage.invalid>\
         |usage: 3 records from node test-node in 2 file(s)"
    );
    assert_eq!(node.pending(), 0);
    assert_eq!(files_under(&node.env.spool.join("sent")).len(), 3);
    // The summary the status command reads.
    let outcome = std::fs::read_to_string(node.env.spool.join("state/last_push.json")).unwrap();
    assert!(outcome.contains("\"pushed\""));
}

#[test]
fn push_again_is_a_no_op_and_a_late_record_updates_its_hour() {
    let forge = forge();
    let node = Node::new(&forge);
    let records = three();
    for r in &records {
        node.record(r);
    }
    node.push(&[]).exit(0);
    let h17_before = file(&forge, H17).unwrap();

    let again = node.push(&[]);
    again.exit(0);
    assert!(
        stdout(&again).contains("nothing to push"),
        "{}",
        stdout(&again)
    );
    assert_eq!(stdout(&again).lines().count(), 1, "one summary line");
    assert_eq!(commits(&forge), 1);

    let late = rec("job-0-late", "2026-11-20 16:00:00", 5);
    node.record(&late);
    let out = node.push(&[]);
    out.exit(0);
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
    out.stdout_has("pushed 1 records");
    assert_eq!(commits(&forge), 2);
    let mut h16 = records[..2].to_vec();
    h16.push(late);
    assert_eq!(file(&forge, H16).unwrap(), render_batch(&h16));
    assert_eq!(
        file(&forge, H17).unwrap(),
        h17_before,
        "untouched hour is unchanged"
    );
    let changed = git(&forge, &["show", "--name-only", "--format=", "main"]);
    assert_eq!(changed.trim(), H16);
}

/// A commit request that `fault` answers wrongly after the commit was
/// applied: the run finds its records in the re-read and reports them as
/// its own push, with the commit; no second commit, nothing left.
fn landed_without_its_answer(fault: FaultAction, what: &str) {
    let forge = forge();
    let node = Node::new(&forge);
    for r in &three() {
        node.record(r);
    }
    forge.create_repo(OWNER, REPO, true);
    forge.inject(Fault::new(Some("POST"), "/contents", fault));
    let out = node.push(&["--json"]);
    out.exit_for(0, what);
    assert_eq!(
        commits(&forge),
        1,
        "{what}: the re-read found the landed commit"
    );
    // Reported as this run's push, with the commit found, not "nothing to push".
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "pushed", "{what}: {v}");
    assert_eq!(v["pushed"], 3, "{what}: {v}");
    assert_eq!(v["already_present"], 0, "{what}: {v}");
    assert_eq!(v["commits"], 1, "{what}: {v}");
    let head = forge.head(OWNER, REPO, "main").unwrap();
    assert_eq!(v["commit"].as_str(), Some(head.as_str()), "{what}: {v}");
    assert_eq!(
        remote_keys(&forge, &[H16, H17]),
        ["job-1", "job-2", "job-3"],
        "{what}"
    );
    assert_eq!(node.pending(), 0, "{what}");
    let again: serde_json::Value = serde_json::from_slice(&node.push(&["--json"]).stdout).unwrap();
    assert_eq!(again["already_present"], 0, "{what}: {again}");
}

#[test]
fn lost_reply_is_healed_by_rereading_in_the_same_run() {
    landed_without_its_answer(FaultAction::DropAfter, "lost reply");
}

/// Issue 16, item 7: a 5xx answered after the commit was applied (a
/// proxy's 502 or 504 once the server committed) was reported as "nothing
/// to push, pushed 0, commits 0" though the run's own request made the
/// commit. It is this run's push, with its commit.
#[test]
fn a_5xx_after_the_commit_landed_is_reported_as_pushed_by_this_run() {
    for status in [500, 502, 504] {
        let fault = FaultAction::FailAfter {
            status,
            message: String::new(),
        };
        landed_without_its_answer(fault, &status.to_string());
    }
}

/// A commit answered 2xx with what is not Forgejo's answer (a proxy's page,
/// a truncated or foreign JSON) is a lost reply: it may have landed. It
/// ended the run with 70 ("a bug"), its records left pending.
#[test]
fn a_2xx_commit_answer_that_cannot_be_read_is_a_lost_reply() {
    for (body, what) in [
        ("<html><body>Welcome to nginx!</body></html>", "html"),
        (
            r#"{"files":[{"name":"usage_2026-11-20-16.ot"#,
            "truncated json",
        ),
        (r#"{"message":"created"}"#, "no commit.sha"),
    ] {
        let raw = RawReply::new(201, "application/json", body);
        landed_without_its_answer(FaultAction::ReplyAfter(raw), what);
    }
}

/// A read answered 200 with what is not Forgejo's answer (a proxy's page,
/// an empty or truncated body) is the forge answering garbage: 75, nothing
/// written, the records pending. It was 70 ("a bug").
#[test]
fn a_read_answered_with_a_proxys_page_or_a_cut_body_is_75() {
    for (path, body) in [
        ("/repos/", "<html><body>Welcome to nginx!</body></html>"),
        ("/contents/", ""),
        ("/contents/", r#"{"type":"file","sha":"e69de29b"#),
    ] {
        let forge = forge();
        let node = Node::new(&forge);
        node.record(&three()[0]);
        forge.create_repo(OWNER, REPO, false);
        let raw = RawReply::new(200, "text/html", body);
        forge.inject(Fault::new(Some("GET"), path, FaultAction::Reply(raw)));
        node.push(&[]).exit_for(75, body);
        assert_eq!(commits(&forge), 1, "{body}: only the README");
        assert_eq!(node.pending(), 1, "{body}");
    }
}

/// A contents answer must be the file asked for, its bytes hashing to its
/// blob sha: a cache or proxy answering an older version (or an empty
/// content without `size`) with the current sha made the push rewrite the
/// hour file without the records it did not see: records marked sent long
/// ago vanished from the billing repository.
#[test]
fn a_contents_answer_whose_bytes_are_not_its_sha_or_its_path_changes_nothing() {
    let forge = forge();
    let node = Node::new(&forge);
    let [r1, r2, _] = <[UsageRecord; 3]>::try_from(three()).unwrap();
    node.record(&r1);
    node.record(&r2);
    node.push(&[]).exit(0);
    let before = file(&forge, H16).unwrap();
    let sha = git(&forge, &["rev-parse", &format!("main:{H16}")]);
    let b64 = |t: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(t)
    };
    let older = render_batch(std::slice::from_ref(&r1));
    let answer = |path: &str, content: &str, size: bool| {
        let mut v = serde_json::json!({
            "type": "file", "name": "x", "path": path, "sha": sha.trim(),
            "encoding": "base64", "content": content,
            "last_commit_sha": forge.head(OWNER, REPO, "main").unwrap(),
        });
        if size {
            v["size"] = serde_json::json!(content.len());
        }
        v.to_string()
    };
    node.record(&rec("job-4", "2026-11-20 16:30:00", 5));
    for (body, what) in [
        (answer(H16, &b64(&older), true), "an older version"),
        (answer(H16, "", false), "no content and no size"),
        (answer(H17, &b64(&before), true), "another path"),
    ] {
        let raw = RawReply::new(200, "application/json", body);
        forge.inject(Fault::new(Some("GET"), H16, FaultAction::Reply(raw)));
        node.push(&[]).exit_for(75, what);
        assert_eq!(file(&forge, H16).unwrap(), before, "{what}");
        assert_eq!(node.pending(), 1, "{what}");
    }
    node.push(&[]).exit(0);
    assert_eq!(
        remote_keys(&forge, &[H16, H17]),
        ["job-1", "job-2", "job-4"]
    );
}

#[test]
fn lost_reply_then_forge_down_exits_75_and_next_run_makes_no_new_commit() {
    let forge = forge();
    let node = Node::new(&forge);
    for r in &three() {
        node.record(r);
    }
    forge.create_repo(OWNER, REPO, false);
    // The first reads (one per hour) pass, the commit lands but its reply is
    // lost, and from then on the forge drops every read.
    forge.inject(
        Fault::new(
            Some("GET"),
            "/contents/",
            FaultAction::Delay(Duration::ZERO),
        )
        .times(2),
    );
    forge.inject(Fault::new(
        Some("POST"),
        "/contents",
        FaultAction::DropAfter,
    ));
    forge.inject(Fault::new(Some("GET"), "/contents/", FaultAction::DropBefore).times(1000));
    // Retries for 300 ms (the test knob's window), not the shortest flag's 1 s.
    let out = run(node
        .push_cmd()
        .env(hero_usage::push::TEST_WAITS_ENV, "5,50,300"));
    out.exit(75);
    assert!(
        stderr(&out).contains("next run retries"),
        "{}",
        stderr(&out)
    );
    assert_eq!(commits(&forge), 2, "README commit + the landed one");
    assert_eq!(node.pending(), 3, "not marked: the reply was lost");

    forge.clear_faults();
    let out = node.push(&[]);
    out.exit(0);
    assert_eq!(commits(&forge), 2, "no second commit");
    assert_eq!(
        remote_keys(&forge, &[H16, H17]),
        ["job-1", "job-2", "job-3"]
    );
    assert_eq!(node.pending(), 0);
}

/// A commit lands but its reply is lost and the run gives up; before the
/// next run the branch setting changes. The records are on the old branch:
/// committing them to the new one charged every user twice (the aggregator
/// reads both). The spool remembers the branches it committed to and merges
/// against them until nothing is pending.
#[test]
fn records_a_lost_reply_left_on_another_branch_are_not_committed_again() {
    let forge = forge();
    let node = Node::new(&forge);
    for r in &three() {
        node.record(r);
    }
    forge.create_repo(OWNER, REPO, false);
    forge.commit_files(
        OWNER,
        REPO,
        "billing-b",
        &[("README.md", Some(b"b\n"))],
        "Start b",
    );
    forge.inject(Fault::new(
        Some("POST"),
        "/contents",
        FaultAction::DropAfter,
    ));
    forge.inject(Fault::fail("POST", "/contents", 500, "").times(1000));
    run(node
        .push_cmd()
        .env(hero_usage::push::TEST_WAITS_ENV, "5,50,300"))
    .exit(75);
    assert_eq!(
        remote_keys(&forge, &[H16, H17]),
        ["job-1", "job-2", "job-3"]
    );
    assert_eq!(node.pending(), 3, "not marked: the reply was lost");

    forge.clear_faults();
    let on_b = |forge: &TestForge| {
        let mut keys = keys_on(forge, "billing-b")
            .remove("test-node")
            .unwrap_or_default();
        keys.sort();
        keys
    };
    let to_b = || run(node.push_cmd().env("HERO_USAGE_BRANCH", "billing-b"));
    to_b().exit(0);
    assert!(
        on_b(&forge).is_empty(),
        "committed twice: {:?}",
        on_b(&forge)
    );
    assert_eq!(node.pending(), 0);
    // Nothing pending any more: main is forgotten, later records go to b.
    node.record(&rec("job-4", "2026-11-20 16:30:00", 5));
    forge.clear_requests();
    to_b().exit(0);
    assert_eq!(on_b(&forge), ["job-4"]);
    let on_main = forge
        .requests()
        .iter()
        .filter(|r| r.path.contains("ref=main"))
        .count();
    assert_eq!(on_main, 0, "{:?}", forge.requests());
}

/// A shared branch that does not exist yet is made by the first commit from
/// the default branch, so its hour files are the default branch's: they
/// must be read there. Read on the missing branch they looked missing, every
/// create was refused (422 already exists) and the run retried until 75,
/// every run. With and without the many-files endpoint (signed:
/// signing::a_new_shared_branch_carries_the_default_branchs_signatures).
#[test]
fn a_new_shared_branch_starts_from_the_default_branchs_hour_files() {
    for old in [false, true] {
        let forge = start_old(old);
        let node = Node::new(&forge);
        node.record(&three()[0]);
        node.push(&[]).exit(0);
        node.record(&three()[1]);
        let out = run(node.push_cmd().env("HERO_USAGE_BRANCH", "billing-b"));
        out.exit_for(0, &format!("old server: {old}"));
        let keys = keys_on(&forge, "billing-b")
            .remove("test-node")
            .unwrap_or_default();
        assert_eq!(keys, ["job-1", "job-2"], "old server: {old}");
        assert_eq!(keys_on(&forge, "main")["test-node"], ["job-1"]);
    }
}

/// The commit that makes a new branch loses its reply; sent again, it is
/// told the branch exists already (422): the branch and the records are
/// there, found by re-reading. On a server without the many-files
/// endpoint (a PUT) that 422 ended the run with 70.
#[test]
fn a_lost_reply_to_the_commit_that_made_the_branch_is_found() {
    for old in [false, true] {
        let forge = start_old(old);
        let node = Node::new(&forge);
        node.record(&three()[0]);
        node.push(&[]).exit(0);
        node.record(&three()[1]);
        let method = if old { "PUT" } else { "POST" };
        forge.inject(Fault::new(
            Some(method),
            "/contents",
            FaultAction::DropAfter,
        ));
        let out = run(node.push_cmd().env("HERO_USAGE_BRANCH", "billing-b"));
        out.exit_for(0, method);
        let keys = keys_on(&forge, "billing-b")
            .remove("test-node")
            .unwrap_or_default();
        assert_eq!(keys, ["job-1", "job-2"], "{method}");
        assert_eq!(node.pending(), 0, "{method}");
    }
}

#[test]
fn server_errors_exit_75_lose_nothing_and_the_next_run_succeeds() {
    let forge = forge();
    let node = Node::new(&forge);
    for r in &three() {
        node.record(r);
    }
    forge.inject(Fault::fail("POST", "/contents", 500, "").times(1000));
    let out = node.push(&["--retry-seconds", "1"]);
    out.exit(75);
    assert_eq!(node.pending(), 3);
    let posts = commit_requests(&forge);
    // Retries are bounded by --retry-seconds (1 s here, with the test's
    // 5 to 50 ms waits), not by a count.
    assert!((2..200).contains(&posts), "bounded retries: {posts}");
    assert!(stderr(&out).contains("retries used up"), "{}", stderr(&out));

    forge.clear_faults();
    let out = node.push(&[]);
    out.exit(0);
    assert_eq!(
        remote_keys(&forge, &[H16, H17]),
        ["job-1", "job-2", "job-3"]
    );
    assert_eq!(node.pending(), 0);
}

#[test]
fn a_refused_token_exits_77_and_keeps_the_records() {
    let forge = forge();
    let node = Node::new(&forge);
    node.record(&three()[0]);
    std::fs::write(&node.token_file, "not-the-token\n").unwrap();
    let out = node.push(&[]);
    out.exit(77);
    assert!(!stderr(&out).contains("not-the-token"));
    assert_eq!(node.pending(), 1);
    // Secrets are never written into the spool (the outcome file included).
    for f in files_under(&node.env.spool) {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        assert!(
            !text.contains("not-the-token"),
            "{} holds the token",
            f.display()
        );
    }
    assert!(node.env.spool.join("state/last_push.json").exists());
}

#[test]
fn stale_sha_is_retried_and_both_writers_survive() {
    // Forgejo 12+, an older one (422), and one without the many-files
    // endpoint (the update is a PUT of the one file).
    for (legacy, single) in [(false, false), (true, false), (false, true)] {
        let what = format!("legacy={legacy} single files={single}");
        let forge = TestForge::start(ForgeOptions {
            legacy_422: legacy,
            no_multi_file: single,
            ..ForgeOptions::default()
        });
        let node = Node::new(&forge);
        let records = three();
        node.record(&records[0]);
        node.push(&[]).exit(0);
        node.record(&records[1]);
        // Another writer updates the hour file between our read and our commit.
        let other = rec("other-writer", "2026-11-20 16:30:00", 1);
        let concurrent = render_batch(&[records[0].clone(), other.clone()]);
        let (method, path) = if single {
            ("PUT", "/contents/")
        } else {
            ("POST", "/contents")
        };
        forge.inject(Fault::new(
            Some(method),
            path,
            FaultAction::ConcurrentCommit {
                path: H16.to_string(),
                content: concurrent.into_bytes(),
            },
        ));
        let out = node.push(&[]);
        out.exit_for(0, &what);
        assert_eq!(
            file(&forge, H16).unwrap(),
            render_batch(&[records[0].clone(), records[1].clone(), other]),
            "{what}"
        );
        let statuses: Vec<u16> = forge.requests().iter().map(|r| r.status).collect();
        let stale = if legacy { 422 } else { 409 };
        assert!(statuses.contains(&stale), "{what}: {statuses:?}");
    }
}

/// Another writer creates the hour file between the read (none there) and
/// the commit: 422 `repository file already exists` is a stale read, re-read
/// and merged, not an error.
#[test]
fn an_hour_file_created_meanwhile_is_reread_and_both_writers_survive() {
    let forge = forge();
    forge.create_repo(OWNER, REPO, false);
    let node = Node::new(&forge);
    let mine = three().remove(2);
    node.record(&mine);
    let other = rec("other-writer", "2026-11-20 17:30:00", 1);
    forge.inject(Fault::new(
        Some("POST"),
        "/contents",
        FaultAction::ConcurrentCommit {
            path: H17.to_string(),
            content: render_batch(std::slice::from_ref(&other)).into_bytes(),
        },
    ));
    node.push(&[]).exit(0);
    assert_eq!(file(&forge, H17).unwrap(), render_batch(&[mine, other]));
    assert!(
        forge.requests().iter().any(|r| r.status == 422),
        "{:?}",
        forge.requests()
    );
    assert_eq!(node.pending(), 0);
}

#[test]
fn servers_without_the_many_files_endpoint_get_one_request_per_file() {
    let forge = start_old(true);
    let node = Node::new(&forge);
    let records = three();
    for r in &records {
        node.record(r);
    }
    let out = node.push(&[]);
    out.exit(0);
    assert_eq!(file(&forge, H16).unwrap(), render_batch(&records[..2]));
    assert_eq!(file(&forge, H17).unwrap(), render_batch(&records[2..]));
    // One commit per file, each message naming its own file and count.
    let log = git(&forge, &["log", "--format=%s", "main"]);
    assert!(
        log.contains(&format!("usage: 2 records from node test-node in {H16}")),
        "{log}"
    );
    assert!(
        log.contains(&format!("usage: 1 records from node test-node in {H17}")),
        "{log}"
    );
    // A late record: the per-file update path (PUT with the sha).
    node.record(&rec("job-4", "2026-11-20 17:30:00", 1));
    let out = node.push(&[]);
    out.exit(0);
    assert_eq!(
        remote_keys(&forge, &[H16, H17]),
        ["job-1", "job-2", "job-3", "job-4"]
    );
    assert!(
        forge
            .requests()
            .iter()
            .any(|r| r.method == "PUT" && r.status == 200)
    );
}

#[test]
fn a_missing_repo_is_created_under_the_org_or_the_user_and_an_empty_repo_works() {
    let forge = forge();
    // Under the org (the default forge has org lhumina_code).
    let node = Node::new(&forge);
    node.record(&three()[0]);
    node.push(&[]).exit(0);
    assert!(
        forge
            .requests()
            .iter()
            .any(|r| r.path.starts_with("/api/v1/orgs/lhumina_code/repos") && r.status == 201)
    );
    assert_eq!(remote_keys(&forge, &[H16]), ["job-1"]);
    assert!(created_private(&forge, OWNER, REPO));

    // Under the token's user.
    let user_repo = format!("{}/mine", forge.user());
    let node = Node::named(&forge, "test-node", &user_repo);
    node.record(&three()[0]);
    let out = node.push(&[]);
    out.exit(0);
    assert!(
        forge
            .requests()
            .iter()
            .any(|r| r.path.starts_with("/api/v1/user/repos") && r.status == 201)
    );
    assert!(forge.file(&forge.user(), "mine", "main", H16).is_some());
    assert!(created_private(&forge, &forge.user(), "mine"));

    // An existing empty repository.
    forge.create_repo(OWNER, "empty", true);
    let node = Node::named(&forge, "test-node", &format!("{OWNER}/empty"));
    node.record(&three()[0]);
    let out = node.push(&[]);
    out.exit(0);
    assert!(forge.file(OWNER, "empty", "main", H16).is_some());
}

/// The repository was created private (the test forge keeps the
/// `private` of the create request beside the bare repository).
fn created_private(forge: &TestForge, owner: &str, name: &str) -> bool {
    let flag = forge.bare_repo(owner, name).join("testforge-private");
    std::fs::read_to_string(flag).unwrap() == "true"
}

/// Another node created the repository between this run's look (404) and
/// its create: the 409 means it exists, and the run pushes into it.
/// A name the forge refuses to create (422: `.git` or `.wiki` at its end, a
/// reserved one) is configuration: 78 naming --repo. It was 70.
#[test]
fn a_repository_name_the_forge_refuses_is_78() {
    let forge = forge();
    let node = Node::named(&forge, "test-node", &format!("{OWNER}/billing.git"));
    node.record(&three()[0]);
    let out = node.push(&[]);
    out.exit(78);
    assert!(stderr(&out).contains("set --repo"), "{}", stderr(&out));
    assert_eq!(node.pending(), 1);
}

#[test]
fn a_409_on_create_means_the_repo_exists_and_the_push_goes_on() {
    let forge = forge();
    forge.create_repo(OWNER, REPO, true);
    let node = Node::new(&forge);
    node.record(&three()[0]);
    forge.inject(Fault::fail(
        "GET",
        &format!("/repos/{OWNER}/{REPO}"),
        404,
        "The target couldn't be found.",
    ));
    node.push(&[]).exit(0);
    assert!(
        forge
            .requests()
            .iter()
            .any(|r| r.path.starts_with("/api/v1/orgs/lhumina_code/repos") && r.status == 409),
        "{:?}",
        forge.requests()
    );
    assert_eq!(remote_keys(&forge, &[H16]), ["job-1"]);
    assert_eq!(node.pending(), 0);
}

#[test]
fn a_crash_at_every_step_heals_on_the_next_push() {
    for point in [
        "push-after-ingest",
        "push-after-read",
        "push-after-commit",
        "push-after-mark",
    ] {
        let forge = forge();
        let node = Node::new(&forge);
        let records = three();
        for r in &records[..2] {
            node.record(r);
        }
        // One record arrives as a shell drop, ingested by the push.
        let drop = node.env.spool.join("incoming/drop-1.toml");
        std::fs::write(
            &drop,
            "idempotency_key = \"job-3\"\nuser_sid = \"0a1b\"\namount_cents = 7\nresource_kind = \"cpu_hours\"\n\
             description = 'work \"job-3\"'\noccurred_at = \"2026-11-20 17:00:00\"\n",
        )
        .unwrap();
        let crashed = run(node.push_cmd().env("HERO_USAGE_FAILPOINT", point));
        crashed.killed_for(point);

        let out = node.push(&[]);
        out.exit_for(0, point);
        assert_eq!(
            remote_keys(&forge, &[H16, H17]),
            ["job-1", "job-2", "job-3"],
            "{point}: every record exactly once"
        );
        assert_eq!(
            file(&forge, H16).unwrap(),
            render_batch(&records[..2]),
            "{point}"
        );
        assert_eq!(commits(&forge), 1, "{point}: one commit in all");
        assert_eq!(node.pending(), 0, "{point}: spool drained");
        assert!(
            files_under(&node.env.spool.join("incoming")).is_empty(),
            "{point}"
        );
    }
}

#[test]
fn two_pushes_at_once_one_pushes_the_other_says_the_lock_is_held() {
    let forge = forge();
    let node = Node::new(&forge);
    for r in &three() {
        node.record(r);
    }
    forge.inject(Fault::new(
        Some("GET"),
        "/repos/",
        FaultAction::Delay(Duration::from_millis(2000)),
    ));
    let mut first = node
        .push_cmd()
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first push is talking to the forge (it holds the lock).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while forge.pending_faults().first().is_some_and(|f| f.times > 0)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = node.push(&[]);
    second.exit(0);
    assert!(
        stdout(&second).contains("another push holds the lock"),
        "{}",
        stdout(&second)
    );
    // The push's lock is its own: recording does not wait for the network.
    crate::support::record(&node.env, "while-pushing");
    assert!(
        first.try_wait().unwrap().is_none(),
        "the record waited for the push to finish"
    );
    let first = first.wait_with_output().unwrap();
    first.exit(0);
    // Its first commit holds the three; the record made meanwhile goes in
    // its next batch (or the next run's): two commits in all, every key once.
    let said = stdout(&first);
    assert!(
        said.contains("pushed 3 records") || said.contains("pushed 4 records"),
        "{said}"
    );
    node.push(&[]).exit(0);
    assert_eq!(commits(&forge), 2);
    assert_eq!(node.pending(), 0);
    let keys = crate::support::forge::node_keys(&forge, "test-node");
    assert_eq!(keys, ["job-1", "job-2", "job-3", "while-pushing"]);
}

#[test]
fn a_conflicting_record_is_quarantined_and_everything_else_pushed() {
    let forge = forge();
    let node = Node::new(&forge);
    let records = three();
    node.record(&records[0]);
    node.push(&[]).exit(0);
    let before = file(&forge, H16).unwrap();

    // Another spool of the same node reuses the key with another amount.
    let other = Node::new(&forge);
    other.record(&rec("job-1", "2026-11-20 16:04:05", 999));
    other.record(&records[2]);
    let out = other.push(&["--json"]);
    out.exit(65);
    assert!(stderr(&out).contains("amount_cents"), "{}", stderr(&out));
    assert_eq!(file(&forge, H16).unwrap(), before, "conflict never pushed");
    assert_eq!(remote_keys(&forge, &[H17]), ["job-3"], "the rest is pushed");
    let rejected = other.rejected();
    assert_eq!(rejected.len(), 2, "record and its reason: {rejected:?}");
    assert_eq!(other.pending(), 0);
    // The quarantined file fails no later run.
    other.push(&[]).exit(0);
}

#[test]
fn an_unparseable_remote_hour_stays_pending_and_other_hours_push() {
    let outside = "O:\n[[records]]\namount_cents = 1\ndescription = \"\"\nidempotency_key = \"other\"\n\
         node_id = \"test-node\"\noccurred_at = \"2026-11-20 17:00:00\"\nresource_kind = \"x\"\nuser_sid = \"0a1b\"\n";
    let dir_inside = format!("{H16}/x");
    // Garbage; a record outside the file's hour (rewriting it would keep a
    // record where the aggregator does not look); a directory at the path.
    for (path, content, why) in [
        (H16, "this is = = not toml", "not a usage batch"),
        (H16, "garbage = ", "not a usage batch"),
        (H16, outside, "outside the file's hour"),
        (dir_inside.as_str(), "x", "is a directory"),
    ] {
        let forge = forge();
        forge.create_repo(OWNER, REPO, false);
        forge.commit_files(
            OWNER,
            REPO,
            "main",
            &[(path, Some(content.as_bytes()))],
            "bad",
        );
        let node = Node::new(&forge);
        for r in &three() {
            node.record(r);
        }
        // The bad hour fills the first batch on its own: the run still
        // goes on to the next hour.
        let out = node.push(&["--max-records", "2"]);
        out.exit_for(65, why);
        assert!(stderr(&out).contains(H16), "{}", stderr(&out));
        assert!(stderr(&out).contains(why), "{why}: {}", stderr(&out));
        assert!(
            stderr(&out)
                .lines()
                .all(|l| l.starts_with("hero_usage_push: ")),
            "one line per message: {}",
            stderr(&out)
        );
        assert_eq!(remote_keys(&forge, &[H17]), ["job-3"], "{why}");
        assert_eq!(node.pending(), 2, "{why}");
    }
}

/// Issue 16, item 8: a duplicate shell drop disappeared under "ingested
/// 0", and the dry run said "would push 4 records" where the push then
/// pushed 5 (drops were not counted). Drops and duplicates are counted and
/// printed alike in the dry run, the summary line and --json.
#[test]
fn drops_and_duplicate_drops_count_alike_in_the_dry_run_and_the_push() {
    let forge = forge();
    let node = Node::new(&forge);
    let mut records = three();
    records.push(rec("job-4", "2026-11-20 17:30:00", 4));
    for r in &records {
        node.record(r);
    }
    let drop = |name: &str, key: &str, amount: u64| {
        let body = format!(
            "idempotency_key = \"{key}\"\nuser_sid = \"0a1b\"\namount_cents = {amount}\n\
             resource_kind = \"cpu_hours\"\ndescription = \"work \\\"{key}\\\"\"\n\
             occurred_at = 2026-11-20T16:30:00Z\n"
        );
        std::fs::write(node.env.spool.join("incoming").join(name), body).unwrap();
    };
    drop("new.toml", "job-5", 5);
    // The same record as the pending job-1, but for its time (a drop's
    // occurred_at is compared like a retry's when the fields match).
    let dup = "idempotency_key = \"job-1\"\nuser_sid = \"0a1b\"\namount_cents = 250\n\
               resource_kind = \"cpu_hours\"\ndescription = \"work \\\"job-1\\\"\"\n";
    std::fs::write(node.env.spool.join("incoming/dup.toml"), dup).unwrap();
    let json = |out: &std::process::Output| -> serde_json::Value {
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
    };
    let dry = node.push(&["--dry-run", "--json"]);
    dry.exit(0);
    let d = json(&dry);
    let dry_text = stdout(&node.push(&["--dry-run"]));
    let out = node.push(&["--json"]);
    out.exit(0);
    let p = json(&out);
    for (what, v) in [("dry run", &d), ("push", &p)] {
        assert_eq!(v["pushed"], 5, "{what}: {v}");
        assert_eq!(v["ingested"], 1, "{what}: {v}");
        assert_eq!(v["ingest_duplicates"], 1, "{what}: {v}");
    }
    assert!(dry_text.contains("would push 5 records"), "{dry_text}");
    assert!(
        dry_text.contains("would ingest 1, duplicate drops 1"),
        "{dry_text}"
    );
    node.record(&rec("job-6", "2026-11-20 17:40:00", 6));
    std::fs::write(node.env.spool.join("incoming/dup2.toml"), dup).unwrap();
    let line = stdout(&node.push(&[]));
    assert!(line.contains("pushed 1 records"), "{line}");
    assert!(line.contains("ingested 0, duplicate drops 1"), "{line}");
    assert_eq!(
        remote_keys(&forge, &[H16, H17]),
        ["job-1", "job-2", "job-3", "job-4", "job-5", "job-6"]
    );
}

#[test]
fn dry_run_changes_nothing_anywhere() {
    let forge = forge();
    let node = Node::new(&forge);
    for r in &three() {
        node.record(r);
    }
    let drop = node.env.spool.join("incoming/d.toml");
    std::fs::write(
        &drop,
        "idempotency_key = \"d\"\nuser_sid = \"0a1b\"\namount_cents = 1\nresource_kind = \"x\"\n",
    )
    .unwrap();
    let out = node.push(&["--dry-run"]);
    out.exit(0);
    let text = stdout(&out);
    assert!(
        text.contains("would create nodes/test-node/usage_2026-11-20-16.otoml: 2 new"),
        "{text}"
    );
    assert!(
        !forge.bare_repo(OWNER, REPO).exists(),
        "no repository created"
    );
    assert!(drop.exists(), "no ingestion");
    assert_eq!(node.pending(), 3);
    assert!(!node.env.spool.join("state/last_push.json").exists());
    assert!(
        !node.env.spool.join("push.lock").exists(),
        "not even the lock file"
    );
    assert!(forge.requests().iter().all(|r| r.method == "GET"));

    // Not even a spool is created by a dry run.
    let fresh = Node::new(&forge);
    let out = fresh.push(&["--dry-run", "--json"]);
    out.exit(0);
    assert!(stdout(&out).contains("\"dry-run\""), "{}", stdout(&out));
    assert!(!fresh.env.spool.exists());
}

#[test]
fn max_records_bounds_each_commit_and_a_run_drains_oldest_hours_first() {
    let forge = forge();
    let node = Node::new(&forge);
    for r in &three() {
        node.record(r);
    }
    // One run drains the spool: the oldest hours' commit first, then the rest.
    let out = node.push(&["--max-records", "2", "--once"]);
    out.exit(0);
    assert_eq!(
        remote_keys(&forge, &[H16, H17]),
        ["job-1", "job-2", "job-3"]
    );
    assert_eq!(node.pending(), 0);
    let log = git(&forge, &["log", "--format=%s", "main"]);
    let subjects: Vec<&str> = log.lines().collect();
    assert_eq!(
        subjects[..2],
        [
            "usage: 1 records from node test-node in 1 file(s)",
            "usage: 2 records from node test-node in 1 file(s)"
        ],
        "{log}"
    );
}

/// `--max-seconds`: no new batch starts once the run has lasted that long;
/// what is left waits for the next run, and the run still exits 0.
#[test]
fn max_seconds_stops_the_drain_between_batches_and_the_next_run_goes_on() {
    let forge = forge();
    let node = Node::new(&forge);
    for r in &three() {
        node.record(r);
    }
    let out = node.push(&["--max-records", "2", "--max-seconds", "0", "--json"]);
    out.exit(0);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["pushed"].as_u64(), v["commits"].as_u64()),
        (Some(2), Some(1)),
        "{v}"
    );
    assert_eq!(v["pending_after"], 1, "{v}");
    assert!(stderr(&out).contains("--max-seconds 0"), "{}", stderr(&out));
    assert_eq!(remote_keys(&forge, &[H16, H17]), ["job-1", "job-2"]);
    node.push(&[]).exit(0);
    assert_eq!(
        remote_keys(&forge, &[H16, H17]),
        ["job-1", "job-2", "job-3"]
    );
    assert_eq!(node.pending(), 0);
}

#[test]
fn configuration_errors_exit_78_without_touching_the_forge() {
    let forge = forge();
    let node = Node::new(&forge);
    node.record(&three()[0]);
    let out = run(node.push_cmd().env_remove("HERO_USAGE_FORGEJO_URL"));
    out.exit(78);
    assert!(stderr(&out).contains("--forgejo-url"), "{}", stderr(&out));
    let out = run(node.push_cmd().env_remove("HERO_USAGE_FORGEJO_TOKEN_FILE"));
    out.exit(78);
    let out = run(node
        .push_cmd()
        .env("HERO_USAGE_FORGEJO_URL", "http://billing.example.org"));
    out.exit(78);
    assert!(stderr(&out).contains("https"), "{}", stderr(&out));
    let cfg = node.env.path("cfg.toml");
    std::fs::write(&cfg, "forgejo_ulr = \"x\"\n").unwrap();
    let out = run(node.push_cmd().env("HERO_USAGE_CONFIG", &cfg));
    out.exit(78);
    assert!(stderr(&out).contains("forgejo_ulr"), "{}", stderr(&out));
    let out = node.push(&["--max-records", "0"]);
    out.exit(64);
    // A window past a hundred years would overflow the date arithmetic
    // after the commit: refused before anything is done.
    for days in ["36501", "4294967295"] {
        let out = node.push(&["--retention-days", days]);
        out.exit_for(64, days);
        assert!(stderr(&out).contains("retention-days"), "{}", stderr(&out));
    }
    assert!(forge.requests().is_empty());
    assert_eq!(node.pending(), 1);
}

#[test]
fn past_retention_the_billing_repo_still_knows_the_key() {
    let forge = forge();
    let node = Node::new(&forge);
    let records = three();
    for r in &records {
        node.record(r);
    }
    let out = node.push(&["--retention-days", "0", "--json"]);
    out.exit(0);
    let summary: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(
        summary["pruned"], 3,
        "sent records past a zero-day window are pruned"
    );
    assert!(files_under(&node.env.spool.join("sent")).is_empty());

    // The ledger still knows the key; once it is lost too (a restored
    // spool), the same record is accepted again...
    std::fs::remove_dir_all(node.env.spool.join("ledger")).unwrap();
    node.record(&records[0]);
    assert_eq!(node.pending(), 1);
    // ...and the billing repository recognises it: no second copy, no commit.
    let out = node.push(&["--json"]);
    out.exit(0);
    let summary: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(summary["already_present"], 1);
    assert_eq!(summary["pushed"], 0);
    assert_eq!(commits(&forge), 1);
    assert_eq!(node.pending(), 0);
    assert_eq!(
        remote_keys(&forge, &[H16, H17]),
        ["job-1", "job-2", "job-3"]
    );
}

#[test]
fn every_race_answer_is_reread_and_retried() {
    for (status, message) in [
        (403, "PushRejected: another push won the race"),
        (
            422,
            "repository file already exists [path: nodes/test-node/x]",
        ),
        (422, "sha does not match [given: a, expected: b]"),
        (409, "sha does not match [given: a, expected: b]"),
        (500, ""),
    ] {
        let forge = forge();
        let node = Node::new(&forge);
        for r in &three() {
            node.record(r);
        }
        forge.inject(Fault::fail("POST", "/contents", status, message));
        let out = node.push(&["--json"]);
        out.exit_for(0, &format!("{status} {message}"));
        let summary: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        assert_eq!(summary["attempts"], 2, "{status} {message}");
        assert_eq!(commits(&forge), 1, "{status} {message}");
        assert_eq!(
            remote_keys(&forge, &[H16, H17]),
            ["job-1", "job-2", "job-3"]
        );
        assert_eq!(node.pending(), 0);
    }
}

/// A read-only billing repository (archived: writes answer 423; a mirror:
/// 403) takes no commit until someone changes it: 78 naming why, the
/// records pending. It was 70 ("a bug") for an archived one and 77 ("the
/// token needs write:repository") for a mirror.
#[test]
fn an_archived_or_mirror_repository_exits_78_and_keeps_the_records() {
    for what in ["archived", "mirror", "archived meanwhile"] {
        let forge = forge();
        let node = Node::new(&forge);
        node.record(&three()[0]);
        forge.create_repo(OWNER, REPO, false);
        match what {
            "archived meanwhile" => {
                forge.inject(Fault::fail("POST", "/contents", 423, "repo is archived"));
            }
            flag => {
                forge.make_read_only(OWNER, REPO, flag);
                let check = node.push(&["--check"]);
                check.exit_for(78, what);
                assert!(stdout(&check).contains(flag), "{}", stdout(&check));
            }
        }
        let out = node.push(&[]);
        out.exit_for(78, what);
        let said = what.split(' ').next().unwrap();
        assert!(stderr(&out).contains(said), "{what}: {}", stderr(&out));
        assert_eq!(node.pending(), 1, "{what}");
        assert_eq!(commits(&forge), 1, "{what}: only the README");
    }
}

/// A redirect is never followed (the token would go along, to another host
/// too): the base URL is not where the API answers, which every run would
/// meet, so 78 naming where it leads and the flag to fix. It was 70.
#[test]
fn a_redirect_is_not_followed_and_exits_78_naming_where_it_leads() {
    for (status, method, path) in [(301, "GET", "/repos/"), (307, "POST", "/contents")] {
        let forge = forge();
        let node = Node::new(&forge);
        node.record(&three()[0]);
        forge.create_repo(OWNER, REPO, false);
        let to = "https://elsewhere.example/api/v1/x";
        let raw = RawReply::new(status, "text/html", "<a>moved</a>").header("Location", to);
        forge.inject(Fault::new(Some(method), path, FaultAction::Reply(raw)));
        let out = node.push(&[]);
        out.exit_for(78, method);
        assert!(stderr(&out).contains(to), "{}", stderr(&out));
        assert!(stderr(&out).contains("--forgejo-url"), "{}", stderr(&out));
        assert_eq!(node.pending(), 1, "{method}");
        assert_eq!(commits(&forge), 1, "{method}: only the README");
    }
}

/// The next commit request is answered `status` with `Retry-After: after`
/// (a proxy's page, as a rate limit or maintenance sends it).
fn ask_to_wait(forge: &TestForge, status: u16, after: &str) {
    let raw = RawReply::new(status, "text/html", "<h1>slow down</h1>").header("Retry-After", after);
    forge.inject(Fault::new(
        Some("POST"),
        "/contents",
        FaultAction::Reply(raw),
    ));
}

/// The `Retry-After` of a 429 (a rate limit) or a 503 (maintenance) is the
/// least wait before the next try (the run's own waits are 5 to 50 ms in
/// tests), and a wait past the retry window (3 s in tests) gives up at
/// once: 75, one request. It was ignored.
#[test]
fn a_429_or_503_waits_as_long_as_its_retry_after_asks() {
    for (status, after, code, posts) in [
        (429, "1", 0, 2),
        (429, "10", 75, 1),
        (503, "1", 0, 2),
        (503, "10", 75, 1),
    ] {
        let forge = forge();
        let node = Node::new(&forge);
        node.record(&three()[0]);
        ask_to_wait(&forge, status, after);
        let started = std::time::Instant::now();
        let out = node.push(&[]);
        out.exit_for(code, &format!("{status} Retry-After {after}"));
        let sent = commit_requests(&forge);
        assert_eq!(sent, posts, "{status} Retry-After {after}");
        assert!(
            stderr(&out).contains(&format!("it asks to wait {after} s (Retry-After)")),
            "{}",
            stderr(&out)
        );
        if code == 0 {
            assert!(started.elapsed() >= Duration::from_secs(1));
            assert_eq!(node.pending(), 0);
        } else {
            assert_eq!(node.pending(), 1);
        }
    }
}

/// A `Retry-After` naming the largest wait a header can hold, a second or
/// more into the retries, gives up as any wait past the window does (75,
/// the record pending): adding it to the time already spent overflowed,
/// and the run panicked (70, "internal error (a bug)", not 75).
#[test]
fn the_largest_retry_after_gives_up_without_overflow() {
    let forge = forge();
    let node = Node::new(&forge);
    node.record(&three()[0]);
    for after in ["1", &u64::MAX.to_string()] {
        ask_to_wait(&forge, 429, after);
    }
    let out = node.push(&[]);
    out.exit(75);
    assert_eq!(commit_requests(&forge), 2);
    assert_eq!(node.pending(), 1);
}

/// Forgejo's own 413 is its quota, not a body limit: halving the request
/// cannot help. One request, 75 naming the quota, everything pending; it
/// was halved down to single files, each hour left pending with a message
/// to raise nginx's client_max_body_size.
#[test]
fn a_quota_413_is_not_a_body_limit() {
    let forge = forge();
    let node = Node::new(&forge);
    for r in &three() {
        node.record(r);
    }
    forge.inject(Fault::fail("POST", "/contents", 413, "quota exceeded").times(100));
    let out = node.push(&[]);
    out.exit(75);
    let posts = commit_requests(&forge);
    assert_eq!(posts, 1);
    assert!(
        stderr(&out).contains("quota is used up"),
        "{}",
        stderr(&out)
    );
    assert!(
        !stdout(&out).contains("client_max_body_size"),
        "{}",
        stdout(&out)
    );
    assert_eq!(node.pending(), 3);
}

/// A 401 that is not Forgejo's JSON is a proxy's: still 77 (the request
/// was refused), but saying so, not only "check the token file".
#[test]
fn a_proxys_401_says_it_is_not_forgejos() {
    let forge = forge();
    let node = Node::new(&forge);
    node.record(&three()[0]);
    let page = "<html><head><title>401 Authorization Required</title></head></html>";
    let raw = RawReply::new(401, "text/html", page).header("WWW-Authenticate", "Basic realm=\"x\"");
    forge.inject(Fault::new(Some("GET"), "/repos/", FaultAction::Reply(raw)));
    let out = node.push(&[]);
    out.exit(77);
    assert!(
        stderr(&out).contains("a proxy in front of the forge"),
        "{}",
        stderr(&out)
    );
    assert_eq!(node.pending(), 1);
}

#[test]
fn a_token_without_the_write_scope_exits_77_and_keeps_the_records() {
    let read_only = "read-only-token-0123456789abcdef";
    let forge = TestForge::start(ForgeOptions {
        read_only_token: Some(read_only.to_string()),
        ..ForgeOptions::default()
    });
    forge.create_repo(OWNER, REPO, false);
    let node = Node::new(&forge);
    node.record(&three()[0]);
    std::fs::write(&node.token_file, read_only).unwrap();
    let out = node.push(&["--json"]);
    out.exit(77);
    assert!(stderr(&out).contains("scope"), "{}", stderr(&out));
    assert!(!stderr(&out).contains(read_only));
    assert_eq!(commits(&forge), 1, "only the README commit");
    assert_eq!(node.pending(), 1);
    // Nothing was committed, so nothing is reported pushed (monitoring
    // reads this).
    let summary: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(summary["outcome"], "failed", "{summary}");
    assert_eq!(summary["pushed"], 0, "{summary}");
}

#[test]
fn a_remote_file_in_plain_toml_is_merged_and_rewritten_canonically() {
    let forge = forge();
    forge.create_repo(OWNER, REPO, false);
    let records = three();
    // An older tool wrote the hour without the `O:` line.
    let older = render_batch(&records[..1]);
    let plain = older.strip_prefix("O:\n").unwrap();
    forge.commit_files(
        OWNER,
        REPO,
        "main",
        &[(H16, Some(plain.as_bytes()))],
        "older tool",
    );
    let node = Node::new(&forge);
    node.record(&records[1]);
    let out = node.push(&[]);
    out.exit(0);
    assert_eq!(file(&forge, H16).unwrap(), render_batch(&records[..2]));
}

/// JSON lines for `hero_usage_record --stdin`: `n` records spread over
/// three hours of 2026-11-20.
fn stdin_lines(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"idempotency_key\":\"{prefix}-{i}\",\"user_sid\":\"0a1b\",\"amount_cents\":{i},\
                 \"resource_kind\":\"cpu_hours\",\"occurred_at\":\"2026-11-20 1{}:{:02}:00\"}}\n",
                4 + i % 3,
                i % 60
            )
        })
        .collect()
}

const H14_16: [&str; 3] = [
    "nodes/test-node/usage_2026-11-20-14.otoml",
    "nodes/test-node/usage_2026-11-20-15.otoml",
    H16,
];

#[test]
fn a_stdin_batch_is_pushed_exactly_once_across_runs_and_pruned_whole() {
    let forge = forge();
    let node = Node::new(&forge);
    let n = 2 * hero_usage::spool::CHUNK_RECORDS + 100; // three chunk files
    let o = crate::support::run_with_stdin(
        node.env.cmd("hero_usage_record").arg("--stdin"),
        stdin_lines("b", n).as_bytes(),
    );
    o.exit(0);
    assert_eq!(node.pending(), n);

    // Runs of at most 1000 records split the chunk files between runs.
    let mut runs = 0;
    while node.pending() > 0 {
        let out = node.push(&["--max-records", "1000", "--json"]);
        out.exit(0);
        runs += 1;
        assert!(runs <= 3, "three runs drain {n} records");
    }
    let mut want: Vec<String> = (0..n).map(|i| format!("b-{i}")).collect();
    want.sort();
    assert_eq!(
        remote_keys(&forge, &H14_16),
        want,
        "each record exactly once"
    );
    assert_eq!(files_under(&node.env.spool.join("sent")).len(), n);

    // Retention judges every entry of a chunk before removing any (they
    // share one inode, whose ctime a removal changes).
    let out = node.push(&["--retention-days", "0", "--json"]);
    out.exit(0);
    let summary: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(summary["pruned"], n as u64, "{summary}");
    assert!(files_under(&node.env.spool.join("sent")).is_empty());
}

#[test]
fn a_damaged_chunk_quarantines_each_of_its_records_and_the_rest_is_pushed() {
    let forge = forge();
    let node = Node::new(&forge);
    // Three drops, ingested as one group commit: one chunk file.
    for i in 0..3 {
        std::fs::create_dir_all(node.env.spool.join("incoming")).unwrap();
        std::fs::write(
            node.env.spool.join(format!("incoming/c-{i}.toml")),
            format!(
                "idempotency_key = \"c-{i}\"\nuser_sid = \"0a1b\"\namount_cents = 1\nresource_kind = \"gpu\"\n"
            ),
        )
        .unwrap();
    }
    let spool = hero_usage::spool::Spool::open(&node.env.spool).unwrap();
    let report = spool
        .ingest_incoming("test-node", chrono::Utc::now())
        .unwrap();
    assert_eq!(report.ingested, 3);
    let records = three();
    node.record(&records[0]);
    // Damage the chunk through one of its names: all three share the file.
    let chunk = files_under(&node.env.spool.join("pending"))
        .into_iter()
        .find(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .starts_with("[[records]]")
        })
        .expect("a chunk file");
    std::fs::write(&chunk, "[[records]]\namount_cents = \"lots\"\n").unwrap();

    // A dry run reports them and moves nothing.
    let out = node.push(&["--dry-run", "--json"]);
    out.exit(65);
    let summary: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(
        summary["quarantined"].as_array().unwrap().len(),
        3,
        "{summary}"
    );
    assert!(node.rejected().is_empty());
    assert_eq!(node.pending(), 4);

    // A run that quarantined anything pushes the rest, exits 65 (man 1
    // hero_usage_push, EXIT STATUS).
    let out = node.push(&["--json"]);
    out.exit(65);
    assert_eq!(remote_keys(&forge, &H14_16), ["job-1"]);
    assert_eq!(node.pending(), 0);
    let rejected = node.rejected();
    let reasons = crate::support::rejection_reasons(&node.env.spool);
    assert_eq!(rejected.len(), 6, "three records and their reasons");
    assert_eq!(reasons.len(), 3);
    for r in reasons {
        assert!(r.contains("damaged pending record"), "{r}");
    }
    // The quarantined files fail no later run.
    node.push(&[]).exit(0);
}

#[test]
fn a_push_that_finds_the_lock_held_reports_what_is_pending() {
    let forge = forge();
    let node = Node::new(&forge);
    for r in &three() {
        node.record(r);
    }
    let spool = hero_usage::spool::Spool::open(&node.env.spool).unwrap();
    let held = spool.try_lock_push().unwrap().expect("free");
    let out = node.push(&["--json"]);
    out.exit(0);
    let summary: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(summary["outcome"], "locked");
    assert_eq!(summary["pending_after"], 3, "{summary}");
    drop(held);
    assert!(forge.requests().is_empty());
}

#[test]
fn version_names_the_binary() {
    let env = TestEnv::new();
    let out = run(env.cmd("hero_usage_push").arg("--version"));
    out.exit(0);
    assert!(
        stdout(&out).starts_with("hero_usage_push "),
        "{}",
        stdout(&out)
    );
    assert!(!env.spool.exists(), "nothing created");
}

#[test]
fn a_leap_second_is_folded_into_its_hour_and_pushes() {
    let forge = forge();
    let node = Node::new(&forge);
    // Through the binary, as a caller writes it (the test's own `rec`
    // would parse and fold it first).
    let out = run(node.env.cmd("hero_usage_record").args([
        "--idempotency-key=leap",
        "--user-sid=0a1b",
        "--amount-cents=1",
        "--resource-kind=cpu_hours",
        "--occurred-at=2026-11-20 16:59:60",
    ]));
    out.exit(0);
    node.record(&rec("plain", "2026-11-20 16:10:00", 2));
    let out = node.push(&[]);
    out.exit(0);
    let text = file(&forge, H16).unwrap();
    assert!(
        text.contains("occurred_at = \"2026-11-20 16:59:59\""),
        "{text}"
    );
    assert_eq!(remote_keys(&forge, &[H16]), ["leap", "plain"]);
    // The file it wrote reads back: a later record of the hour merges.
    node.record(&rec("later", "2026-11-20 16:30:00", 3));
    node.push(&[]).exit(0);
    assert_eq!(remote_keys(&forge, &[H16]), ["later", "leap", "plain"]);
}

#[test]
fn a_conflicting_record_of_a_chunk_is_quarantined_alone() {
    let forge = forge();
    let first = Node::new(&forge);
    let lines = |amount: u64, keys: &[&str]| -> String {
        keys.iter()
            .map(|k| {
                format!(
                    "{{\"idempotency_key\":\"{k}\",\"user_sid\":\"0a1b\",\"amount_cents\":{amount},\
                     \"resource_kind\":\"gpu\",\"occurred_at\":\"2026-11-20 16:00:00\"}}\n"
                )
            })
            .collect()
    };
    let record = |node: &Node, input: String| {
        let o = crate::support::run_with_stdin(
            node.env.cmd("hero_usage_record").arg("--stdin"),
            input.as_bytes(),
        );
        o.exit(0);
    };
    record(&first, lines(1, &["q1", "q2"]));
    first.push(&[]).exit(0);
    // Another spool of the node (which takes the node over) reuses both
    // keys with another amount, in one chunk with a new record.
    let other = Node::new(&forge);
    record(&other, lines(2, &["q1", "q2", "q3"]));
    let out = other.push(&["--adopt-node"]);
    out.exit(65);
    assert_eq!(remote_keys(&forge, &[H16]), ["q1", "q2", "q3"]);
    for rec in rejected_records_alone(&other, 2) {
        assert_eq!(rec.amount_cents, 2);
    }
}

/// The records in `node`'s `rejected/` (exactly `n`), each a file of its
/// own record named after its key: never a chunk with its neighbours.
#[track_caller]
fn rejected_records_alone(node: &Node, n: usize) -> Vec<UsageRecord> {
    let rejected: Vec<_> = node
        .rejected()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    assert_eq!(rejected.len(), n, "{rejected:?}");
    rejected
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            let rec: UsageRecord = toml::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: one record alone: {e}\n{text}", p.display()));
            assert_eq!(
                p.file_name().unwrap().to_str().unwrap(),
                hero_usage::spool::file_name_for_key(&rec.idempotency_key)
            );
            rec
        })
        .collect()
}

#[test]
fn a_lost_race_is_sent_again_without_re_reading() {
    for (status, message) in [(500, ""), (403, "PushRejected: the ref moved")] {
        let forge = forge();
        let node = Node::new(&forge);
        for r in &three() {
            node.record(r);
        }
        forge.create_repo(OWNER, REPO, false);
        forge.inject(Fault::fail("POST", "/contents", status, message).times(2));
        let out = node.push(&[]);
        out.exit(0);
        assert_eq!(
            remote_keys(&forge, &[H16, H17]),
            ["job-1", "job-2", "job-3"]
        );
        let log = forge.requests();
        let reads = log
            .iter()
            .filter(|r| r.method == "GET" && r.path.contains("/contents/"))
            .count();
        assert_eq!(
            reads, 2,
            "one read per hour, none after a lost race: {log:?}"
        );
        let posts = log.iter().filter(|r| r.method == "POST").count();
        assert_eq!(posts, 3, "{log:?}");
        // The library prints no binary name but the binary's own.
        assert!(
            stderr(&out)
                .lines()
                .all(|l| l.starts_with("hero_usage_push: ")),
            "{}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("sending again"), "{}", stderr(&out));
    }
}

#[test]
fn invalid_branch_names_exit_78_before_any_request() {
    let forge = forge();
    let node = Node::new(&forge);
    node.record(&three()[0]);
    for bad in ["../main", "a\nb", "usage/{node}/..", "x\u{1b}y", "-x"] {
        let out = run(node.push_cmd().env("HERO_USAGE_BRANCH", bad));
        out.exit_for(78, &format!("{bad:?}"));
        assert!(stderr(&out).contains("branch"), "{}", stderr(&out));
        let errors = stderr(&out)
            .lines()
            .filter(|l| l.contains("error:"))
            .count();
        assert_eq!(
            errors,
            1,
            "one line, whatever the name holds: {}",
            stderr(&out)
        );
    }
    assert!(forge.requests().is_empty());
    assert_eq!(node.pending(), 1);
}

#[test]
fn json_prints_an_object_even_when_the_run_ends_early() {
    let forge = forge();
    let node = Node::new(&forge);
    node.record(&three()[0]);
    let out = run(node
        .push_cmd()
        .arg("--json")
        .env_remove("HERO_USAGE_FORGEJO_URL"));
    out.exit(78);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "failed", "{v}");
    assert_eq!(v["exit_code"], 78, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("--forgejo-url"),
        "{v}"
    );
    assert!(stderr(&out).contains("error:"), "{}", stderr(&out));
}

#[test]
fn a_failure_after_the_commit_still_prints_the_summary() {
    let forge = forge();
    let node = Node::new(&forge);
    for r in &three() {
        node.record(r);
    }
    // The outcome file cannot be written: a directory stands in its place.
    let outcome = node.env.spool.join("state/last_push.json");
    std::fs::create_dir_all(outcome.join("x")).unwrap();
    let out = node.push(&["--json"]);
    out.exit(73);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["outcome"], "pushed", "{v}");
    assert_eq!(v["pushed"], 3, "{v}");
    assert_eq!(v["exit_code"], 73, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("last_push.json"),
        "{v}"
    );
    assert_eq!(node.pending(), 0, "the commit happened: marked sent");
    assert_eq!(
        remote_keys(&forge, &[H16, H17]),
        ["job-1", "job-2", "job-3"]
    );
}

#[test]
fn splay_zero_does_not_wait_and_the_flags_are_accepted() {
    let forge = forge();
    let node = Node::new(&forge);
    node.record(&three()[0]);
    let started = std::time::Instant::now();
    let out = node.push(&[
        "--splay",
        "0",
        "--max-seconds",
        "60",
        "--max-request-bytes",
        "65536",
        "--retry-seconds",
        "5",
    ]);
    out.exit(0);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(node.pending(), 0);
}

/// A backlog over many hours drains in one run, in many batches, and each
/// record is read from the spool a bounded number of times: once by the
/// run's index of `pending/`, once by its batch, and the empty scan at the
/// end reads nothing (re-reading every pending record for every batch
/// read 15,000 entries here).
#[test]
fn a_backlog_over_many_hours_drains_in_one_run_reading_each_record_twice() {
    let forge = forge();
    let node = Node::new(&forge);
    let n = 240;
    let lines: String = (0..n)
        .map(|i| {
            format!(
                "{{\"idempotency_key\":\"m-{i}\",\"user_sid\":\"0a1b\",\"amount_cents\":{i},\
                 \"resource_kind\":\"cpu_hours\",\"occurred_at\":\"2026-11-20 {:02}:{:02}:00\"}}\n",
                i % 12,
                i % 60
            )
        })
        .collect();
    let o = crate::support::run_with_stdin(
        node.env.cmd("hero_usage_record").arg("--stdin"),
        lines.as_bytes(),
    );
    o.exit(0);
    let reads = node.env.path("reads");
    let out = run(node
        .push_cmd()
        .args(["--max-records", "10", "--json"])
        .env("HERO_USAGE_TEST_READS_FILE", &reads));
    out.exit(0);
    let summary: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(summary["pushed"], n as u64, "{summary}");
    assert!(summary["commits"].as_u64().unwrap() >= 24, "{summary}");
    assert_eq!(node.pending(), 0);
    let paths: Vec<String> = (0..12)
        .map(|h| format!("nodes/test-node/usage_2026-11-20-{h:02}.otoml"))
        .collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let mut want: Vec<String> = (0..n).map(|i| format!("m-{i}")).collect();
    want.sort();
    assert_eq!(remote_keys(&forge, &paths), want, "each record once");
    let reads: usize = std::fs::read_to_string(&reads).unwrap().parse().unwrap();
    assert_eq!(reads, 2 * n, "each record read twice");
}

/// The last link of a chunk holding several records is quarantined as a file
/// of its own record too (the spool decides by content, not by link count:
/// once a neighbour was quarantined, the chunk has one name left).
#[test]
fn the_last_name_of_a_chunk_is_quarantined_as_its_own_record() {
    use hero_usage::record::{Defaults, RecordInput};
    let forge = forge();
    let first = Node::new(&forge);
    let line = |k: &str, amount: u64| {
        format!(
            "{{\"idempotency_key\":\"{k}\",\"user_sid\":\"0a1b\",\"amount_cents\":{amount},\
             \"resource_kind\":\"gpu\",\"occurred_at\":\"2026-11-20 16:00:00\"}}"
        )
    };
    let o = crate::support::run_with_stdin(
        first.env.cmd("hero_usage_record").arg("--stdin"),
        format!("{}\n{}\n", line("c1", 1), line("c2", 1)).as_bytes(),
    );
    o.exit(0);
    first.push(&[]).exit(0);
    // Another spool of the node: both keys with another amount, in ONE chunk
    // (written through the library, so the chunking is certain).
    let other = Node::new(&forge);
    let spool = hero_usage::spool::Spool::open(&other.env.spool).unwrap();
    spool.bind_node(&other.env.node).unwrap();
    let defaults = Defaults {
        node: other.env.node.clone(),
        now: chrono::Utc::now(),
        occurred_at: None,
    };
    let items: Vec<_> = ["c1", "c2"]
        .iter()
        .map(|k| {
            RecordInput::from_json_text(&line(k, 2))
                .unwrap()
                .validate(&defaults)
                .unwrap()
        })
        .collect();
    spool.record_batch(&items).unwrap();
    let out = other.push(&[]);
    out.exit(65);
    rejected_records_alone(&other, 2);
}
