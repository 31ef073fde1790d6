//! A fleet on one billing repository (issue 10): many nodes pushing at the
//! same instant to a test forge whose commits race as Forgejo's do, large
//! backlogs, a proxy's body limit, and per-node branches. Retries use the
//! short test waits (`HERO_USAGE_TEST_RETRY_MS`), so nothing sleeps for long.

use crate::support::forge::{Node, OWNER, REPO, git, keys_on};
use crate::support::{Run, run, run_with_stdin, stderr, stdout};
use hero_usage_test_forge::{ForgeOptions, TestForge};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Output;

/// Waits for racing nodes: from up to 20 ms growing to at most 400 ms.
const FLEET_WAITS: &str = "20,400";

fn racing_forge(commit_ms: u64, race_403: bool) -> TestForge {
    TestForge::start(ForgeOptions {
        commit_ms,
        race_403,
        ..ForgeOptions::default()
    })
}

/// `n` JSON lines for `hero_usage_record --stdin`, keys `<prefix>-<i>`,
/// spread over `hours` hours of 2026-11-20 from 00:00.
fn lines(prefix: &str, n: usize, hours: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"idempotency_key\":\"{prefix}-{i}\",\"user_sid\":\"0a1b\",\"amount_cents\":{i},\
                 \"resource_kind\":\"cpu_hours\",\"description\":\"{:0>40}\",\
                 \"occurred_at\":\"2026-11-20 {:02}:{:02}:{:02}\"}}\n",
                i,
                i % hours,
                (i / 60) % 60,
                i % 60
            )
        })
        .collect()
}

fn record_lines(node: &Node, text: &str) {
    let o = run_with_stdin(
        node.env.cmd("hero_usage_record").arg("--stdin"),
        text.as_bytes(),
    );
    o.exit(0);
}

/// `n` nodes, each with `records` records over `hours` hours.
fn fleet(forge: &TestForge, n: usize, records: usize, hours: usize) -> Vec<Node> {
    (0..n)
        .map(|i| {
            let node = Node::named(forge, &format!("node-{i:02}"), &format!("{OWNER}/{REPO}"));
            record_lines(&node, &lines(&format!("n{i}"), records, hours));
            node
        })
        .collect()
}

/// Run every node's push at the same instant; their outputs in order.
fn push_all(nodes: &[Node], args: &[&str]) -> Vec<Output> {
    let children: Vec<_> = nodes
        .iter()
        .map(|n| {
            let mut c = n.push_cmd();
            c.env(hero_usage::push::TEST_WAITS_ENV, FLEET_WAITS)
                .args(args)
                .arg("--json")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            c.spawn().expect("spawn push")
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait push"))
        .collect()
}

fn summary(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(o), stderr(o)))
}

fn assert_fleet_landed(forge: &TestForge, nodes: &[Node], outs: &[Output], records: usize) {
    for (node, o) in nodes.iter().zip(outs) {
        o.exit_for(0, &node.env.node);
        assert_eq!(summary(o)["pushed"], records, "{}", stdout(o));
        assert_eq!(node.pending(), 0);
    }
    let keys = keys_on(forge, "main");
    assert_eq!(keys.len(), nodes.len());
    for (i, (_, mut k)) in keys.into_iter().enumerate() {
        k.sort();
        let mut want: Vec<String> = (0..records).map(|r| format!("n{i}-{r}")).collect();
        want.sort();
        assert_eq!(k, want, "every record once");
    }
}

/// 20 nodes (4 records over 2 hours each) pushing at the same instant to a
/// forge whose commits race, lost races answered as `race_403` says.
fn twenty_nodes_at_once(race_403: bool) {
    let forge = racing_forge(30, race_403);
    forge.create_repo(OWNER, REPO, false);
    let nodes = fleet(&forge, 20, 4, 2);
    let outs = push_all(&nodes, &[]);
    assert_fleet_landed(&forge, &nodes, &outs, 4);
    let stats = forge.stats();
    assert!(stats.lost_races > 0, "the forge raced: {stats:?}");
    assert_eq!(stats.commits, 20, "one commit per node");
}

#[test]
fn twenty_nodes_at_once_all_land_in_their_first_run() {
    twenty_nodes_at_once(false);
}

#[test]
fn twenty_nodes_at_once_all_land_in_their_first_run_when_races_are_403() {
    twenty_nodes_at_once(true);
}

#[test]
fn per_node_branches_never_race_and_hold_only_their_node() {
    let forge = racing_forge(30, false);
    let nodes = fleet(&forge, 8, 4, 3);
    // The first node finds the repository missing: it creates it and sets
    // up its default branch before its own branch (which must not become
    // the default). Then the rest push at the same instant.
    let first = run(nodes[0].push_cmd().args(["--branch", "usage/{node}"]));
    first.exit(0);
    forge.reset_stats();
    let mut outs = vec![first];
    outs.extend(push_all(&nodes[1..], &["--branch", "usage/{node}"]));
    for (node, o) in nodes.iter().zip(&outs) {
        o.exit_for(0, &node.env.node);
        assert_eq!(node.pending(), 0);
    }
    // The repository was empty: its default branch was set up first, and
    // holds no node's files.
    assert!(forge.head(OWNER, REPO, "main").is_some());
    let default = git(&forge, &["symbolic-ref", "HEAD"]);
    assert_eq!(default.trim(), "refs/heads/main");
    assert!(keys_on(&forge, "main").is_empty());
    for node in &nodes {
        let branch = format!("usage/{}", node.env.node);
        let keys = keys_on(&forge, &branch);
        assert_eq!(
            keys.keys().collect::<Vec<_>>(),
            [&node.env.node],
            "{branch}"
        );
        assert_eq!(keys[&node.env.node].len(), 4);
        let author = git(&forge, &["log", "-1", "--format=%an <%ae>", &branch]);
        assert_eq!(
            author.trim(),
            format!(
                "hero_usage_push on {0} <{0}@hero-usage.invalid>",
                node.env.node
            )
        );
    }
    assert_eq!(forge.stats().lost_races, 0, "{:?}", forge.stats());
    // A second round appends on the existing branches.
    let node = &nodes[0];
    record_lines(node, &lines("late", 2, 1));
    let o = run(node.push_cmd().args(["--branch", "usage/{node}"]));
    o.exit(0);
    let keys = keys_on(&forge, &format!("usage/{}", node.env.node));
    assert_eq!(keys[&node.env.node].len(), 6);
}

#[test]
fn a_backlog_larger_than_one_commit_drains_in_one_run() {
    let forge = racing_forge(0, false);
    let node = Node::named(&forge, "big", &format!("{OWNER}/{REPO}"));
    record_lines(&node, &lines("b", 500, 10));
    let o = node.push(&["--max-records", "120", "--json"]);
    o.exit(0);
    let v = summary(&o);
    assert_eq!(v["pushed"], 500, "{v}");
    assert!(v["commits"].as_u64().unwrap() >= 5, "{v}");
    assert_eq!(node.pending(), 0);
    assert_eq!(keys_on(&forge, "main")["big"].len(), 500);
}

#[test]
fn a_body_limit_shrinks_the_batch_and_the_run_drains() {
    let forge = TestForge::start(ForgeOptions {
        max_body_bytes: Some(16 * 1024),
        ..ForgeOptions::default()
    });
    let node = Node::named(&forge, "proxied", &format!("{OWNER}/{REPO}"));
    // 12 hour files of some 9 KiB of base64 each: one request of ~110 KiB
    // to begin with, 7 times the limit.
    record_lines(&node, &lines("p", 480, 12));
    let o = node.push(&["--json"]);
    o.exit(0);
    let v = summary(&o);
    assert_eq!(v["pushed"], 480, "{v}");
    assert!(stderr(&o).contains("413"), "{}", stderr(&o));
    // The run keeps the smaller size and cuts what it queued to it: a few
    // 413s while it halves down to the limit (three halvings from 110 KiB),
    // not one per request (12 of them at the final size). A body under
    // 256 KiB that the forge cuts off before the client reads its 413 is
    // retried as a network error first, so a loaded machine sees a few more.
    let too_large = forge.stats().too_large;
    assert!((1..=12).contains(&too_large), "{too_large} 413s");
    assert_eq!(node.pending(), 0);
    assert_eq!(keys_on(&forge, "main")["proxied"].len(), 480);
}

/// Behind a proxy that takes exactly `--max-request-bytes`, no request is
/// refused: the commit's options (message, author, branch) count too, not
/// only the files (they made a request of 1,566 bytes under a 1,500 limit).
#[test]
fn no_request_body_is_larger_than_max_request_bytes() {
    for limit in [1500u64, 2048, 3000, 4096] {
        let forge = TestForge::start(ForgeOptions {
            max_body_bytes: Some(limit),
            ..ForgeOptions::default()
        });
        let node = Node::named(&forge, "exact", &format!("{OWNER}/{REPO}"));
        record_lines(&node, &lines("e", 40, 20));
        let o = node.push(&["--max-request-bytes", &limit.to_string(), "--json"]);
        o.exit_for(0, &limit.to_string());
        assert_eq!(forge.stats().too_large, 0, "{limit}: {}", stderr(&o));
        let commits = summary(&o)["commits"].as_u64().unwrap();
        assert!(
            commits < 20 || limit < 2048,
            "{limit}: files share requests"
        );
        assert_eq!(keys_on(&forge, "main")["exact"].len(), 40);
    }
}

#[test]
fn a_file_larger_than_max_request_bytes_goes_alone() {
    let forge = racing_forge(0, false);
    let node = Node::named(&forge, "small", &format!("{OWNER}/{REPO}"));
    // Three hour files of some 4 KB each, each over the 1 KiB asked for.
    record_lines(&node, &lines("s", 60, 3));
    let o = node.push(&["--max-request-bytes", "1024", "--json"]);
    o.exit(0);
    assert_eq!(summary(&o)["commits"], 3, "{}", stdout(&o));
    let subjects = git(&forge, &["log", "--format=%s", "main"]);
    assert_eq!(
        subjects.lines().collect::<Vec<_>>(),
        ["usage: 20 records from node small in 1 file(s)"; 3],
        "one file a request"
    );
    assert_eq!(keys_on(&forge, "main")["small"].len(), 60);
}

#[test]
fn a_single_file_too_large_for_the_server_leaves_only_its_hour_pending() {
    let forge = TestForge::start(ForgeOptions {
        max_body_bytes: Some(16 * 1024),
        ..ForgeOptions::default()
    });
    let node = Node::named(&forge, "heavy", &format!("{OWNER}/{REPO}"));
    // 200 records in hour 00 (a file of some 40 KB), one in each of two others.
    record_lines(&node, &lines("h", 200, 1));
    let two = "{\"idempotency_key\":\"x1\",\"user_sid\":\"0a1b\",\"amount_cents\":1,\"resource_kind\":\"cpu_hours\",\"occurred_at\":\"2026-11-20 05:00:00\"}\n\
               {\"idempotency_key\":\"x2\",\"user_sid\":\"0a1b\",\"amount_cents\":1,\"resource_kind\":\"cpu_hours\",\"occurred_at\":\"2026-11-20 06:00:00\"}\n";
    record_lines(&node, two);
    let o = node.push(&["--json"]);
    o.exit(75);
    let v = summary(&o);
    assert_eq!(v["pushed"], 2, "{v}");
    assert_eq!(node.pending(), 200);
    let err = stderr(&o);
    assert!(err.contains("usage_2026-11-20-00.otoml"), "{err}");
    // It names the size the server must take (a file of some 40 KB: 1 MiB).
    assert!(err.contains("client_max_body_size 1m"), "{err}");
    let keys = keys_on(&forge, "main");
    assert_eq!(keys["heavy"], ["x1", "x2"]);
}

#[test]
fn a_node_branch_is_never_made_from_a_default_branch_with_node_files() {
    let forge = racing_forge(0, false);
    let node = Node::named(&forge, "mover", &format!("{OWNER}/{REPO}"));
    record_lines(&node, &lines("m", 2, 1));
    let o = node.push(&[]);
    o.exit(0);
    // Now per-node: creating usage/mover from main would copy nodes/.
    record_lines(&node, &lines("later", 1, 1));
    let o = node.push(&["--branch", "usage/{node}"]);
    o.exit(78);
    assert!(stderr(&o).contains("nodes/"), "{}", stderr(&o));
    assert_eq!(node.pending(), 1);
    assert!(forge.head(OWNER, REPO, "usage/mover").is_none());
}

/// A forge without the many-files endpoint (answering `status`), after
/// serving `after` many-files requests, behind a proxy's `body_limit`.
fn old_forge(status: u16, after: u64, body_limit: Option<u64>) -> TestForge {
    TestForge::start(ForgeOptions {
        no_multi_file: true,
        no_multi_file_status: status,
        no_multi_file_after: after,
        max_body_bytes: body_limit,
        ..ForgeOptions::default()
    })
}

/// The statuses of the many-files requests that were refused (404, 405).
fn many_files_refused(forge: &TestForge) -> Vec<u16> {
    forge
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/contents"))
        .filter(|r| [404, 405].contains(&r.status))
        .map(|r| r.status)
        .collect()
}

/// 600 records over `hours` hours pushed to `forge` with `args`: every
/// record in the repository exactly once, none left pending, and the next
/// push has nothing to push (issue 16, item 1: requests queued before the
/// fallback kept several files, only the first was sent, and all were
/// marked sent).
fn an_old_forge_gets_every_record_once(forge: &TestForge, hours: usize, args: &[&str]) {
    let node = Node::named(forge, "old", &format!("{OWNER}/{REPO}"));
    record_lines(&node, &lines("o", 600, hours));
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let o = node.push(&with_json);
    o.exit(0);
    assert_eq!(summary(&o)["pushed"], 600, "{}", stdout(&o));
    let keys = keys_on(forge, "main").remove("old").unwrap_or_default();
    let mut seen = BTreeMap::new();
    for k in &keys {
        *seen.entry(k.as_str()).or_insert(0) += 1;
    }
    let want: Vec<String> = (0..600).map(|i| format!("o-{i}")).collect();
    let missing = want
        .iter()
        .filter(|k| !seen.contains_key(k.as_str()))
        .count();
    let twice = seen.values().filter(|&&n| n > 1).count();
    assert_eq!(
        (keys.len(), missing, twice),
        (600, 0, 0),
        "every record exactly once: {}",
        stderr(&o)
    );
    assert_eq!(node.pending(), 0);
    let again = node.push(&["--json"]);
    again.exit(0);
    let v = summary(&again);
    assert_eq!(
        (v["outcome"].as_str(), v["pushed"].as_u64()),
        (Some("nothing-to-push"), Some(0)),
        "{v}"
    );
}

#[test]
fn a_forge_without_the_many_files_endpoint_gets_every_record_once_from_the_first_request() {
    let forge = old_forge(404, 0, None);
    an_old_forge_gets_every_record_once(&forge, 12, &["--max-request-bytes", "40000"]);
    assert_eq!(
        many_files_refused(&forge),
        [404],
        "one refusal, then one file a request"
    );
}

#[test]
fn a_forge_whose_many_files_endpoint_goes_missing_mid_run_gets_every_record_once() {
    let forge = old_forge(405, 2, None);
    an_old_forge_gets_every_record_once(&forge, 12, &["--max-request-bytes", "40000"]);
    assert_eq!(
        many_files_refused(&forge),
        [405],
        "one refusal, then one file a request"
    );
}

#[test]
fn a_forge_without_the_many_files_endpoint_behind_a_body_limit_gets_every_record_once() {
    // One request of 13 files (~200 KB) is refused (413) and halved: the
    // first half (7 files) goes, and is refused (404); the second half (6
    // files, within the new size) was queued with several files.
    let forge = old_forge(404, 0, Some(128 * 1024));
    an_old_forge_gets_every_record_once(&forge, 13, &[]);
    assert!(forge.stats().too_large >= 1, "{:?}", forge.stats());
}

/// Issue 16, item 6: a commit that landed but whose reply was cut by a TCP
/// reset was taken for a proxy's 413 ("raise client_max_body_size"), and
/// its records were reported "already present" (by the same run, or the
/// next). Only a reset before the whole body was sent can be a body limit;
/// this one is a lost reply: the run finds its records and reports them
/// pushed, with the commit.
#[test]
fn a_reset_after_the_commit_landed_is_a_lost_reply_not_a_body_limit() {
    let forge = racing_forge(0, false);
    let node = Node::named(&forge, "reset", &format!("{OWNER}/{REPO}"));
    // Two hour files, a request body of some 430 KB (over 256 KiB, where a
    // broken connection while sending is taken for a body limit).
    record_lines(&node, &lines("r", 1400, 2));
    forge.inject(hero_usage_test_forge::Fault::new(
        Some("POST"),
        "/contents",
        hero_usage_test_forge::FaultAction::ResetAfter,
    ));
    let o = node.push(&["--json"]);
    o.exit(0);
    let v = summary(&o);
    let err = stderr(&o);
    assert!(
        !err.contains("413") && !err.contains("client_max_body_size"),
        "{err}"
    );
    assert!(
        forge
            .requests()
            .iter()
            .any(|r| r.fault.as_deref() == Some("reset_after")),
        "the reset happened"
    );
    assert_eq!(
        (v["pushed"].as_u64(), v["already_present"].as_u64()),
        (Some(1400), Some(0)),
        "{v}"
    );
    let head = forge.head(OWNER, REPO, "main").unwrap();
    assert_eq!(v["commit"].as_str(), Some(head.as_str()), "{v}");
    assert_eq!(node.pending(), 0);
    assert_eq!(keys_on(&forge, "main")["reset"].len(), 1400);
    let again = summary(&node.push(&["--json"]));
    assert_eq!(
        (again["pushed"].as_u64(), again["already_present"].as_u64()),
        (Some(0), Some(0)),
        "{again}"
    );
}
