//! A kill -9 at every step (issue 16: "the kill -9 sweep of pruning and of a
//! multi-commit drain still loses and duplicates nothing"): debug builds
//! abort at the Nth crash point a run reaches (`HERO_USAGE_CRASH_AT=N`, no
//! destructors, no flush), for N = 1, 2, ... until a run gets through; after
//! each crash a clean run must heal: every record in the billing repository
//! exactly once, every key still known to the spool.

use crate::support::forge::{Node, OWNER, REPO, node_keys, start as forge};
use crate::support::{Run, files_under, run, run_with_stdin, stdout};
use hero_usage::spool::file_name_for_key;

/// `n` JSON lines, keys `<prefix>-<i>`, over `hours` hours of 2026-11-20.
fn lines(prefix: &str, n: usize, hours: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"idempotency_key\":\"{prefix}-{i}\",\"user_sid\":\"0a1b\",\"amount_cents\":{i},\
                 \"resource_kind\":\"cpu_hours\",\"occurred_at\":\"2026-11-20 {:02}:00:{:02}\"}}\n",
                i % hours,
                i % 60
            )
        })
        .collect()
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    let mut k: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
    k.sort();
    k
}

/// Run `push ARGS` aborting at crash point `at`; `false` when the run got
/// through without reaching it (the sweep is over).
fn crash_at(node: &Node, args: &[&str], at: u64) -> bool {
    let out = run(node
        .push_cmd()
        .args(args)
        .env("HERO_USAGE_CRASH_AT", at.to_string()));
    if out.status.code().is_some() {
        return false;
    }
    out.killed_for(&format!("step {at}"));
    true
}

#[test]
fn a_kill_at_every_step_of_pruning_forgets_no_key() {
    let forge = forge();
    let mut steps = 0;
    for at in 1.. {
        let name = format!("p{at}");
        let node = Node::named(&forge, &name, &format!("{OWNER}/{REPO}"));
        let text = lines(&name, 10, 3);
        run_with_stdin(
            node.env.cmd("hero_usage_record").arg("--stdin"),
            text.as_bytes(),
        )
        .exit(0);
        node.push(&[]).exit(0);
        // One sent record is damaged: its key must stay known too.
        let damaged = node
            .env
            .spool
            .join("sent")
            .join(file_name_for_key(&format!("{name}-3")));
        std::fs::write(&damaged, "not a record").unwrap();
        if !crash_at(&node, &["--retention-days", "0"], at) {
            break;
        }
        steps = at;
        let healed = node.push(&["--retention-days", "0"]);
        healed.exit_in(&[0, 65], &format!("step {at}"));
        let what = format!("step {at}");
        assert!(
            files_under(&node.env.spool.join("sent")).is_empty(),
            "{what}: pruned"
        );
        assert_eq!(node.pending(), 0, "{what}");
        // Every key is still known: a retry of each is a duplicate.
        let retry = run_with_stdin(
            node.env.cmd("hero_usage_record").arg("--stdin"),
            text.as_bytes(),
        );
        retry.exit_for(0, &what);
        assert_eq!(
            stdout(&retry).matches("duplicate ").count(),
            10,
            "{what}: {}",
            stdout(&retry)
        );
        assert_eq!(
            node_keys(&forge, &name),
            keys(&name, 10),
            "{what}: each once"
        );
    }
    assert!(steps >= 10, "the sweep reached {steps} steps");
}

#[test]
fn a_kill_at_every_step_of_a_multi_commit_drain_loses_and_duplicates_nothing() {
    let forge = forge();
    let mut steps = 0;
    for at in 1.. {
        let name = format!("d{at}");
        let node = Node::named(&forge, &name, &format!("{OWNER}/{REPO}"));
        let text = lines(&name, 12, 4);
        run_with_stdin(
            node.env.cmd("hero_usage_record").arg("--stdin"),
            text.as_bytes(),
        )
        .exit(0);
        // Batches of 4 records: three commits at least.
        if !crash_at(&node, &["--max-records", "4"], at) {
            break;
        }
        steps = at;
        let what = format!("step {at}");
        node.push(&["--max-records", "4"]).exit_for(0, &what);
        assert_eq!(node.pending(), 0, "{what}");
        assert_eq!(
            node_keys(&forge, &name),
            keys(&name, 12),
            "{what}: each once"
        );
        node.push(&[])
            .exit_for(0, &what)
            .stdout_has("nothing to push");
    }
    assert!(steps >= 15, "the sweep reached {steps} steps");
}
