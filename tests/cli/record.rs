//! `hero_usage_record` and the spool: validation, idempotency, concurrency,
//! the shell drop box, crash safety, modes, locking, man pages.

use crate::support::forge::{node_keys as remote_keys, push as push_to};
use crate::support::*;
use chrono::Utc;
use hero_usage::record::UsageRecord;
use hero_usage::spool::{PendingId, Spool, file_name_for_key};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const REC: &str = "hero_usage_record";

fn good_args() -> Vec<(&'static str, &'static str)> {
    vec![
        ("--idempotency-key", "job-42-2026-11-26T16"),
        ("--user-sid", "0a1b"),
        ("--amount-cents", "250"),
        ("--resource-kind", "cpu_hours"),
        ("--description", "4 vCPU for 1 h"),
        ("--occurred-at", "2026-11-26 16:04:05"),
    ]
}

fn record_cmd(env: &TestEnv, args: &[(&str, &str)]) -> Command {
    let mut c = env.cmd(REC);
    for (k, v) in args {
        c.arg(format!("{k}={v}"));
    }
    c
}

fn with(
    args: &[(&'static str, &'static str)],
    flag: &'static str,
    value: &'static str,
) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<_> = args.iter().copied().filter(|(k, _)| *k != flag).collect();
    out.push((flag, value));
    out
}

/// A chunk file: the records of one group commit, hard-linked under each
/// record's name (man 5 hero_usage_spool).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Chunk {
    records: Vec<UsageRecord>,
}

/// Record entries (pending and sent), parsed and checked: each is a single
/// record file or a chunk holding the record its name is the hash of.
fn records(spool: &Path) -> Vec<(PathBuf, UsageRecord)> {
    use std::os::unix::fs::MetadataExt;
    // Each file parsed once, however many names link to it, and indexed by
    // the entry name of each record (hashing each key once, not per entry).
    type ByName = std::collections::HashMap<String, Vec<UsageRecord>>;
    let mut parsed: std::collections::HashMap<u64, ByName> = Default::default();
    let mut out = Vec::new();
    for sub in ["pending", "sent"] {
        for p in files_under(&spool.join(sub)) {
            let name = p.file_name().unwrap().to_str().unwrap();
            let ino = std::fs::symlink_metadata(&p).unwrap().ino();
            let by_name = parsed.entry(ino).or_insert_with(|| {
                let text = std::fs::read_to_string(&p).unwrap();
                let all: Vec<UsageRecord> = if text.starts_with("[[records]]\n") {
                    toml::from_str::<Chunk>(&text)
                        .unwrap_or_else(|e| panic!("{} is not a complete chunk: {e}", p.display()))
                        .records
                } else {
                    vec![toml::from_str(&text).unwrap_or_else(|e| {
                        panic!("{} is not a complete record: {e}\n{text}", p.display())
                    })]
                };
                let mut by_name = ByName::new();
                for r in all {
                    by_name
                        .entry(file_name_for_key(&r.idempotency_key))
                        .or_default()
                        .push(r);
                }
                by_name
            });
            let mut candidates = by_name.get(name).cloned().unwrap_or_default();
            assert_eq!(
                candidates.len(),
                1,
                "{}: exactly one record whose key's hash is the name",
                p.display()
            );
            let rec = candidates.pop().unwrap();
            rec.check()
                .unwrap_or_else(|e| panic!("{} breaks rules: {e:?}", p.display()));
            out.push((p, rec));
        }
    }
    out
}

/// `hero_usage_record --stdin` started, with its input still open.
fn spawn_stdin(env: &TestEnv) -> (std::process::Child, std::process::ChildStdin) {
    let mut child = env
        .cmd(REC)
        .arg("--stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = child.stdin.take().unwrap();
    (child, input)
}

/// Every file in the spool that is not a lock file or the node name.
fn non_lock_files(spool: &Path) -> Vec<PathBuf> {
    files_under(spool)
        .into_iter()
        .filter(|p| {
            !p.ends_with("lock")
                && !p.ends_with("push.lock")
                && !p.ends_with("state/node")
                && !p.ends_with("state/spool_id")
        })
        .collect()
}

#[test]
fn records_and_prints_recorded() {
    let env = TestEnv::new();
    let o = run(&mut record_cmd(&env, &good_args()));
    o.exit(0);
    assert_eq!(stdout(&o), "recorded job-42-2026-11-26T16\n");
    let recs = records(&env.spool);
    assert_eq!(recs.len(), 1);
    let r = &recs[0].1;
    assert_eq!(r.node_id, "test-node");
    assert_eq!(r.amount_cents, 250);
    assert_eq!(r.description, "4 vCPU for 1 h");
    assert_eq!(r.occurred_at.to_string(), "2026-11-26 16:04:05");
    assert!(
        files_under(&env.spool.join("tmp")).is_empty(),
        "tmp/ left clean"
    );
}

#[test]
fn every_invalid_field_exits_65_names_it_and_writes_nothing() {
    let cases: [(&str, &str, &str); 12] = [
        ("--idempotency-key", "has space", "idempotency_key"),
        ("--idempotency-key", "", "idempotency_key"),
        ("--user-sid", "ABCD", "user_sid"),
        ("--user-sid", "abcdefg", "user_sid"),
        ("--amount-cents", "-1", "amount_cents"),
        ("--amount-cents", "1000000000001", "amount_cents"),
        ("--amount-cents", "2.5", "amount_cents"),
        ("--resource-kind", "CPU", "resource_kind"),
        ("--description", "tab\there", "description"),
        ("--occurred-at", "2999-01-01 00:00:00", "occurred_at"),
        ("--occurred-at", "yesterday", "occurred_at"),
        ("--node-id", ".hidden", "node_id"),
    ];
    for (flag, value, field) in cases {
        let env = TestEnv::new();
        let o = run(&mut record_cmd(&env, &with(&good_args(), flag, value)));
        let err = stderr(&o);
        o.exit_for(65, &format!("{flag}={value}: {err}"));
        assert!(err.contains(&format!("{field}:")), "{flag}={value}: {err}");
        assert!(err.starts_with("hero_usage_record: error: "), "{err}");
        assert_eq!(stdout(&o), "");
        assert!(
            non_lock_files(&env.spool).is_empty(),
            "{flag}: something was written"
        );
    }
    // A missing required flag is a bad command line (64); every problem is
    // named at once, the missing flags as flags.
    let env = TestEnv::new();
    let o = run(env
        .cmd(REC)
        .args(["--idempotency-key", "k", "--user-sid", "X"]));
    o.exit(64);
    let err = stderr(&o);
    assert!(
        err.contains("missing --amount-cents, --resource-kind (also: user_sid: "),
        "{err}"
    );
    // One usage error: not a line per missing field before it.
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains("invalid record"), "{err}");
    assert!(non_lock_files(&env.spool).is_empty());
}

#[test]
fn duplicate_exits_0_and_keeps_one_file() {
    let env = TestEnv::new();
    run(&mut record_cmd(&env, &good_args())).exit(0);
    let o = run(&mut record_cmd(&env, &good_args()));
    o.exit(0);
    assert_eq!(stdout(&o), "duplicate job-42-2026-11-26T16\n");
    assert_eq!(records(&env.spool).len(), 1);
    assert_eq!(
        non_lock_files(&env.spool).len(),
        1,
        "no tmp file left either"
    );
}

#[test]
fn conflict_exits_65_and_names_the_fields() {
    let env = TestEnv::new();
    run(&mut record_cmd(&env, &good_args())).exit(0);
    let changed = with(
        &with(&good_args(), "--amount-cents", "251"),
        "--user-sid",
        "0a1c",
    );
    let o = run(&mut record_cmd(&env, &changed));
    o.exit(65);
    let err = stderr(&o);
    assert!(
        err.contains("amount_cents") && err.contains("user_sid"),
        "{err}"
    );
    assert!(!err.contains("description"), "{err}");
    assert_eq!(stdout(&o), "");
    let recs = records(&env.spool);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].1.amount_cents, 250, "nothing changed");
}

#[test]
fn retry_with_defaulted_time_is_a_duplicate() {
    let env = TestEnv::new();
    let args: Vec<_> = good_args()
        .into_iter()
        .filter(|(k, _)| *k != "--occurred-at")
        .collect();
    run(&mut record_cmd(&env, &args)).exit(0);
    // The first call's "now" lies in the past (no sleep: the stored
    // record's defaulted time is moved back an hour instead).
    let stored = env
        .spool
        .join("pending")
        .join(file_name_for_key("job-42-2026-11-26T16"));
    let text = std::fs::read_to_string(&stored).unwrap();
    let at = text
        .lines()
        .find_map(|l| l.strip_prefix("occurred_at = \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap()
        .to_string();
    let earlier = chrono::NaiveDateTime::parse_from_str(&at, "%Y-%m-%d %H:%M:%S").unwrap()
        - chrono::Duration::hours(1);
    let earlier = earlier.format("%Y-%m-%d %H:%M:%S").to_string();
    std::fs::write(&stored, text.replace(&at, &earlier)).unwrap();
    let o = run(&mut record_cmd(&env, &args));
    o.exit(0);
    assert_eq!(stdout(&o), "duplicate job-42-2026-11-26T16\n");
    // With an explicit, different time it is a conflict on occurred_at.
    let o = run(&mut record_cmd(
        &env,
        &with(&args, "--occurred-at", "2020-01-01 00:00:00"),
    ));
    o.exit(65);
    assert!(stderr(&o).contains("occurred_at"));
}

#[test]
fn usage_errors_exit_64_and_help_works() {
    let env = TestEnv::new();
    let o = run(env.cmd(REC).arg("--no-such-flag"));
    o.exit(64);
    assert!(
        stderr(&o).starts_with("hero_usage_record: error:"),
        "{}",
        stderr(&o)
    );
    let o = run(env.cmd(REC).args(["--stdin", "--user-sid", "0a1b"]));
    o.exit_for(64, "--stdin with field flags");
    let o = run(&mut env.cmd(REC));
    o.exit_for(64, "no fields at all");
    let o = run(env.cmd(REC).arg("--help"));
    o.exit(0);
    assert!(stdout(&o).contains("--idempotency-key"));
    let o = run(env.cmd(REC).arg("--version"));
    o.exit(0);
    assert!(stdout(&o).starts_with("hero_usage_record "));
    assert!(!env.spool.exists(), "nothing created");
}

#[test]
fn eight_concurrent_writers_one_file_per_key() {
    let env = TestEnv::new();
    let procs = 8;
    let mut children = Vec::new();
    for p in 0..procs {
        let mut input = String::new();
        for i in 0..500 {
            // Half the keys are shared by all processes (identical content).
            let key = if i % 2 == 0 {
                format!("shared-{i}")
            } else {
                format!("p{p}-{i}")
            };
            input.push_str(&format!(
                "{{\"idempotency_key\":\"{key}\",\"user_sid\":\"0a1b\",\"amount_cents\":{i},\
                 \"resource_kind\":\"cpu_hours\",\"occurred_at\":\"2026-11-26 16:{:02}:00\"}}\n",
                i % 60
            ));
        }
        let (child, mut stdin) = spawn_stdin(&env);
        std::thread::spawn(move || {
            use std::io::Write;
            stdin.write_all(input.as_bytes()).unwrap();
        });
        children.push(child);
    }
    let mut recorded = 0;
    let mut duplicate = 0;
    for child in children {
        let o = child.wait_with_output().unwrap();
        o.exit(0);
        for line in stdout(&o).lines() {
            if line.starts_with("recorded ") {
                recorded += 1;
            } else if line.starts_with("duplicate ") {
                duplicate += 1;
            } else {
                panic!("unexpected line {line}");
            }
        }
    }
    let unique = 250 + procs * 250;
    assert_eq!(recorded, unique, "each unique key recorded exactly once");
    assert_eq!(duplicate, procs * 500 - unique);
    let recs = records(&env.spool);
    assert_eq!(recs.len(), unique);
    let mut keys: Vec<_> = recs
        .iter()
        .map(|(_, r)| r.idempotency_key.clone())
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), unique);
    assert!(files_under(&env.spool.join("tmp")).is_empty());
}

#[test]
fn stdin_mixes_valid_duplicate_and_invalid_lines() {
    let env = TestEnv::new();
    let line = |k: &str, sid: &str, amount: &str| {
        format!(
            "{{\"idempotency_key\":\"{k}\",\"user_sid\":\"{sid}\",\"amount_cents\":{amount},\"resource_kind\":\"gpu\"}}\n"
        )
    };
    let input = [
        line("a", "0a1b", "1"),
        line("a", "0a1b", "1"),     // 2: duplicate of line 1
        "{not json\n".to_string(),  // 3
        line("b", "BAD", "2"),      // 4: invalid user_sid
        "\n".to_string(),           // 5: blank, skipped
        line("c", "0a1b", "3"),     // 6
        line("a", "0a1b", "9"),     // 7: conflict
        "[1,2]\n".to_string(),      // 8: not an object
        line("d", "0a1b", "\"x\""), // 9: amount not a number
    ]
    .concat();
    let o = run_with_stdin(env.cmd(REC).arg("--stdin"), input.as_bytes());
    o.exit(65);
    assert_eq!(stdout(&o), "recorded a\nduplicate a\nrecorded c\n");
    let err = stderr(&o);
    for (n, what) in [
        (3, "JSON"),
        (4, "user_sid"),
        (7, "amount_cents"),
        (8, "object"),
        (9, "amount_cents"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("line {n}: ")) && l.contains(what)),
            "line {n} ({what}) not reported: {err}"
        );
    }
    assert!(!err.contains("line 1:") && !err.contains("line 2:") && !err.contains("line 5:"));
    assert_eq!(records(&env.spool).len(), 2);
}

/// The shell drop example of man 5 hero_usage_spool, as `sh` code.
fn man_page_drop_example() -> String {
    let page = std::fs::read_to_string(repo_root().join("man/hero_usage_spool.5")).unwrap();
    let start = page.find(".\\\" drop-example-begin").expect("begin marker");
    let end = page.find(".\\\" drop-example-end").expect("end marker");
    page[start..end]
        .lines()
        .filter(|l| !l.starts_with('.'))
        .map(|l| {
            l.replace("\\-", "-")
                .replace("\\e", "\\")
                .replace("\\(dq", "\"")
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn shell_drop_from_the_man_page_is_ingested() {
    let env = TestEnv::new();
    let spool = Spool::open(&env.spool).unwrap();
    let script = man_page_drop_example();
    assert!(
        script.contains("mktemp") && script.contains("incoming"),
        "{script}"
    );
    let o = run(Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("SPOOL", &env.spool));
    o.exit_for(0, &script);
    assert_eq!(files_under(&env.spool.join("incoming")).len(), 1);
    let report = spool.ingest_incoming("test-node", Utc::now()).unwrap();
    assert_eq!((report.ingested, report.duplicates), (1, 0), "{report:?}");
    assert!(report.quarantined.is_empty());
    assert!(files_under(&env.spool.join("incoming")).is_empty());
    let recs = records(&env.spool);
    assert_eq!(recs.len(), 1);
    let r = &recs[0].1;
    assert_eq!(r.idempotency_key, "job-42-2026-11-26T16");
    assert_eq!(r.node_id, "test-node", "node_id defaults to the node name");
    // occurred_at defaulted to the drop's mtime: just now.
    let age = Utc::now().naive_utc() - r.occurred_at.0;
    assert!(age.num_seconds().abs() < 60, "{}", r.occurred_at);
    // The same drop again is a duplicate and is removed.
    let o = run(Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("SPOOL", &env.spool));
    o.exit(0);
    let report = spool.ingest_incoming("test-node", Utc::now()).unwrap();
    assert_eq!((report.ingested, report.duplicates), (0, 1));
    assert!(files_under(&env.spool.join("incoming")).is_empty());
    // And hero_usage_record sees the key as taken.
    let o = run(&mut record_cmd(
        &env,
        &with(&good_args(), "--amount-cents", "1"),
    ));
    o.exit(65);
}

#[test]
fn malformed_and_invalid_drops_are_quarantined_with_reasons() {
    let env = TestEnv::new();
    let spool = Spool::open(&env.spool).unwrap();
    let inc = env.spool.join("incoming");
    std::fs::write(
        inc.join("broken.toml"),
        "idempotency_key = \"x\nuser_sid = 1",
    )
    .unwrap();
    std::fs::write(
        inc.join("bad-sid.toml"),
        "idempotency_key = \"k1\"\nuser_sid = \"TOOLONGSID\"\namount_cents = 1\nresource_kind = \"cpu\"\n",
    )
    .unwrap();
    std::fs::write(inc.join(".hidden.toml"), "ignored").unwrap();
    std::fs::write(inc.join("notes.txt"), "ignored").unwrap();
    // A file of the same name already in rejected/ is not clobbered.
    std::fs::write(env.spool.join("rejected/broken.toml"), "earlier").unwrap();
    let report = spool.ingest_incoming("test-node", Utc::now()).unwrap();
    assert_eq!(report.ingested, 0);
    let mut q = report.quarantined.clone();
    q.sort();
    assert_eq!(q.len(), 2, "{q:?}");
    assert_eq!(q[0].0, "bad-sid.toml");
    assert!(q[0].1.contains("user_sid"), "{}", q[0].1);
    assert_eq!(q[1].0, "broken.toml");
    assert!(q[1].1.contains("TOML"), "{}", q[1].1);
    let rej = env.spool.join("rejected");
    assert_eq!(
        std::fs::read_to_string(rej.join("broken.toml")).unwrap(),
        "earlier"
    );
    assert!(
        std::fs::read_to_string(rej.join("broken.toml.1.reason"))
            .unwrap()
            .contains("TOML")
    );
    assert!(rej.join("broken.toml.1").exists());
    let reason = std::fs::read_to_string(rej.join("bad-sid.toml.reason")).unwrap();
    assert!(
        reason.contains("user_sid:") && reason.contains("SmartID"),
        "{reason}"
    );
    assert!(
        inc.join(".hidden.toml").exists() && inc.join("notes.txt").exists(),
        "ignored names stay"
    );
    assert!(records(&env.spool).is_empty());
    // Quarantined files do not come back.
    let again = spool.ingest_incoming("test-node", Utc::now()).unwrap();
    assert!(again.quarantined.is_empty());
    assert_eq!(spool.counts().unwrap().rejected, 3);
}

#[test]
fn symlink_drop_is_quarantined_without_reading_its_target() {
    let env = TestEnv::new();
    let spool = Spool::open(&env.spool).unwrap();
    let target = env.path("target.toml");
    let valid = "idempotency_key = \"via-link\"\nuser_sid = \"0a1b\"\namount_cents = 1\nresource_kind = \"cpu\"\n";
    std::fs::write(&target, valid).unwrap();
    std::os::unix::fs::symlink(&target, env.spool.join("incoming/link.toml")).unwrap();
    let report = spool.ingest_incoming("test-node", Utc::now()).unwrap();
    assert_eq!(
        report.ingested, 0,
        "a valid target would have been ingested had it been read"
    );
    assert_eq!(report.quarantined.len(), 1);
    assert!(report.quarantined[0].1.contains("symbolic link"));
    let moved = env.spool.join("rejected/link.toml");
    assert!(
        std::fs::symlink_metadata(&moved)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the link itself moved"
    );
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        valid,
        "target untouched"
    );
    assert!(records(&env.spool).is_empty());
}

#[test]
fn symlinked_spool_directory_is_refused() {
    // Each part of the spool, the public ones too: none is followed.
    for part in ["pending", "tmp", "incoming", "lock"] {
        let env = TestEnv::new();
        let elsewhere = env.path("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::fs::create_dir_all(&env.spool).unwrap();
        std::os::unix::fs::symlink(&elsewhere, env.spool.join(part)).unwrap();
        let o = run(&mut record_cmd(&env, &good_args()));
        o.exit_for(73, part);
        assert!(stderr(&o).contains("symbolic link"), "{}", stderr(&o));
        assert!(files_under(&elsewhere).is_empty(), "{part}");
    }
}

const FAILPOINTS: [&str; 5] = [
    "record-after-tmp-write",
    "record-after-fsync",
    "record-after-link",
    "record-after-unlink-tmp",
    "record-after-dir-fsync",
];

#[test]
fn crash_at_every_step_leaves_no_record_or_a_complete_one() {
    for (stdin, fp) in FAILPOINTS.iter().flat_map(|fp| [(false, *fp), (true, *fp)]) {
        let env = TestEnv::new();
        let mut c = record_cmd(&env, &good_args());
        if stdin {
            c = env.cmd(REC);
            c.arg("--stdin");
        }
        c.env("HERO_USAGE_FAILPOINT", fp);
        // With --stdin, three records: one chunk file linked three times.
        let lines = ["job-42-2026-11-26T16", "other-1", "other-2"].map(|key| {
            format!(
                "{{\"idempotency_key\":\"{key}\",\"user_sid\":\"0a1b\",\"amount_cents\":250,\
                 \"resource_kind\":\"cpu_hours\",\"description\":\"4 vCPU for 1 h\",\"occurred_at\":\"2026-11-26 16:04:05\"}}\n"
            )
        });
        let input = if stdin { lines.concat() } else { String::new() };
        let o = run_with_stdin(&mut c, input.as_bytes());
        o.killed_for(fp);
        assert!(
            !stdout(&o).contains("recorded"),
            "{fp}: no success claimed before the end"
        );
        let recs = records(&env.spool); // panics on a partial record
        assert!(recs.len() <= if stdin { 3 } else { 1 }, "{fp}");
        for (_, r) in &recs {
            assert_eq!(r.amount_cents, 250, "{fp}");
            assert_eq!(r.occurred_at.to_string(), "2026-11-26 16:04:05");
        }
        if stdin {
            // The same batch again: what survived is a duplicate, the rest
            // is recorded, nothing is lost or doubled.
            let o = run_with_stdin(env.cmd(REC).arg("--stdin"), lines.concat().as_bytes());
            o.exit_for(0, fp);
            let out = stdout(&o);
            assert_eq!(out.matches("duplicate ").count(), recs.len(), "{fp}: {out}");
            assert_eq!(out.matches("recorded ").count(), 3 - recs.len(), "{fp}");
            assert_eq!(records(&env.spool).len(), 3, "{fp}");
        }
        let o = run(&mut record_cmd(&env, &good_args()));
        o.exit_for(0, fp);
        let want = if recs.is_empty() && !stdin {
            "recorded"
        } else {
            "duplicate"
        };
        assert_eq!(
            stdout(&o),
            format!("{want} job-42-2026-11-26T16\n"),
            "{fp} stdin={stdin}"
        );
        assert_eq!(records(&env.spool).len(), if stdin { 3 } else { 1 }, "{fp}");
        // A different record under the key is still a conflict.
        let o = run(&mut record_cmd(
            &env,
            &with(&good_args(), "--amount-cents", "1"),
        ));
        o.exit_for(65, fp);
    }
}

#[test]
fn tmp_files_are_aged_by_ctime_so_a_backdated_drop_is_not_lost() {
    // A script may `touch -d` its file in tmp/ (to set occurred_at) before
    // its `mv`: by mtime it looks two hours old, yet it was written just now.
    let env = TestEnv::new();
    let spool = Spool::open(&env.spool).unwrap();
    let backdated = env.spool.join("tmp/tmp.backdated");
    std::fs::write(&backdated, "a shell drop being written").unwrap();
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&backdated)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    spool.ingest_incoming("test-node", Utc::now()).unwrap();
    assert!(backdated.exists(), "a fresh file with an old mtime is kept");
}

#[test]
fn modes_are_0700_for_dirs_and_0600_for_files() {
    let env = TestEnv::new();
    run(&mut record_cmd(&env, &good_args())).exit(0);
    let spool = Spool::open(&env.spool).unwrap();
    drop(spool.try_lock_push().unwrap());
    spool.write_state("outcome.json", b"{}").unwrap();
    // A drop written with the writer's own modes is quarantined as 0600/0700.
    let loose = env.spool.join("incoming/loose.toml");
    std::fs::write(&loose, "not a record").unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let loose_dir = env.spool.join("incoming/dir.toml");
    std::fs::create_dir(&loose_dir).unwrap();
    std::fs::set_permissions(&loose_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let report = spool.ingest_incoming("test-node", Utc::now()).unwrap();
    assert_eq!(report.quarantined.len(), 2, "{:?}", report.quarantined);
    let mut dirs = 0;
    for e in walkdir::WalkDir::new(&env.spool) {
        let e = e.unwrap();
        let mode = e.metadata().unwrap().permissions().mode() & 0o777;
        if e.file_type().is_dir() {
            dirs += 1;
            assert_eq!(mode, 0o700, "{}", e.path().display());
        } else {
            assert_eq!(mode, 0o600, "{}", e.path().display());
        }
    }
    assert_eq!(
        dirs, 8,
        "root + tmp incoming pending sent rejected state + the bad drop"
    );
    for f in ["lock", "push.lock"] {
        assert!(env.spool.join(f).is_file(), "{f}");
    }
}

/// A spool belongs to the user who made it: a writer run as another user,
/// root included (`sudo hero_usage_record`, `sudo hero_usage_push`), exits
/// 73 naming the owner and writes nothing. Root's files there (mode 0600)
/// were unreadable to the owner, and one of them in pending/ stopped all of
/// the owner's pushes.
#[test]
fn a_writer_refuses_a_spool_another_user_owns_and_writes_nothing() {
    if my_uid() != 0 {
        eprintln!("skipped: needs root to give the spool to another user");
        return;
    }
    let env = TestEnv::new();
    run(&mut record_cmd(&env, &good_args())).exit(0);
    let chown = run(Command::new("chown")
        .arg("-R")
        .arg("65534:65534")
        .arg(&env.spool));
    assert!(chown.status.success(), "{}", stderr(&chown));
    let forge = crate::support::forge::start();
    let k2 = with(&good_args(), "--idempotency-key", "k2");
    // --check exits as a push by this user would: it names the owner too.
    for out in [
        run(&mut record_cmd(&env, &k2)),
        push_to(&env, &forge, &["--retention-days", "0"]),
        push_to(&env, &forge, &["--check"]),
    ] {
        out.exit(73);
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            said.contains("belongs to user ") && said.contains("sudo -u "),
            "{said}"
        );
    }
    for e in walkdir::WalkDir::new(&env.spool) {
        use std::os::unix::fs::MetadataExt;
        let e = e.unwrap();
        assert_eq!(e.metadata().unwrap().uid(), 65534, "{}", e.path().display());
    }
    assert_eq!(files_under(&env.spool.join("pending")).len(), 1);
    // An owner the user database does not know (a bind mount's): sudo
    // takes it as '#UID' (`sudo -u 4242` would be an unknown user).
    let chown = run(Command::new("chown").arg("4242").arg(&env.spool));
    assert!(chown.status.success(), "{}", stderr(&chown));
    let out = run(&mut record_cmd(&env, &k2));
    out.exit(73);
    assert!(
        stderr(&out).contains("sudo -u '#4242' ..."),
        "{}",
        stderr(&out)
    );
    // A spool root made (a run with sudo before its owner's first): the
    // owner is told to take it back, not to run as root.
    let mut rec = unprivileged(&record_cmd(&env, &k2), env.dir.path());
    let chown = run(Command::new("chown").arg("0:0").arg(&env.spool));
    assert!(chown.status.success(), "{}", stderr(&chown));
    let out = run(&mut rec);
    out.exit(73);
    let shown = env.spool.display();
    assert!(
        stderr(&out).contains(&format!("sudo chown -R nobody {shown}")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn sent_records_still_detect_duplicates_and_conflicts() {
    let env = TestEnv::new();
    run(&mut record_cmd(&env, &good_args())).exit(0);
    let spool = Spool::open(&env.spool).unwrap();
    let load = pending_as_the_push_reads_it(&spool);
    assert!(load.damaged.is_empty());
    let load = load.hours;
    assert_eq!(spool.pending_count().unwrap(), 1);
    assert_eq!(load.keys().next().unwrap().to_string(), "2026-11-26-16");
    let (ids, records): (Vec<PendingId>, Vec<_>) = load.into_values().flatten().unzip();
    assert_eq!(ids, vec![PendingId::for_key("job-42-2026-11-26T16")]);
    assert_eq!(records[0].amount_cents, 250);
    spool.mark_sent(&ids).unwrap();
    let c = spool.counts().unwrap();
    assert_eq!((c.pending, c.sent), (0, 1));
    let o = run(&mut record_cmd(&env, &good_args()));
    assert_eq!(stdout(&o), "duplicate job-42-2026-11-26T16\n");
    let o = run(&mut record_cmd(
        &env,
        &with(&good_args(), "--resource-kind", "gpu"),
    ));
    o.exit(65);
    assert!(stderr(&o).contains("resource_kind"));
    assert!(files_under(&env.spool.join("pending")).is_empty());
    // Pruning by the time it was marked sent.
    assert_eq!(
        spool
            .prune_sent(Utc::now() - chrono::Duration::hours(1), None)
            .unwrap()
            .pruned,
        0
    );
    assert_eq!(
        spool
            .prune_sent(Utc::now() + chrono::Duration::seconds(5), None)
            .unwrap()
            .pruned,
        1
    );
    // Pruned, the key is still known through the ledger.
    assert_eq!(
        stdout(&run(&mut record_cmd(&env, &good_args()))),
        "duplicate job-42-2026-11-26T16\n"
    );
    let o = run(&mut record_cmd(
        &env,
        &with(&good_args(), "--resource-kind", "gpu"),
    ));
    o.exit(65);
    assert!(stderr(&o).contains("resource_kind"), "{}", stderr(&o));
}

#[test]
fn push_lock_is_exclusive_and_quarantine_pending_moves_with_reason() {
    let env = TestEnv::new();
    run(&mut record_cmd(&env, &good_args())).exit(0);
    let spool = Spool::open(&env.spool).unwrap();
    let held = spool.try_lock_push().unwrap().expect("free");
    assert!(
        spool.try_lock_push().unwrap().is_none(),
        "second push sees the lock"
    );
    drop(held);
    assert!(spool.try_lock_push().unwrap().is_some());
    let id = PendingId::for_key("job-42-2026-11-26T16");
    spool
        .quarantine_pending(
            &id,
            None,
            "amount_cents differs from the billing repository",
        )
        .unwrap();
    let reason =
        std::fs::read_to_string(env.spool.join("rejected").join(format!("{id}.reason"))).unwrap();
    assert!(reason.contains("amount_cents differs"));
    assert_eq!(spool.counts().unwrap().pending, 0);
}

#[test]
fn writers_lock_interoperates_with_flock_1() {
    let env = TestEnv::new();
    let spool = Spool::open(&env.spool).unwrap();
    // The holder's last act under the lock is to write a marker: a record
    // linked into pending/ after the release changed its inode (ctime) after
    // the marker's. (Whether the holder has exited yet is no proof: the
    // kernel drops the lock before the process becomes a zombie, so on a
    // busy machine the record may finish first.)
    let marker = env.path("released");
    let script = format!("sleep 0.5; : > '{}'", marker.display());
    let mut holder = hold_lock_with_flock(&spool, &["sh", "-c", &script]);
    let o = run(&mut record_cmd(&env, &good_args()));
    o.exit(0);
    assert_eq!(stdout(&o), "recorded job-42-2026-11-26T16\n");
    let ctime = |p: &Path| {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(p).unwrap();
        (m.ctime(), m.ctime_nsec())
    };
    assert!(marker.exists(), "recorded while flock(1) held the lock");
    let written = records(&env.spool);
    assert_eq!(written.len(), 1);
    assert!(
        ctime(&written[0].0) >= ctime(&marker),
        "the record is older than the lock's release"
    );
    holder.wait().unwrap();
}

#[test]
fn lock_held_too_long_is_a_temporary_failure() {
    let env = TestEnv::new();
    let spool = Spool::open(&env.spool).unwrap();
    // Held until its input closes: no sleeping process outlives the test.
    let mut holder = hold_lock_with_flock(&spool, &["cat"]);
    // --stdin too, with its input never closed: the failure ends the run
    // without waiting for the end of the input. The wait is shortened from
    // 10 s (a debug-build test hook) so that the test does not sleep.
    const WAIT: (&str, &str) = ("HERO_USAGE_TEST_LOCK_WAIT_MS", "300");
    let mut batch = env.cmd(REC);
    let mut batch = batch
        .env(WAIT.0, WAIT.1)
        .arg("--stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut open_stdin = batch.stdin.take().unwrap();
    std::io::Write::write_all(
        &mut open_stdin,
        b"{\"idempotency_key\":\"s-1\",\"user_sid\":\"0a1b\",\"amount_cents\":1,\"resource_kind\":\"gpu\"}\n",
    )
    .unwrap();
    let started = Instant::now();
    let o = run(record_cmd(&env, &good_args()).env(WAIT.0, WAIT.1));
    o.exit(75);
    assert!(stderr(&o).contains("lock"), "{}", stderr(&o));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the wait was shortened"
    );
    let o = batch.wait_with_output().unwrap();
    o.exit(75);
    assert_eq!(stdout(&o), "", "nothing claimed");
    drop(open_stdin);
    assert!(records(&env.spool).is_empty());
    assert!(
        files_under(&env.spool.join("tmp")).is_empty(),
        "tmp file removed"
    );
    drop(holder.stdin.take());
    holder.wait().unwrap();
}

#[test]
fn man_pages_render_without_warnings() {
    let dir = repo_root().join("man");
    let mut pages: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| ["1", "5", "7"].contains(&e.to_str().unwrap()))
        })
        .collect();
    pages.sort();
    for name in ["hero_usage_record.1", "hero_usage_spool.5", "hero_usage.7"] {
        assert!(pages.contains(&dir.join(name)), "{name} missing");
    }
    for p in pages {
        let o = Command::new("groff")
            .args(["-man", "-ww", "-z"])
            .arg(&p)
            .output()
            .expect("groff installed (.ci/run installs it)");
        assert!(o.status.success(), "{}", p.display());
        assert_eq!(stderr(&o), "", "{} has warnings", p.display());
        assert_eq!(stdout(&o), "");
    }
}

#[test]
fn stdin_batch_is_one_fsynced_chunk_file_linked_under_each_key() {
    use std::os::unix::fs::MetadataExt;
    let env = TestEnv::new();
    let n = hero_usage::spool::CHUNK_RECORDS + 5; // two chunks
    let mut input: String = (0..n)
        .map(|i| {
            format!(
                "{{\"idempotency_key\":\"k-{i}\",\"user_sid\":\"0a1b\",\"amount_cents\":{i},\"resource_kind\":\"gpu\"}}\n"
            )
        })
        .collect();
    // A repeat inside the batch is a duplicate of its first line.
    input.push_str("{\"idempotency_key\":\"k-3\",\"user_sid\":\"0a1b\",\"amount_cents\":3,\"resource_kind\":\"gpu\"}\n");
    let o = run_with_stdin(env.cmd(REC).arg("--stdin"), input.as_bytes());
    o.exit(0);
    assert_eq!(stdout(&o).matches("recorded ").count(), n);
    assert!(stdout(&o).ends_with("duplicate k-3\n"), "{}", stdout(&o));

    let recs = records(&env.spool); // each name holds its own record
    assert_eq!(recs.len(), n);
    let mut files: std::collections::BTreeMap<u64, u64> = Default::default();
    for (p, _) in &recs {
        let m = std::fs::symlink_metadata(p).unwrap();
        assert!(m.file_type().is_file(), "a hard link, never a symlink");
        files.insert(m.ino(), m.nlink());
    }
    // How lines group into commits depends on how fast they arrive; each
    // commit is at most one chunk file, shared by its records.
    let links: Vec<u64> = files.into_values().collect();
    assert_eq!(links.iter().sum::<u64>(), n as u64);
    assert!(
        links
            .iter()
            .all(|&l| l <= hero_usage::spool::CHUNK_RECORDS as u64)
    );
    assert!(links.len() < n / 4, "records share files: {links:?}");
    assert!(files_under(&env.spool.join("tmp")).is_empty());

    // A record inside a chunk is found by a single call like any other.
    let one = |amount: &str| {
        run(env.cmd(REC).args([
            "--idempotency-key=k-7",
            "--user-sid=0a1b",
            &format!("--amount-cents={amount}"),
            "--resource-kind=gpu",
        ]))
    };
    let o = one("7");
    o.exit(0);
    assert_eq!(stdout(&o), "duplicate k-7\n");
    let o = one("8");
    o.exit(65);
    assert!(stderr(&o).contains("amount_cents"), "{}", stderr(&o));
}

/// Validated records for the library's own batch API.
fn validated(keys: impl Iterator<Item = String>) -> Vec<hero_usage::record::Validated> {
    let defaults = hero_usage::record::Defaults {
        node: "test-node".into(),
        now: Utc::now(),
        occurred_at: None,
    };
    keys.map(|k| {
        let j = serde_json::json!({"idempotency_key": k, "user_sid": "0a1b",
            "amount_cents": 1, "resource_kind": "gpu"});
        hero_usage::record::RecordInput::from_json_text(&j.to_string())
            .unwrap()
            .validate(&defaults)
            .unwrap()
    })
    .collect()
}

#[test]
fn a_group_commit_writes_one_chunk_file_per_1024_new_records() {
    use std::os::unix::fs::MetadataExt;
    let env = TestEnv::new();
    let spool = Spool::open(&env.spool).unwrap();
    // Three known keys first: a batch never links a known name.
    spool
        .record_batch(&validated((0..3).map(|i| format!("k-{i}"))))
        .unwrap();
    let n = hero_usage::spool::CHUNK_RECORDS + 8;
    let outcomes = spool
        .record_batch(&validated((0..n).map(|i| format!("k-{i}"))))
        .unwrap();
    let recorded = outcomes
        .iter()
        .filter(|o| **o == hero_usage::spool::RecordOutcome::Recorded)
        .count();
    assert_eq!(recorded, n - 3);
    let mut files: std::collections::BTreeMap<u64, u64> = Default::default();
    for (p, _) in records(&env.spool) {
        let m = std::fs::symlink_metadata(&p).unwrap();
        files.insert(m.ino(), m.nlink());
    }
    let mut links: Vec<u64> = files.into_values().collect();
    links.sort();
    // The first batch; then a full chunk (whose three known records it
    // holds but no name links to) and the rest.
    let full = hero_usage::spool::CHUNK_RECORDS as u64;
    assert_eq!(links, [3, 8, full - 3]);
}

#[test]
fn stdin_records_each_line_as_it_comes_without_waiting_for_more() {
    use std::io::{BufRead, Write};
    let env = TestEnv::new();
    let (mut child, mut input) = spawn_stdin(&env);
    let (tx, rx) = std::sync::mpsc::channel();
    let output = std::io::BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in output.lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    for key in ["live-1", "live-2"] {
        writeln!(
            input,
            "{{\"idempotency_key\":\"{key}\",\"user_sid\":\"0a1b\",\"amount_cents\":1,\"resource_kind\":\"gpu\"}}"
        )
        .unwrap();
        input.flush().unwrap();
        // Recorded (durably) while the input is still open.
        let got = rx.recv_timeout(Duration::from_secs(30)).expect("a reply");
        assert_eq!(got, format!("recorded {key}"));
        assert!(
            records(&env.spool)
                .iter()
                .any(|(_, r)| r.idempotency_key == key)
        );
    }
    drop(input);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn amounts_are_plain_numbers_and_each_field_is_given_once() {
    let env = TestEnv::new();
    let input = [
        // 1: a quoted amount (a drop or a script would bill what it meant?)
        r#"{"idempotency_key":"q1","user_sid":"0a1b","amount_cents":"250","resource_kind":"gpu"}"#,
        // 2: a field twice: which one was meant cannot be guessed
        r#"{"idempotency_key":"q2","user_sid":"0a1b","amount_cents":1,"amount_cents":2,"resource_kind":"gpu"}"#,
        // 3: whole but beyond 64 bits: out of range, not "fractional"
        r#"{"idempotency_key":"q3","user_sid":"0a1b","amount_cents":100000000000000000000000,"resource_kind":"gpu"}"#,
        // 4: an exponent
        r#"{"idempotency_key":"q4","user_sid":"0a1b","amount_cents":1e2,"resource_kind":"gpu"}"#,
        r#"{"idempotency_key":"ok","user_sid":"0a1b","amount_cents":5,"resource_kind":"gpu"}"#,
    ]
    .map(|l| format!("{l}\n"))
    .concat();
    let o = run_with_stdin(env.cmd(REC).arg("--stdin"), input.as_bytes());
    o.exit(65);
    assert_eq!(stdout(&o), "recorded ok\n");
    let err = stderr(&o);
    for (n, what) in [
        (
            1,
            "amount_cents: must be a whole number of cents from 0 to 1000000000000, not a string",
        ),
        (2, "field `amount_cents` is given twice"),
        (
            3,
            "amount_cents: must be a whole number of cents from 0 to 1000000000000; it is larger",
        ),
        (4, "not a number with a fraction or an exponent"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("line {n}: ")) && l.contains(what)),
            "line {n}: {what}\n{err}"
        );
    }
    // The flag takes digits only: no sign, no spaces.
    for bad in ["+5", " 5", "5 ", "-0", ""] {
        let o = run(&mut record_cmd(
            &env,
            &with(&good_args(), "--amount-cents", bad),
        ));
        o.exit_for(65, &format!("{bad:?}"));
        assert!(stderr(&o).contains("amount_cents"), "{}", stderr(&o));
    }
    assert_eq!(records(&env.spool).len(), 1);
    // A drop with a quoted amount is quarantined, not billed.
    std::fs::write(
        env.spool.join("incoming/q.toml"),
        "idempotency_key = \"d1\"\nuser_sid = \"0a1b\"\namount_cents = \"5\"\nresource_kind = \"gpu\"\n",
    )
    .unwrap();
    let spool = Spool::open(&env.spool).unwrap();
    let report = spool.ingest_incoming("test-node", Utc::now()).unwrap();
    assert_eq!(report.quarantined.len(), 1);
    assert!(
        report.quarantined[0].1.contains("amount_cents"),
        "{:?}",
        report.quarantined
    );
}

#[test]
fn occurred_at_outside_2000_to_now_plus_5_min_is_refused_naming_it() {
    let env = TestEnv::new();
    for bad in [
        "0000-01-01T00:30:00+01:00",
        "1999-12-31 23:59:59",
        "2000-01-01T00:59:59+01:00",
    ] {
        let o = run(&mut record_cmd(
            &env,
            &with(&good_args(), "--occurred-at", bad),
        ));
        o.exit(65);
        assert!(stderr(&o).contains("occurred_at"), "{bad}: {}", stderr(&o));
    }
    let line = r#"{"idempotency_key":"k1","user_sid":"0a1b","amount_cents":1,"resource_kind":"cpu","occurred_at":"0000-01-01T00:30:00+01:00"}"#;
    let o = run_with_stdin(env.cmd(REC).arg("--stdin"), format!("{line}\n").as_bytes());
    o.exit(65);
    assert!(stderr(&o).contains("line 1: occurred_at"), "{}", stderr(&o));
    assert!(records(&env.spool).is_empty());
    let o = run(&mut record_cmd(
        &env,
        &with(&good_args(), "--occurred-at", "2000-01-01 00:00:00"),
    ));
    o.exit(0);
}

fn json_line(key: &str, at: &str, amount: u64) -> String {
    format!(
        r#"{{"idempotency_key":"{key}","user_sid":"0a1b","amount_cents":{amount},"resource_kind":"cpu","occurred_at":"{at}"}}"#
    )
}

#[test]
fn one_damaged_table_of_a_chunk_quarantines_only_its_own_entry() {
    let forge = hero_usage_test_forge::TestForge::start(Default::default());
    let env = TestEnv::new();
    let at = "2026-11-20 16:04:05";
    let lines: String = ["a", "b", "c"]
        .iter()
        .map(|k| json_line(k, at, 7) + "\n")
        .collect();
    run_with_stdin(env.cmd(REC).arg("--stdin"), lines.as_bytes()).exit(0);
    // Damage the table of `b` only, in the chunk all three share.
    let entry = env.spool.join("pending").join(file_name_for_key("b"));
    let text = std::fs::read_to_string(&entry).unwrap();
    let torn = text.replacen(
        "amount_cents = 7\ndescription = \"\"\nidempotency_key = \"b\"",
        "amount_cents = \"7",
        1,
    );
    assert_ne!(text, torn);
    std::fs::write(&entry, torn).unwrap(); // in place: every link sees it
    let o = push_to(&env, &forge, &[]);
    o.exit(65);
    assert_eq!(remote_keys(&forge, "test-node"), ["a", "c"]);
    let rejected = files_under(&env.spool.join("rejected"));
    assert_eq!(rejected.len(), 2, "{rejected:?}"); // the entry and its reason
    assert!(files_under(&env.spool.join("pending")).is_empty());
}

#[test]
fn a_spool_belongs_to_one_node_a_renamed_node_exits_78_naming_both() {
    use hero_usage_test_forge::{Fault, FaultAction};
    let forge = hero_usage_test_forge::TestForge::start(Default::default());
    let mut env = TestEnv::new();
    env.node = "nodeA".into();
    let line = json_line("r1", "2026-11-20 16:04:05", 7) + "\n";
    run_with_stdin(env.cmd(REC).arg("--stdin"), line.as_bytes()).exit(0);
    assert_eq!(
        std::fs::read_to_string(env.spool.join("state/node")).unwrap(),
        "nodeA\n"
    );
    // The commit lands, its reply is lost, and the forge is then down.
    forge.create_repo("lhumina_code", "billing", false);
    forge.inject(Fault::new(
        Some("GET"),
        "/contents/",
        FaultAction::Delay(Duration::ZERO),
    ));
    forge.inject(Fault::new(
        Some("POST"),
        "/contents",
        FaultAction::DropAfter,
    ));
    forge.inject(Fault::new(Some("GET"), "/contents/", FaultAction::DropBefore).times(100));
    push_to(&env, &forge, &["--retry-seconds", "1"]).exit(75);
    forge.clear_faults();

    env.node = "nodeB".into();
    for o in [
        push_to(&env, &forge, &[]),
        push_to(&env, &forge, &["--dry-run"]),
        run(&mut record_cmd(
            &env,
            &with(&good_args(), "--idempotency-key", "r2"),
        )),
        run_with_stdin(env.cmd(REC).arg("--stdin"), line.as_bytes()),
    ] {
        o.exit(78);
        let err = stderr(&o);
        assert!(err.contains("`nodeA`") && err.contains("`nodeB`"), "{err}");
    }
    // The shim refuses to start with the other name.
    let o = run(env
        .cmd("hero_usage_shim")
        .env("HERO_ONBOARDING_ADMIN_SECRET", "a-long-enough-admin-secret")
        .args(["--listen", "127.0.0.1:0"]));
    o.exit(78);
    assert!(stderr(&o).contains("`nodeA`"), "{}", stderr(&o));
    assert_eq!(remote_keys(&forge, "nodeB"), Vec::<String>::new());
    assert_eq!(remote_keys(&forge, "nodeA"), ["r1"]);
    assert_eq!(records(&env.spool).len(), 1, "nothing recorded under nodeB");

    // The old name still works, and heals the lost reply without a repeat.
    env.node = "nodeA".into();
    push_to(&env, &forge, &[]).exit(0);
    assert_eq!(remote_keys(&forge, "nodeA"), ["r1"]);
}

#[test]
fn read_only_users_do_not_bind_the_spool() {
    let env = TestEnv::new();
    run(&mut record_cmd(&env, &good_args())).exit(0);
    std::fs::remove_file(env.spool.join("state/node")).unwrap();
    run(env.cmd("hero_usage_status").arg("--json")).exit(0);
    let o = run(env
        .cmd("hero_usage_push")
        .arg("--dry-run")
        .env("HERO_USAGE_FORGEJO_URL", "http://127.0.0.1:9")
        .env("HERO_USAGE_FORGEJO_TOKEN", "0123456789abcdef"));
    assert!(!env.spool.join("state/node").exists(), "{}", stderr(&o));
}

#[test]
fn a_pushed_key_is_known_for_ever_after_its_record_was_pruned() {
    let forge = hero_usage_test_forge::TestForge::start(Default::default());
    let env = TestEnv::new();
    let h = (Utc::now() - chrono::Duration::hours(2))
        .format("%Y-%m-%d %H:10:00")
        .to_string();
    let r1 = |amount: &'static str, at: Option<&str>| {
        let mut c = env.cmd(REC);
        c.args([
            "--idempotency-key",
            "r1",
            "--user-sid",
            "0a1b",
            "--resource-kind",
            "cpu",
        ])
        .args(["--amount-cents", amount]);
        if let Some(at) = at {
            c.args(["--occurred-at", at]);
        }
        run(&mut c)
    };
    r1("5", Some(&h)).exit(0);
    push_to(&env, &forge, &["--retention-days", "0"]).exit(0);
    push_to(&env, &forge, &["--retention-days", "0"]).exit(0);
    assert!(files_under(&env.spool.join("sent")).is_empty(), "pruned");
    let o = r1("5", None);
    o.exit(0);
    assert_eq!(stdout(&o), "duplicate r1\n");
    let o = r1("6", None);
    o.exit(65);
    assert!(stderr(&o).contains("amount_cents"), "{}", stderr(&o));
    let o = r1("5", Some("2026-01-01 00:00:00"));
    o.exit(65);
    assert!(stderr(&o).contains("occurred_at"), "{}", stderr(&o));
    // The same through --stdin, and nothing new to push.
    let line = format!(
        r#"{{"idempotency_key":"r1","user_sid":"0a1b","amount_cents":5,"resource_kind":"cpu","occurred_at":"{h}"}}"#
    );
    let o = run_with_stdin(env.cmd(REC).arg("--stdin"), format!("{line}\n").as_bytes());
    assert_eq!(stdout(&o), "duplicate r1\n");
    push_to(&env, &forge, &[]).exit(0);
    assert_eq!(remote_keys(&forge, "test-node"), ["r1"]);
    // The same through a drop (its time is the file's: compared without
    // it), and a drop that differs is a conflict, quarantined naming it.
    let drop_r1 = |name: &str, amount: u32| {
        let body = format!(
            "idempotency_key = \"r1\"\nuser_sid = \"0a1b\"\namount_cents = {amount}\n\
             resource_kind = \"cpu\"\n"
        );
        std::fs::write(env.spool.join("incoming").join(name), body).unwrap();
    };
    drop_r1("same.toml", 5);
    push_to(&env, &forge, &[]).exit(0);
    assert!(files_under(&env.spool.join("incoming")).is_empty());
    assert!(files_under(&env.spool.join("pending")).is_empty());
    drop_r1("other.toml", 6);
    push_to(&env, &forge, &[]).exit(65);
    let reasons = rejection_reasons(&env.spool);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("amount_cents"), "{reasons:?}");
    assert_eq!(remote_keys(&forge, "test-node"), ["r1"]);
    // --ledger-days bounds it: a key sent today stays for 0 days' horizon.
    push_to(&env, &forge, &["--ledger-days", "0"]).exit(0);
    assert_eq!(stdout(&r1("5", None)), "duplicate r1\n");
}

mod round_trip {
    //! Whatever validation accepts reads back unchanged everywhere: spool
    //! write → spool read → OTOML render → OTOML parse (man 7
    //! hero_usage, USAGE RECORDS).
    use super::*;
    use chrono::{DateTime, TimeZone};
    use hero_usage::record::{Defaults, RawValue, RecordInput};
    use proptest::prelude::*;

    /// An instant in the accepted range, as one of the accepted input forms.
    fn time_text(now: DateTime<Utc>) -> impl Strategy<Value = String> {
        let earliest = Utc
            .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
            .unwrap()
            .timestamp();
        let latest = now.timestamp() + 300;
        let instant = prop_oneof![
            Just(earliest),
            Just(latest),
            earliest..=latest,
            (earliest..=latest).prop_map(|t| t - t.rem_euclid(60) + 59), // :59, for leap seconds
            // Outside the range (validation must refuse): year 0 and before,
            // and the far future.
            (-62_167_219_200i64 - 86_400..earliest),
            (-62_167_219_200i64 - 86_400..-62_167_219_200),
            (latest + 1..253_402_300_799),
        ];
        let offset = prop_oneof![
            Just(0),
            Just(86_340),
            Just(-86_340),
            (-1439i32..=1439).prop_map(|m| m * 60)
        ];
        (instant, offset, 0..3u8).prop_map(|(t, off, form)| {
            let utc = Utc.timestamp_opt(t, 0).unwrap();
            let exact = utc.format(hero_usage::record::TIME_FORMAT).to_string();
            match form {
                // A leap second in the exact form folds into :59.
                0 if exact.ends_with(":59") => format!("{}60", &exact[..17]),
                0 => exact,
                _ => {
                    let local = utc.naive_utc() + chrono::Duration::seconds(i64::from(off));
                    let sign = if off < 0 { '-' } else { '+' };
                    let (h, m) = (off.abs() / 3600, off.abs() % 3600 / 60);
                    format!("{}{sign}{h:02}:{m:02}", local.format("%Y-%m-%dT%H:%M:%S"))
                }
            }
        })
    }

    fn input(now: DateTime<Utc>) -> impl Strategy<Value = RecordInput> {
        (
            "[\\x21-\\x7e]{1,255}",
            // This node's name, or another (which validation must refuse:
            // the audit would).
            prop_oneof![Just("n1".to_string()), "[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}"],
            "[0-9a-z]{4,6}",
            0..=1_000_000_000_000u64,
            "[a-z][a-z0-9_.-]{0,63}",
            prop_oneof![
                "\\PC{0,40}",
                "[\"\\\\'#=\\[\\]{}\\x20-\\x7e]{0,1024}",
                "\\PC{1000,1024}"
            ],
            time_text(now),
        )
            .prop_map(|(key, node, sid, amount, kind, description, at)| {
                let mut i = RecordInput::default();
                i.set("idempotency_key", RawValue::Str(key));
                i.set("node_id", RawValue::Str(node));
                i.set("user_sid", RawValue::Str(sid));
                i.set("amount_cents", RawValue::Int(i128::from(amount)));
                i.set("resource_kind", RawValue::Str(kind));
                i.set("description", RawValue::Str(description));
                i.set("occurred_at", RawValue::Str(at));
                i
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn what_validation_accepts_reads_back_unchanged(
            inputs in proptest::collection::vec(input(Utc::now()), 1..12)
        ) {
            let defaults = Defaults { node: "n1".into(), now: Utc::now(), occurred_at: None };
            let mut seen = std::collections::HashSet::new();
            let valid: Vec<_> = inputs
                .iter()
                .filter_map(|i| i.validate(&defaults).ok())
                .filter(|v| seen.insert(v.record.idempotency_key.clone()))
                .collect();
            // What the audit checks of every record in nodes/n1/.
            prop_assert!(valid.iter().all(|v| v.record.node_id == "n1"));
            let dir = temp_dir();
            let spool = Spool::open(&dir.path().join("spool")).unwrap();
            let outcomes = spool.record_batch(&valid).unwrap();
            prop_assert!(outcomes.iter().all(|o| *o == hero_usage::spool::RecordOutcome::Recorded));
            let load = pending_as_the_push_reads_it(&spool);
            prop_assert!(load.damaged.is_empty(), "{:?}", load.damaged);
            let mut back: Vec<UsageRecord> = Vec::new();
            for (hour, recs) in load.hours {
                let recs: Vec<UsageRecord> = recs.into_iter().map(|(_, r)| r).collect();
                prop_assert!(recs.iter().all(|r| r.hour_bucket() == hour));
                let text = hero_usage::otoml::render_batch(&recs);
                back.extend(hero_usage::otoml::parse_batch(&text).unwrap());
            }
            let mut want: Vec<UsageRecord> = valid.into_iter().map(|v| v.record).collect();
            want.sort_by(|a, b| a.idempotency_key.cmp(&b.idempotency_key));
            back.sort_by(|a, b| a.idempotency_key.cmp(&b.idempotency_key));
            prop_assert_eq!(back, want);
        }
    }
}

#[test]
fn pruning_quarantines_a_damaged_sent_record_instead_of_forgetting_its_key() {
    let forge = hero_usage_test_forge::TestForge::start(Default::default());
    let env = TestEnv::new();
    let line = json_line("r1", "2026-11-20 16:04:05", 7) + "\n";
    run_with_stdin(env.cmd(REC).arg("--stdin"), line.as_bytes()).exit(0);
    push_to(&env, &forge, &[]).exit(0);
    let entry = env.spool.join("sent").join(file_name_for_key("r1"));
    std::fs::write(&entry, "not a record").unwrap();
    push_to(&env, &forge, &["--retention-days", "0"]);
    assert!(!entry.exists());
    let reasons = rejection_reasons(&env.spool);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("ledger"), "{reasons:?}");
}

/// A record of another node would be pushed into this node's folder, which
/// the audit holds a violation: every input path refuses it (65 / line N).
#[test]
fn a_node_id_other_than_the_node_name_is_refused_on_every_path() {
    let env = TestEnv::new();
    let mut args = good_args();
    args.push(("--node-id", "other-node"));
    let o = run(&mut record_cmd(&env, &args));
    o.exit(65);
    assert!(stderr(&o).contains("node_id"), "{}", stderr(&o));
    assert!(stderr(&o).contains("`test-node`"), "{}", stderr(&o));
    let lines = format!(
        "{}\n{}\n",
        json_line("a", "2026-11-20 16:04:05", 1).replace('}', r#","node_id":"other-node"}"#),
        json_line("b", "2026-11-20 16:04:05", 1).replace('}', r#","node_id":"test-node"}"#),
    );
    let o = run_with_stdin(env.cmd(REC).arg("--stdin"), lines.as_bytes());
    o.exit(65);
    assert!(stderr(&o).contains("line 1: node_id"), "{}", stderr(&o));
    assert!(stdout(&o).contains("recorded b"), "{}", stdout(&o));
}

/// A pending record of another node (written before validation refused
/// them) is quarantined by the push, never put in this node's folder.
#[test]
fn a_pending_record_of_another_node_is_quarantined_not_pushed() {
    let forge = hero_usage_test_forge::TestForge::start(Default::default());
    let env = TestEnv::new();
    let line = json_line("mine", "2026-11-20 16:04:05", 7) + "\n";
    run_with_stdin(env.cmd(REC).arg("--stdin"), line.as_bytes()).exit(0);
    let theirs = "amount_cents = 3\ndescription = \"\"\nidempotency_key = \"theirs\"\n\
                  node_id = \"other-node\"\noccurred_at = \"2026-11-20 16:05:00\"\n\
                  resource_kind = \"cpu\"\nuser_sid = \"0a1b\"\n";
    std::fs::write(
        env.spool.join("pending").join(file_name_for_key("theirs")),
        theirs,
    )
    .unwrap();
    let o = push_to(&env, &forge, &[]);
    o.exit(65);
    assert_eq!(remote_keys(&forge, "test-node"), ["mine"]);
    let reasons = rejection_reasons(&env.spool);
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("`other-node`"), "{reasons:?}");
    assert!(files_under(&env.spool.join("pending")).is_empty());
}

/// A damaged ledger base stops recording of the keys it may hold (73) with
/// a message naming the file and the fix; it never forgets them silently.
#[test]
fn a_damaged_ledger_base_is_73_naming_the_file_and_the_fix() {
    let env = TestEnv::new();
    run(&mut record_cmd(&env, &good_args())).exit(0);
    let key = "job-43";
    let shard = hero_usage::spool::ledger::key_digest(key)[0];
    let ledger = env.spool.join("ledger");
    std::fs::create_dir_all(&ledger).unwrap();
    let base = ledger.join(format!("{shard:02x}.base"));
    std::fs::write(&base, [7u8; 64]).unwrap();
    let o = run(&mut record_cmd(
        &env,
        &with(&good_args(), "--idempotency-key", key),
    ));
    o.exit(73);
    let err = stderr(&o);
    assert!(err.contains(&base.display().to_string()), "{err}");
    assert!(err.contains("restore") || err.contains("Restore"), "{err}");
    assert!(err.contains(".damaged"), "{err}");
    // A base cut short is damage too, not a shorter ledger.
    std::fs::write(&base, [7u8; 10]).unwrap();
    run(&mut record_cmd(
        &env,
        &with(&good_args(), "--idempotency-key", key),
    ))
    .exit(73);
}

/// Every pending record, read the way the push reads a batch: one index
/// scan of `pending/`, then the records of the entries it hands out.
fn pending_as_the_push_reads_it(spool: &Spool) -> hero_usage::spool::PendingLoad {
    let mut scan = spool.index_pending().unwrap();
    let batch = scan.index.next_batch(usize::MAX, |_| false);
    let mut load = spool.load_indexed(&batch).unwrap();
    load.damaged.extend(scan.damaged);
    load
}

/// `n` keys (`<prefix>-<i>`) whose ledger entries fall in shard `shard`.
fn keys_in_shard(prefix: &str, shard: u8, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .filter(|k| hero_usage::spool::ledger::key_digest(k)[0] == shard)
        .take(n)
        .collect()
}

/// Record `keys` (an hour ago), push them and prune them into the ledger.
fn push_into_the_ledger(env: &TestEnv, forge: &hero_usage_test_forge::TestForge, keys: &[String]) {
    let at = (Utc::now() - chrono::Duration::hours(1))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let lines: String = keys.iter().map(|k| json_line(k, &at, 7) + "\n").collect();
    run_with_stdin(env.cmd(REC).arg("--stdin"), lines.as_bytes()).exit(0);
    push_to(env, forge, &[]).exit(0);
    push_to(env, forge, &["--retention-days", "0"]).exit(0);
    assert!(files_under(&env.spool.join("sent")).is_empty(), "pruned");
}

/// The same record again through the flags, as the first push recorded it
/// but without `occurred_at` (a retry whose time defaulted to now).
fn retry(env: &TestEnv, key: &str) -> Output {
    run(env.cmd(REC).args([
        "--idempotency-key",
        key,
        "--user-sid",
        "0a1b",
        "--amount-cents",
        "7",
        "--resource-kind",
        "cpu",
    ]))
}

/// Issue 16, item 2: one flipped bit in a ledger log entry that is not the
/// torn tail forgot its key (a retry was recorded and billed twice), and
/// the next append rewrote the log without it. Now the key's shard is
/// refused (73, naming the file and the way on) on every path, the rest
/// goes on, and the log is never rewritten.
#[test]
fn a_damaged_ledger_log_entry_is_refused_never_forgotten_nor_rewritten() {
    let forge = hero_usage_test_forge::TestForge::start(Default::default());
    let env = TestEnv::new();
    let mut keys = keys_in_shard("old", 0x2a, 4);
    let late = keys.pop().unwrap();
    push_into_the_ledger(&env, &forge, &keys);
    // Recorded before the damage, pushed and pruned after it.
    let at = (Utc::now() - chrono::Duration::hours(1))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let line = json_line(&late, &at, 7) + "\n";
    run_with_stdin(env.cmd(REC).arg("--stdin"), line.as_bytes()).exit(0);
    let log = env.spool.join("ledger/2a.log");
    let mut bytes = std::fs::read(&log).unwrap();
    assert_eq!(bytes.len(), 3 * 64);
    bytes[64 + 30] ^= 1; // the middle entry: not a torn tail
    std::fs::write(&log, &bytes).unwrap();
    for key in &keys {
        let o = retry(&env, key);
        o.exit(73);
        assert!(
            stderr(&o).contains("2a.log") && stderr(&o).contains("mv "),
            "{}",
            stderr(&o)
        );
    }
    // --stdin: the line in that shard is held back, the others recorded
    // and answered.
    let fresh = keys_in_shard("new", 0x2b, 1).remove(0);
    let lines = format!(
        "{}\n{}\n",
        json_line(&keys[1], &at, 7),
        json_line(&fresh, &at, 7)
    );
    let o = run_with_stdin(env.cmd(REC).arg("--stdin"), lines.as_bytes());
    o.exit(73);
    assert_eq!(stdout(&o), format!("recorded {fresh}\n"));
    assert!(
        stderr(&o).contains("line 1: ") && stderr(&o).contains("2a.log"),
        "{}",
        stderr(&o)
    );
    // A drop of the damaged shard waits in incoming/; the rest is pushed.
    let drop = format!(
        "idempotency_key = \"{}\"\nuser_sid = \"0a1b\"\namount_cents = 7\nresource_kind = \"cpu\"\n",
        keys[0]
    );
    std::fs::write(env.spool.join("incoming/retry.toml"), drop).unwrap();
    let o = push_to(&env, &forge, &["--retention-days", "0"]);
    o.exit(73);
    assert!(stderr(&o).contains("incoming/retry.toml"), "{}", stderr(&o));
    assert!(env.spool.join("incoming/retry.toml").exists());
    let mut want = keys.clone();
    want.extend([late, fresh]);
    want.sort();
    assert_eq!(remote_keys(&forge, "test-node"), want, "each key once");
    assert_eq!(std::fs::read(&log).unwrap(), bytes, "never rewritten");
    // Monitoring sees the failed run.
    let (_, v) = status_json(&env, &[]);
    assert_eq!(v["last_push"]["exit_code"], 73, "{v}");
}

/// Issue 16, item 3: a damaged record in sent/ at pruning was quarantined
/// silently (exit 0) and its key forgotten: a retry was recorded and billed
/// twice. Its key's digest is its file name: it stays in the ledger, the
/// quarantine is reported, and the run exits 65 once.
#[test]
fn a_damaged_sent_record_keeps_its_key_and_is_reported_once() {
    let forge = hero_usage_test_forge::TestForge::start(Default::default());
    let env = TestEnv::new();
    let at = (Utc::now() - chrono::Duration::hours(1))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let line = json_line("r1", &at, 7) + "\n";
    run_with_stdin(env.cmd(REC).arg("--stdin"), line.as_bytes()).exit(0);
    push_to(&env, &forge, &[]).exit(0);
    let entry = env.spool.join("sent").join(file_name_for_key("r1"));
    std::fs::write(&entry, "not a record").unwrap();
    let o = push_to(&env, &forge, &["--retention-days", "0"]);
    o.exit(65);
    assert!(
        stderr(&o).contains(&format!("quarantined sent/{}", file_name_for_key("r1"))),
        "{}",
        stderr(&o)
    );
    assert!(!entry.exists());
    assert_eq!(rejection_reasons(&env.spool).len(), 1);
    push_to(&env, &forge, &["--retention-days", "0"]).exit(0);
    // The retry is a duplicate, through the flags and a drop alike.
    let o = retry(&env, "r1");
    o.exit(0);
    assert_eq!(stdout(&o), "duplicate r1\n");
    std::fs::write(
        env.spool.join("incoming/r1.toml"),
        "idempotency_key = \"r1\"\nuser_sid = \"0a1b\"\namount_cents = 7\nresource_kind = \"cpu\"\n",
    )
    .unwrap();
    push_to(&env, &forge, &[]).exit(0);
    assert!(files_under(&env.spool.join("pending")).is_empty());
    assert_eq!(remote_keys(&forge, "test-node"), ["r1"]);
}

/// A damaged record file stored under a key (in sent/ or pending/) holds
/// back only the records with that key, as a damaged ledger shard does:
/// it made every `--stdin` group (and shim group) holding such a record
/// fail whole with 73, and a drop of that key every push, nothing pushed;
/// a damaged sent/ entry is kept until pruning, 35 days.
#[test]
fn a_damaged_stored_record_holds_back_only_its_own_key() {
    let forge = hero_usage_test_forge::TestForge::start(Default::default());
    let env = TestEnv::new();
    let at = (Utc::now() - chrono::Duration::hours(1))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    run_with_stdin(env.cmd(REC).arg("--stdin"), b"").exit(0);
    for (dir, key) in [("sent", "s1"), ("pending", "p1")] {
        let entry = env.spool.join(dir).join(file_name_for_key(key));
        std::fs::write(entry, "not a record").unwrap();
    }
    let lines: String = ["g1", "s1", "g2", "p1", "g3"]
        .iter()
        .map(|k| json_line(k, &at, 3) + "\n")
        .collect();
    let o = run_with_stdin(env.cmd(REC).arg("--stdin"), lines.as_bytes());
    o.exit(73);
    assert_eq!(stdout(&o), "recorded g1\nrecorded g2\nrecorded g3\n");
    let err = stderr(&o);
    assert!(
        err.contains("line 2: ") && err.contains("line 4: "),
        "{err}"
    );
    std::fs::write(
        env.spool.join("incoming/s1.toml"),
        "idempotency_key = \"s1\"\nuser_sid = \"0a1b\"\namount_cents = 3\nresource_kind = \"cpu\"\n",
    )
    .unwrap();
    let o = push_to(&env, &forge, &[]);
    o.exit(73);
    assert!(stderr(&o).contains("incoming/s1.toml"), "{}", stderr(&o));
    assert!(env.spool.join("incoming/s1.toml").exists());
    assert_eq!(remote_keys(&forge, "test-node"), ["g1", "g2", "g3"]);
}

/// Issue 16, item 4: one damaged ledger base stopped everything: a drop in
/// its shard made every push exit 73 with nothing pushed, and `--stdin`
/// exited 73 printing nothing for the lines it had stored. Now only that
/// drop or line is held back; the rest is recorded, answered and pushed,
/// and the failed run's outcome is written.
#[test]
fn one_damaged_ledger_shard_holds_back_only_its_own_records() {
    let forge = hero_usage_test_forge::TestForge::start(Default::default());
    let env = TestEnv::new();
    std::fs::create_dir_all(env.spool.join("ledger")).unwrap();
    std::fs::write(env.spool.join("ledger/5c.base"), [7u8; 70]).unwrap();
    let bad = keys_in_shard("b", 0x5c, 2);
    let good = keys_in_shard("g", 0x11, 3);
    let at = (Utc::now() - chrono::Duration::hours(1))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let lines: String = [&good[0], &bad[0], &good[1]]
        .iter()
        .map(|k| json_line(k, &at, 3) + "\n")
        .collect();
    let o = run_with_stdin(env.cmd(REC).arg("--stdin"), lines.as_bytes());
    o.exit(73);
    assert_eq!(
        stdout(&o),
        format!("recorded {}\nrecorded {}\n", good[0], good[1])
    );
    assert!(
        stderr(&o).contains("line 2: ") && stderr(&o).contains("5c.base"),
        "{}",
        stderr(&o)
    );
    let drop = |name: &str, key: &str| {
        let body = format!(
            "idempotency_key = \"{key}\"\nuser_sid = \"0a1b\"\namount_cents = 3\nresource_kind = \"cpu\"\n"
        );
        std::fs::write(env.spool.join("incoming").join(name), body).unwrap();
    };
    drop("bad.toml", &bad[1]);
    drop("good.toml", &good[2]);
    let o = push_to(&env, &forge, &["--json"]);
    o.exit(73);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["pushed"], 3, "{v}");
    assert!(stderr(&o).contains("incoming/bad.toml") && stderr(&o).contains("5c.base"));
    assert!(env.spool.join("incoming/bad.toml").exists());
    let mut want = good.clone();
    want.sort();
    assert_eq!(remote_keys(&forge, "test-node"), want);
    let (_, s) = status_json(&env, &[]);
    assert_eq!(s["last_push"]["exit_code"], 73, "{s}");
    assert!(
        s["last_push"]["error"]
            .as_str()
            .unwrap()
            .contains("incoming/"),
        "{s}"
    );
}

/// Each field's rule at its edges, in one `--stdin` run: the last value
/// accepted and the first refused (a refused line names its field), and
/// RFC 3339 with an offset stored as UTC.
#[test]
fn every_field_is_accepted_at_its_bounds_and_refused_one_past() {
    let mut env = TestEnv::new();
    env.node = format!("n{}", "-".repeat(63)); // a node name of 64
    let minutes = |m: i64| {
        (Utc::now() + chrono::Duration::minutes(m))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let long = |c: &str, n: usize| c.repeat(n);
    let node = env.node.clone();
    // (field, value as JSON, the field a refusal names; None: accepted)
    let cases: Vec<(&str, serde_json::Value, bool)> = vec![
        ("idempotency_key", long("k", 255).into(), true),
        ("idempotency_key", "!~".into(), true),
        ("idempotency_key", long("k", 256).into(), false),
        ("idempotency_key", "".into(), false),
        ("idempotency_key", "a b".into(), false),
        ("idempotency_key", "a\u{7f}".into(), false),
        ("idempotency_key", "é".into(), false),
        ("user_sid", "0a1b".into(), true),
        ("user_sid", "0a1b2c".into(), true),
        ("user_sid", "0a1".into(), false),
        ("user_sid", "0a1b2c3".into(), false),
        ("user_sid", "0A1b".into(), false),
        ("amount_cents", 0.into(), true),
        ("amount_cents", 1_000_000_000_000u64.into(), true),
        ("amount_cents", 1_000_000_000_001u64.into(), false),
        ("amount_cents", (-1).into(), false),
        ("resource_kind", "a".into(), true),
        ("resource_kind", format!("a{}", long("z", 63)).into(), true),
        ("resource_kind", "a0_.-".into(), true),
        ("resource_kind", format!("a{}", long("z", 64)).into(), false),
        ("resource_kind", "".into(), false),
        ("resource_kind", "0a".into(), false),
        ("resource_kind", "aB".into(), false),
        ("description", "".into(), true),
        ("description", long("é", 1024).into(), true),
        ("description", long("é", 1025).into(), false),
        ("description", "a\nb".into(), false),
        ("description", "a\u{7f}".into(), false),
        ("occurred_at", "2000-01-01 00:00:00".into(), true),
        ("occurred_at", "2000-01-01T01:00:00+01:00".into(), true),
        ("occurred_at", minutes(4).into(), true),
        ("occurred_at", "1999-12-31 23:59:59".into(), false),
        ("occurred_at", "2000-01-01T00:59:59+01:00".into(), false),
        ("occurred_at", minutes(6).into(), false),
        ("occurred_at", "2026-11-26T16:04:05".into(), false),
        ("node_id", node.clone().into(), true),
        ("node_id", format!("{node}x").into(), false),
        ("node_id", ".n".into(), false),
        ("node_id", "".into(), false),
    ];
    let mut input = String::new();
    for (i, (field, value, _)) in cases.iter().enumerate() {
        let mut line = serde_json::json!({
            "idempotency_key": format!("edge-{i}"),
            "user_sid": "0a1b",
            "amount_cents": 1,
            "resource_kind": "cpu",
        });
        line[*field] = value.clone();
        input.push_str(&format!("{line}\n"));
    }
    let o = run_with_stdin(env.cmd(REC).arg("--stdin"), input.as_bytes());
    o.exit(65);
    let (out, err) = (stdout(&o), stderr(&o));
    for (i, (field, value, accepted)) in cases.iter().enumerate() {
        let key = match (*field, value) {
            ("idempotency_key", serde_json::Value::String(k)) => k.clone(),
            _ => format!("edge-{i}"),
        };
        let refusal = format!("line {}: {field}:", i + 1);
        let recorded = out.lines().any(|l| l == format!("recorded {key}"));
        let refused = err.lines().any(|l| l.starts_with(&refusal));
        assert_eq!(
            (recorded, refused),
            (*accepted, !*accepted),
            "{field} = {value}\n--- stdout:\n{out}--- stderr:\n{err}"
        );
    }
    let stored: std::collections::BTreeMap<_, _> = records(&env.spool)
        .into_iter()
        .map(|(_, r)| (r.idempotency_key, r.occurred_at.to_string()))
        .collect();
    assert_eq!(stored.len(), cases.iter().filter(|c| c.2).count());
    let at = |given: &str| {
        let i = cases.iter().position(|c| c.1 == given).unwrap();
        stored[&format!("edge-{i}")].clone()
    };
    assert_eq!(at("2000-01-01 00:00:00"), "2000-01-01 00:00:00");
    assert_eq!(
        at("2000-01-01T01:00:00+01:00"),
        "2000-01-01 00:00:00",
        "the offset converted to UTC"
    );
}
