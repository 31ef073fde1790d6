//! One node, one spool (issue 16, item 5; man 1 hero_usage_push, ONE NODE,
//! ONE SPOOL):
//! every commit names its spool in a `Hero-Usage-Spool:` trailer, and a
//! spool that would change an hour file another spool of its node wrote
//! last stops (78) until `--adopt-node` takes the node over.

use crate::support::forge::{Node, OWNER, REPO, file, git, rec, start as forge};
use crate::support::{Run, stderr};
use hero_usage::otoml::{parse_batch, render_batch};

const H16: &str = "nodes/test-node/usage_2026-11-20-16.otoml";

fn spool_id(node: &Node) -> String {
    std::fs::read_to_string(node.env.spool.join("state/spool_id"))
        .unwrap()
        .trim()
        .to_string()
}

/// The full message of the branch's last commit.
fn last_message(forge: &hero_usage_test_forge::TestForge) -> String {
    git(forge, &["log", "-1", "--format=%B", "main"])
}

fn keys(forge: &hero_usage_test_forge::TestForge) -> Vec<String> {
    parse_batch(&file(forge, H16).unwrap())
        .unwrap()
        .into_iter()
        .map(|r| r.idempotency_key)
        .collect()
}

/// GETs of single commits the forge answered.
fn commit_reads(forge: &hero_usage_test_forge::TestForge) -> usize {
    forge
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/git/commits/"))
        .count()
}

#[test]
fn a_second_spool_of_one_node_exits_78_until_it_adopts_the_node() {
    let forge = forge();
    let a = Node::new(&forge);
    a.record(&rec("a-1", "2026-11-20 16:04:05", 1));
    a.record(&rec("a-17", "2026-11-20 17:04:05", 1));
    a.push(&[]).exit(0);
    let id_a = spool_id(&a);
    assert_eq!(id_a.len(), 32, "{id_a}");
    let msg = last_message(&forge);
    assert!(
        msg.trim_end()
            .ends_with(&format!("\n\nHero-Usage-Spool: {id_a}")),
        "{msg:?}"
    );

    // A second spool as the same node (a cloned machine): refused, 78,
    // naming both ids, the host and the fix; nothing of it pushed.
    let b = Node::new(&forge);
    b.record(&rec("b-1", "2026-11-20 16:30:00", 2));
    let out = b.push(&[]);
    out.exit(78);
    let id_b = spool_id(&b);
    assert_ne!(id_a, id_b);
    let err = stderr(&out);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    for needle in [&id_a, &id_b, host.trim(), "--adopt-node", "MOVING A NODE"] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    assert_eq!(keys(&forge), ["a-1"]);
    assert_eq!(b.pending(), 1);
    // A dry run says the same.
    b.push(&["--dry-run"]).exit(78);

    // --adopt-node takes the node over, one extra GET for the hour.
    forge.clear_requests();
    b.push(&["--adopt-node"]).exit(0);
    assert_eq!(commit_reads(&forge), 1);
    assert_eq!(keys(&forge), ["a-1", "b-1"]);
    let msg = last_message(&forge);
    assert!(
        msg.trim_end().ends_with(&format!(
            "\n\nHero-Usage-Adopts: {id_a}\nHero-Usage-Spool: {id_b}"
        )),
        "{msg:?}"
    );
    // From then on the new spool pushes without it, to the other hours of
    // the old spool too, and the old one, started again, refuses.
    b.record(&rec("b-2", "2026-11-20 16:40:00", 3));
    b.record(&rec("b-17", "2026-11-20 17:40:00", 3));
    b.push(&[]).exit(0);
    let msg = last_message(&forge);
    assert!(!msg.contains("Hero-Usage-Adopts"), "{msg:?}");
    a.record(&rec("a-2", "2026-11-20 16:50:00", 4));
    a.push(&[]).exit(78).stderr_has(&id_b);
    assert_eq!(keys(&forge), ["a-1", "b-1", "b-2"]);
}

#[test]
fn commits_without_the_trailer_bind_nothing_and_reading_costs_one_get_per_commit() {
    let forge = forge();
    forge.create_repo(OWNER, REPO, false);
    // An older tool's commit of the hour: no trailer.
    let old = render_batch(&[rec("old-1", "2026-11-20 16:01:00", 1)]);
    forge.commit_files(
        OWNER,
        REPO,
        "main",
        &[(H16, Some(old.as_bytes()))],
        "usage: 1 records from node test-node in 1 file(s)",
    );
    let node = Node::new(&forge);
    node.record(&rec("new-1", "2026-11-20 16:02:00", 2));
    // Three more hours, written by this spool in one commit.
    for h in 17..20 {
        node.record(&rec(&format!("k{h}"), &format!("2026-11-20 {h}:00:00"), 3));
    }
    node.push(&[]).exit(0);
    assert_eq!(keys(&forge), ["old-1", "new-1"]);
    // Late records for the four hours: one commit wrote them last, read once.
    forge.clear_requests();
    for h in 16..20 {
        node.record(&rec(
            &format!("late{h}"),
            &format!("2026-11-20 {h}:30:00"),
            4,
        ));
    }
    node.push(&[]).exit(0);
    assert_eq!(commit_reads(&forge), 1);
}
