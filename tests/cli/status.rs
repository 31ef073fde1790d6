//! `hero_usage_status`: counts, the last push, JSON, Prometheus and the
//! `--max-age` alerting hook, through the real binary.

use crate::support::{Run, TestEnv, files_under, record, run, status_json as json, stderr, stdout};
use std::time::{Duration, SystemTime};

#[test]
fn a_missing_spool_reads_as_empty_and_is_not_created() {
    let env = TestEnv::new();
    let (st, v) = json(&env, &[]);
    st.exit(0);
    assert_eq!(v["pending"], 0);
    assert!(v["last_push"].is_null());
    assert!(!env.spool.exists());
}

#[test]
fn counts_pending_and_alerts_on_max_age() {
    let env = TestEnv::new();
    record(&env, "a");
    record(&env, "b");
    let (st, v) = json(&env, &["--max-age", "3600"]);
    st.exit(0);
    assert_eq!(v["pending"], 2);
    assert_eq!(v["node"], "test-node");
    assert!(v["oldest_pending_age_seconds"].as_i64().unwrap() < 3600);

    // Age one record by two hours: the hook fires.
    let pending = files_under(&env.spool.join("pending"));
    let old = SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::options()
        .write(true)
        .open(&pending[0])
        .unwrap()
        .set_modified(old)
        .unwrap();
    let (st, v) = json(&env, &["--max-age", "3600"]);
    st.exit(1);
    assert!(v["oldest_pending_age_seconds"].as_i64().unwrap() >= 7200);
    let out = run(env.cmd("hero_usage_status").args(["--max-age", "3600"]));
    out.exit(1);
    assert!(
        stderr(&out).contains("more than 3600 s"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("pending   2"), "{}", stdout(&out));
}

#[test]
fn prometheus_exposition_and_the_last_push() {
    let env = TestEnv::new();
    record(&env, "a");
    // A push without a forge configured fails with 78 before touching the
    // spool; a push against a closed port fails with 75 and writes its outcome.
    let out = run(env
        .cmd("hero_usage_push")
        .env("HERO_USAGE_FORGEJO_URL", "http://127.0.0.1:9")
        .env("HERO_USAGE_FORGEJO_TOKEN", "t0ken-value"));
    out.exit(75);
    let (_, v) = json(&env, &[]);
    assert_eq!(v["last_push"]["outcome"], "failed");
    assert_eq!(v["last_push"]["exit_code"], 75);

    let out = run(env.cmd("hero_usage_status").arg("--prometheus"));
    out.exit(0);
    let text = stdout(&out);
    for line in [
        "# TYPE hero_usage_pending_records gauge",
        "hero_usage_pending_records{node=\"test-node\"} 1",
        "hero_usage_last_push_exit_code{node=\"test-node\"} 75",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(!text.contains("t0ken-value"));
}

#[test]
fn settings_come_from_flag_then_environment_then_config_then_default() {
    let env = TestEnv::new();
    let (a, b, c) = (
        env.path("from-config"),
        env.path("from-env"),
        env.path("from-flag"),
    );
    let cfg = env.home.join("hero/cfg/hero_usage.toml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    let spool_of = |cmd: &mut std::process::Command| {
        let out = run(cmd.arg("--json"));
        out.exit(0);
        let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        (
            v["spool"].as_str().unwrap().to_string(),
            v["node"].as_str().unwrap().to_string(),
        )
    };
    let show = |p: &std::path::Path| p.display().to_string();

    // Default: $HOME/hero/var/hero_usage/queue; node from HERO_NODE_ID.
    let got = spool_of(env.cmd("hero_usage_status").env_remove("HERO_USAGE_SPOOL"));
    assert_eq!(got.0, show(&env.home.join("hero/var/hero_usage/queue")));
    // The default config file, when it exists.
    std::fs::write(
        &cfg,
        format!("spool = {:?}\nnode = \"cfg-node\"\n", show(&a)),
    )
    .unwrap();
    let got = spool_of(
        env.cmd("hero_usage_status")
            .env_remove("HERO_USAGE_SPOOL")
            .env_remove("HERO_NODE_ID"),
    );
    assert_eq!(got, (show(&a), "cfg-node".to_string()));
    // The environment beats the config file.
    let got = spool_of(env.cmd("hero_usage_status").env("HERO_USAGE_SPOOL", &b));
    assert_eq!(got, (show(&b), "test-node".to_string()));
    // A flag beats the environment.
    let got = spool_of(
        env.cmd("hero_usage_status")
            .env("HERO_USAGE_SPOOL", &b)
            .args(["--spool", &show(&c), "--node", "flag-node"]),
    );
    assert_eq!(got, (show(&c), "flag-node".to_string()));
    // A config file named by HERO_USAGE_CONFIG replaces the default one.
    let other = env.path("other.toml");
    std::fs::write(&other, "node = \"other-node\"\n").unwrap();
    let got = spool_of(
        env.cmd("hero_usage_status")
            .env("HERO_USAGE_CONFIG", &other)
            .env_remove("HERO_NODE_ID"),
    );
    assert_eq!(got.1, "other-node");
    // An empty environment variable is not given: the config file applies.
    let got = spool_of(
        env.cmd("hero_usage_status")
            .env("HERO_USAGE_SPOOL", "")
            .env("HERO_NODE_ID", "")
            .env("HERO_USAGE_CONFIG", ""),
    );
    assert_eq!(got, (show(&a), "cfg-node".to_string()));
    // A bad node name is a configuration error.
    let out = run(env.cmd("hero_usage_status").env("HERO_NODE_ID", "../etc"));
    out.exit(78);
}

#[test]
fn version_names_the_binary() {
    let env = TestEnv::new();
    let out = run(env.cmd("hero_usage_status").arg("--version"));
    out.exit(0);
    assert!(
        stdout(&out).starts_with("hero_usage_status "),
        "{}",
        stdout(&out)
    );
}

/// Write `name` into `incoming/` with its modification time `age` ago.
fn drop_aged(env: &TestEnv, name: &str, age: Duration) -> std::path::PathBuf {
    let incoming = env.spool.join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    let p = incoming.join(name);
    std::fs::write(
        &p,
        format!(
            "idempotency_key = {name:?}\nuser_sid = \"0a1b\"\namount_cents = 5\nresource_kind = \"cpu_hours\"\n"
        ),
    )
    .unwrap();
    std::fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
    p
}

#[test]
fn a_drop_waiting_in_incoming_counts_for_the_age_and_the_alert() {
    let env = TestEnv::new();
    // A drop's mtime is its occurred_at (three days ago here); how long it
    // has waited counts from its arrival in incoming/ (its ctime): now.
    let three_days = 3 * 86400;
    drop_aged(&env, "x.toml", Duration::from_secs(three_days));
    let (st, v) = json(&env, &["--max-age", "3600"]);
    st.exit_for(0, &v.to_string());
    assert_eq!(
        (v["pending"].as_i64(), v["incoming"].as_i64()),
        (Some(0), Some(1))
    );
    let age = v["oldest_pending_age_seconds"].as_i64().unwrap();
    assert!((0..60).contains(&age), "aged by its mtime: {v}");
    // Nothing was accepted yet: no accepted time is made up.
    assert!(v["oldest_pending_accepted_at"].is_null(), "{v}");

    // Once it has waited longer than --max-age, the alert fires.
    std::thread::sleep(Duration::from_millis(1100));
    let out = run(env.cmd("hero_usage_status").args(["--max-age", "0"]));
    out.exit(1);
    assert!(
        stdout(&out).contains("incoming  1 (oldest dropped "),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("more than 0 s"), "{}", stderr(&out));
    let out = run(env.cmd("hero_usage_status").arg("--prometheus"));
    let gauge: i64 = stdout(&out)
        .lines()
        .find_map(|l| l.strip_prefix("hero_usage_oldest_pending_age_seconds{node=\"test-node\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no age gauge in\n{}", stdout(&out)));
    assert!(gauge >= 1, "{}", stdout(&out));

    // A dot name is no drop.
    drop_aged(&env, ".hidden.toml", Duration::from_secs(10 * 86400));
    let (_, v) = json(&env, &[]);
    assert_eq!(v["incoming"], 1, "{v}");

    // Once pushed into pending/ (here: taken away), the alert is quiet again.
    std::fs::remove_file(env.spool.join("incoming/x.toml")).unwrap();
    let (st, _) = json(&env, &["--max-age", "0"]);
    st.exit(0);
}

#[test]
fn a_symlinked_drop_is_aged_by_the_link_not_its_target() {
    let env = TestEnv::new();
    let target = drop_aged(&env, "old.toml", Duration::from_secs(3 * 86400));
    let kept = env.path("old.toml");
    std::fs::rename(&target, &kept).unwrap();
    std::os::unix::fs::symlink(&kept, env.spool.join("incoming/link.toml")).unwrap();
    let (st, v) = json(&env, &["--max-age", "3600"]);
    st.exit_for(0, &v.to_string());
    assert_eq!(v["incoming"], 1);
    assert!(
        v["oldest_pending_age_seconds"].as_i64().unwrap() < 3600,
        "{v}"
    );
}

#[test]
fn a_spool_that_is_not_a_directory_is_an_error_not_an_empty_spool() {
    let env = TestEnv::new();
    let file = env.path("afile");
    std::fs::write(&file, "").unwrap();
    let below = file.join("queue");
    let dangling = env.path("dangling");
    std::os::unix::fs::symlink(env.path("nowhere"), &dangling).unwrap();
    for spool in [&file, &below, &dangling] {
        let out = run(env
            .cmd("hero_usage_status")
            .arg("--spool")
            .arg(spool)
            .args(["--json", "--max-age", "1"]));
        out.exit(73);
        let err = stderr(&out);
        assert!(err.starts_with("hero_usage_status: error: "), "{err}");
        assert!(err.contains(&spool.display().to_string()), "{err}");
        assert_eq!(stdout(&out), "", "no report of an unreadable spool");
    }
    assert!(!env.path("nowhere").exists(), "nothing created");
}

#[test]
fn a_corrupt_outcome_file_is_reported_unreadable_not_as_never_ran() {
    let env = TestEnv::new();
    record(&env, "a");
    let outcome = env.spool.join("state/last_push.json");
    for (content, why) in [
        ("{\"outcome\": \"ok\", trunc", "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
    ] {
        std::fs::write(&outcome, content).unwrap();
        let (st, v) = json(&env, &[]);
        st.exit_for(0, &v.to_string());
        assert!(v["last_push"].is_null(), "{v}");
        let reason = v["last_push_unreadable"].as_str().unwrap_or_default();
        assert!(reason.contains(why), "{content:?}: {v}");

        let out = run(&mut env.cmd("hero_usage_status"));
        out.exit(0);
        let text = stdout(&out);
        assert!(
            text.contains("last push unreadable outcome file "),
            "{text}"
        );
        assert!(!text.contains("never ran"), "{text}");
        assert!(stderr(&out).contains("last_push.json"), "{}", stderr(&out));

        let out = run(env.cmd("hero_usage_status").arg("--prometheus"));
        let text = stdout(&out);
        assert!(
            text.contains("hero_usage_last_push_outcome_unreadable{node=\"test-node\"} 1"),
            "{text}"
        );
    }
    // A directory in its place cannot be read either.
    std::fs::remove_file(&outcome).unwrap();
    std::fs::create_dir(&outcome).unwrap();
    let (st, v) = json(&env, &[]);
    st.exit_for(0, &v.to_string());
    assert!(v["last_push_unreadable"].is_string(), "{v}");
    // Nor is a symlink followed, even to a good outcome.
    std::fs::remove_dir(&outcome).unwrap();
    let elsewhere = env.path("elsewhere.json");
    std::fs::write(&elsewhere, r#"{"outcome":"pushed","exit_code":0}"#).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &outcome).unwrap();
    let (_, v) = json(&env, &[]);
    assert!(
        v["last_push"].is_null() && v["last_push_unreadable"].is_string(),
        "{v}"
    );
    // No file: never ran, nothing unreadable.
    std::fs::remove_file(&outcome).unwrap();
    let (_, v) = json(&env, &[]);
    assert!(
        v["last_push"].is_null() && v["last_push_unreadable"].is_null(),
        "{v}"
    );
    let out = run(env.cmd("hero_usage_status").arg("--prometheus"));
    assert!(
        stdout(&out).contains("hero_usage_last_push_outcome_unreadable{node=\"test-node\"} 0"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn control_characters_in_the_spool_path_are_escaped_in_the_text() {
    let env = TestEnv::new();
    let spool = env.path("sp\x1b[2Jool\nx");
    let out = run(env.cmd("hero_usage_status").env("HERO_USAGE_SPOOL", &spool));
    out.exit(0);
    let text = stdout(&out);
    assert!(!text.contains('\x1b'), "{text:?}");
    assert!(text.contains("sp\\u{1b}[2Jool\\nx"), "{text}");
}

#[test]
fn a_spool_of_another_node_is_78_naming_both_never_figures_under_the_wrong_name() {
    // Prometheus labels would otherwise file node-a's backlog under node-b.
    let env = TestEnv::new();
    record(&env, "k1");
    let bound = env.node.clone();
    for args in [&[][..], &["--json"], &["--prometheus"]] {
        let out = run(env
            .cmd("hero_usage_status")
            .env("HERO_NODE_ID", "another-node")
            .args(args));
        out.exit(78);
        assert!(stdout(&out).is_empty(), "{}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&bound) && err.contains("another-node"),
            "{err}"
        );
    }
    let (st, v) = json(&env, &[]);
    st.exit(0);
    assert_eq!(v["node"].as_str(), Some(bound.as_str()));
}

#[test]
fn out_writes_the_textfile_atomically_readable_by_node_exporter() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let env = TestEnv::new();
    record(&env, "a");
    let dir = env.path("textfile");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hero_usage.prom");
    std::fs::write(&file, "old\n").unwrap();
    let before = std::fs::metadata(&file).unwrap().ino();
    // A umask that would make any plain write private.
    let out = run(std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 077 && exec \"$0\" --prometheus --out \"$1\"")
        .arg(crate::support::bin("hero_usage_status"))
        .arg(&file)
        .env("HOME", &env.home)
        .env("HERO_USAGE_SPOOL", &env.spool)
        .env("HERO_NODE_ID", &env.node));
    out.exit(0);
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("hero_usage_pending_records{node=\"test-node\"} 1\n"),
        "{text}"
    );
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);
    // Renamed into place (a new inode), nothing else left in the directory.
    assert_ne!(meta.ino(), before);
    assert_eq!(files_under(&dir), vec![file.clone()]);

    // A directory it cannot write into: 74, the old file untouched.
    let missing = env.path("no-such-dir/hero_usage.prom");
    let out = run(env
        .cmd("hero_usage_status")
        .args(["--prometheus", "--out"])
        .arg(&missing));
    out.exit(74);
    assert!(
        stderr(&out).contains("the report was not written"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
}

#[test]
fn status_by_another_user_than_the_spools_owner_says_whose_it_is_and_what_to_run() {
    use std::os::unix::fs::PermissionsExt;
    let uid = crate::support::my_uid();
    let runuser = ["/usr/sbin/runuser", "/sbin/runuser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file());
    let (0, Some(runuser)) = (uid, runuser) else {
        eprintln!("skipped: needs root and runuser to run as another user");
        return;
    };
    let env = TestEnv::new();
    record(&env, "a");
    let as_nobody = || {
        run(std::process::Command::new(runuser)
            .args(["-u", "nobody", "--"])
            .arg(crate::support::bin("hero_usage_status"))
            .arg("--spool")
            .arg(&env.spool)
            .env("HOME", "/")
            .env("HERO_NODE_ID", &env.node))
    };
    // A directory on the way that nobody may enter.
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = as_nobody();
    out.exit(73);
    let err = stderr(&out);
    assert!(
        err.contains("closed to this user; run as the spool's owner"),
        "{err}"
    );
    // The path to the spool is open to all; the spool itself is 0700, as made.
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = as_nobody();
    out.exit(73);
    let err = stderr(&out);
    assert!(
        err.contains("it belongs to user root (mode 700) and this is user nobody"),
        "{err}"
    );
    assert!(
        err.contains("sudo -u root hero_usage_status --spool"),
        "{err}"
    );
}
