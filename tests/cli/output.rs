//! What a push says while and after it runs: the splay's wait, a failure's
//! error once, syslog priorities when stderr is the journal, progress on a
//! terminal; and the test forge process, killed, leaves nothing behind.

use crate::support::forge::{Node, OWNER, REPO, start};
use crate::support::{Run, bin, closed_port, record, run, stderr, stdout};
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

/// A node name whose `--splay 1` delay is among the shortest (a few ms).
fn quick_splay_node() -> String {
    (0..100)
        .map(|i| format!("splay-{i}"))
        .min_by_key(|n| hero_usage::push::splay_delay(n, 1))
        .unwrap()
}

#[test]
fn the_splay_says_how_long_it_waits_and_why_unless_quiet() {
    let forge = start();
    let node = Node::named(&forge, &quick_splay_node(), &format!("{OWNER}/{REPO}"));
    let out = node.push(&["--splay", "1"]);
    out.exit(0)
        .stderr_has("waiting 0.0 s before pushing (--splay 1: node splay-");
    let out = node.push(&["--splay", "1", "--quiet"]);
    out.exit(0);
    assert!(!stderr(&out).contains("waiting"), "{}", stderr(&out));
}

/// A node whose forge refuses connections: every push fails with 75.
fn unreachable_node() -> Node {
    let forge = start();
    let port = closed_port();
    let mut node = Node::new(&forge);
    node.url = format!("http://127.0.0.1:{port}");
    record(&node.env, "k1");
    node
}

#[test]
fn a_failed_push_prints_its_error_once() {
    let node = unreachable_node();
    let out = node.push(&["--retry-seconds", "0"]);
    out.exit(75);
    let both = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(both.matches("connection refused at").count(), 1, "{both}");
    out.stdout_has("push failed")
        .stdout_has("the error is on stderr")
        .stderr_has("hero_usage_push: error: forge unreachable");
}

#[test]
fn stderr_lines_carry_syslog_priorities_when_stderr_is_the_journal() {
    let node = unreachable_node();
    // stderr is a file; JOURNAL_STREAM names it (as systemd names the
    // journal's stream), or another one.
    let push = |name: &str, names_it: bool| {
        let log = node.env.path(name);
        let file = std::fs::File::create(&log).unwrap();
        let meta = file.metadata().unwrap();
        let stream = if names_it {
            format!("{}:{}", meta.dev(), meta.ino())
        } else {
            format!("{}:{}", meta.dev(), meta.ino() + 1)
        };
        let status = node
            .push_cmd()
            .args(["--retry-seconds", "0"])
            .env("JOURNAL_STREAM", stream)
            .stderr(Stdio::from(file))
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(75), "{status}");
        std::fs::read_to_string(&log).unwrap()
    };
    let text = push("journal", true);
    assert!(
        text.lines()
            .any(|l| l.starts_with("<3>hero_usage_push: error: forge unreachable")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("<4>hero_usage_push: warning: token file")),
        "{text}"
    );
    assert!(
        text.lines().all(|l| l.starts_with('<')),
        "every line has its priority: {text}"
    );
    // Another stream's variable (inherited, stderr redirected): no prefix.
    let text = push("not-journal", false);
    assert!(text.contains("hero_usage_push: error:"), "{text}");
    assert!(!text.lines().any(|l| l.starts_with('<')), "{text}");
}

#[test]
fn a_long_drain_shows_progress_on_a_terminal_only() {
    let forge = start();
    let node = Node::new(&forge);
    for k in ["p1", "p2", "p3"] {
        let at = format!("2026-11-2{} 10:00:00", &k[1..]);
        node.record(&crate::support::forge::rec(k, &at, 100));
    }
    // script(1) gives the push a terminal.
    let mut push = node.push_cmd();
    push.args(["--max-records", "1"]);
    let out = on_a_terminal(push);
    out.exit(0)
        .stdout_has("batch 1 done: 1 records pushed")
        .stdout_has("batch 3 done: 3 records pushed in 3 commit(s) so far");
    // Not on a terminal (a log): no progress lines.
    node.record(&crate::support::forge::rec("p4", "2026-11-24 10:00:00", 1));
    let out = node.push(&["--max-records", "1"]);
    out.exit(0);
    assert!(!stderr(&out).contains("batch"), "{}", stderr(&out));
}

#[test]
fn the_test_forge_process_leaves_no_scratch_directory_when_killed() {
    let forge_bin = bin("hero_usage_push")
        .parent()
        .unwrap()
        .join("hero_usage_test_forge");
    if !forge_bin.exists() {
        let built = Command::new(env!("CARGO"))
            .args(["build", "-p", "hero_usage_test_forge"])
            .status()
            .unwrap();
        assert!(built.success());
    }
    let env = crate::support::TestEnv::new();
    let scratch = env.path("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let token = env.path("token");
    std::fs::write(&token, "0123456789abcdef0123\n").unwrap();
    for signal in ["TERM", "INT"] {
        let mut child = Command::new(&forge_bin)
            .arg("--token-file")
            .arg(&token)
            .env("HERO_USAGE_TEST_TMPDIR", &scratch)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut url = String::new();
        use std::io::BufRead;
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut url)
            .unwrap();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 1);
        let killed = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = child.wait().unwrap();
        assert!(status.success(), "SIG{signal}: {status}");
        let left: Vec<_> = std::fs::read_dir(&scratch).unwrap().collect();
        assert!(left.is_empty(), "SIG{signal} left {left:?}");
    }
}

/// `command` run with a terminal (script(1)): its stdout and stderr, merged.
fn on_a_terminal(command: Command) -> std::process::Output {
    let mut c = Command::new("script");
    for (k, v) in command.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let words: Vec<String> = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|w| format!("'{}'", w.to_string_lossy().replace('\'', "'\\''")))
        .collect();
    run(c.args(["-qec", &words.join(" "), "/dev/null"]))
}

#[test]
fn a_long_audit_shows_progress_on_a_terminal_only() {
    let repo = crate::audit::Repo::new();
    for node in ["node-a", "node-b"] {
        let r = crate::audit::rec(node, &format!("{node}-1"), "0a1b", "2026-11-26 16:00:00", 5);
        repo.put(node, "2026-11-26-16", &[r]);
    }
    let mut audit = repo.env.cmd("hero_usage_audit");
    audit.arg("--git-dir").arg(&repo.dir);
    let out = on_a_terminal(audit);
    out.exit(0)
        .stdout_has("hero_usage_audit: node node-a: 1 hour file(s) read (")
        .stdout_has("of 2 nodes)")
        .stdout_has("hero_usage_audit: walking the history of main");
    let out = repo.audit(&[]);
    out.exit(0);
    assert!(
        !stderr(&out).contains("hour file(s) read"),
        "{}",
        stderr(&out)
    );
}
