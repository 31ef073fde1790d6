//! Exit codes that tell the truth (man 7 hero_usage, EXIT STATUS; issue 8): only
//! spool failures are 73, output that cannot be written is 74, input that
//! cannot be read 66, configuration 78, a bad command line 64.

use crate::support::{Run, TestEnv, files_under, run, stderr, stdout};
use hero_usage_test_forge::{ForgeOptions, TestForge};
use std::path::Path;
use std::process::{Command, Output};

fn record_args(key: &str) -> Vec<String> {
    [
        "--idempotency-key",
        key,
        "--user-sid",
        "0a1b",
        "--amount-cents",
        "5",
        "--resource-kind",
        "cpu",
    ]
    .map(String::from)
    .to_vec()
}

/// `sh -c SCRIPT` with the environment `TestEnv::cmd` gives a binary.
fn sh(env: &TestEnv, script: &str) -> Output {
    let mut c = Command::new("sh");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HERO_") {
            c.env_remove(k);
        }
    }
    c.arg("-c")
        .arg(script)
        .env("HOME", &env.home)
        .env("HERO_USAGE_SPOOL", &env.spool)
        .env("HERO_NODE_ID", &env.node);
    run(&mut c)
}

/// `hero_usage_record ARGS` through `sh -c` with a shell `prefix` (a
/// ulimit) and `suffix` (a redirection).
fn record_sh(env: &TestEnv, prefix: &str, args: &[String], suffix: &str) -> Output {
    let bin = crate::support::bin("hero_usage_record");
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let script = format!(
        "{prefix} exec '{}' {} {suffix}",
        bin.display(),
        quoted.join(" ")
    );
    sh(env, &script)
}

#[test]
fn a_full_stdout_is_74_and_says_the_record_was_stored() {
    let env = TestEnv::new();
    let out = record_sh(&env, "", &record_args("k1"), ">/dev/full");
    out.exit(74);
    assert!(
        stderr(&out).contains("the record was stored"),
        "{}",
        stderr(&out)
    );
    let again = run(env.cmd("hero_usage_record").args(record_args("k1")));
    again.exit(0);
    assert_eq!(stdout(&again), "duplicate k1\n");
    // --stdin too: the lines were stored, the answers lost.
    let out = sh(
        &env,
        &(format!(
            "echo '{{\"idempotency_key\":\"k2\",\"user_sid\":\"0a1b\",\"amount_cents\":1,\"resource_kind\":\"cpu\"}}' \
         | '{}' --stdin >/dev/full",
            crate::support::bin("hero_usage_record").display()
        )),
    );
    out.exit(74);
    assert!(stderr(&out).contains("stored"), "{}", stderr(&out));
    // A full stderr does not turn a data error into a crash (101).
    let mut bad = record_args("k3");
    bad[3] = "X".into();
    record_sh(&env, "", &bad, "2>/dev/full").exit(65);
}

#[test]
fn stdin_that_cannot_be_read_is_66() {
    let env = TestEnv::new();
    let out = run(env
        .cmd("hero_usage_record")
        .arg("--stdin")
        .stdin(std::fs::File::open("/").unwrap()));
    out.exit(66);
    assert!(
        stderr(&out).contains("cannot read stdin"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_file_size_limit_fails_the_write_with_73_and_leaves_no_tmp_file() {
    let env = TestEnv::new();
    let out = record_sh(&env, "ulimit -f 0;", &record_args("k1"), "");
    out.exit(73);
    assert!(stderr(&out).contains("File too large"), "{}", stderr(&out));
    assert!(files_under(&env.spool.join("tmp")).is_empty());
    assert!(files_under(&env.spool.join("pending")).is_empty());
}

/// A push that cannot ingest (a full disk; here a file size limit of 512
/// bytes, which the drop's record file exceeds while the push's own small
/// state files fit) still pushes what was pending,
/// leaves the drops in incoming/ for a later run, and exits 73. The old
/// code pushed nothing: the ingest error ended the run.
#[test]
fn a_push_that_cannot_ingest_still_pushes_what_is_pending_and_exits_73() {
    // 512 bytes: the push's own state files fit; 0: not even state/branches
    // does, which the run reports (73) and pushes on.
    for limit in [1, 0] {
        cannot_ingest_yet_pushes(limit);
    }
}

fn cannot_ingest_yet_pushes(limit: u32) {
    use crate::support::forge::{OWNER, REPO, node_keys, push, token_file};
    let env = TestEnv::new();
    let forge = TestForge::start(ForgeOptions::default());
    let token = token_file(&env, &forge);
    run(env.cmd("hero_usage_record").args(record_args("k1"))).exit(0);
    let drop = env.spool.join("incoming/d1.toml");
    let body = format!(
        "idempotency_key = \"d1\"\nuser_sid = \"0a1b\"\namount_cents = 5\nresource_kind = \"cpu\"\n\
         description = \"{}\"\n",
        "x".repeat(1000)
    );
    std::fs::write(&drop, body).unwrap();
    let out = sh(
        &env,
        &format!(
            "ulimit -f {limit}; HERO_USAGE_FORGEJO_URL='{}' HERO_USAGE_FORGEJO_TOKEN_FILE='{}' \
             HERO_USAGE_REPO='{OWNER}/{REPO}' exec '{}'",
            forge.base_url(),
            token.display(),
            crate::support::bin("hero_usage_push").display()
        ),
    );
    out.exit_for(73, &format!("ulimit -f {limit}"));
    assert!(stderr(&out).contains("File too large"), "{}", stderr(&out));
    assert_eq!(node_keys(&forge, &env.node), ["k1"]);
    assert!(drop.exists(), "the drop waits for a run with room");
    push(&env, &forge, &[]).exit(0);
    assert_eq!(node_keys(&forge, &env.node), ["d1", "k1"]);
}

#[test]
fn bad_tokens_and_branches_are_configuration_78() {
    let env = TestEnv::new();
    let forge = TestForge::start(ForgeOptions::default());
    let token_file = env.path("token");
    let push = || {
        let mut c = env.cmd("hero_usage_push");
        c.env("HERO_USAGE_FORGEJO_URL", forge.base_url())
            .env("HERO_USAGE_FORGEJO_TOKEN_FILE", &token_file);
        c
    };
    let cases: [(&str, &[u8]); 3] = [
        ("control", b"abcdefgh\x07ijkl\n"),
        ("ASCII", "abcdéfghijkl\n".as_bytes()),
        ("at least 8", b"G\n"),
    ];
    for (problem, token) in cases {
        std::fs::write(&token_file, token).unwrap();
        let out = run(&mut push());
        out.exit(78);
        assert!(stderr(&out).contains(problem), "{}", stderr(&out));
    }
    // A token "file" that is a fifo or a device is refused, never read.
    for special in ["/dev/zero", "/dev/null"] {
        let out = run(push().env("HERO_USAGE_FORGEJO_TOKEN_FILE", special));
        out.exit(78);
        assert!(
            stderr(&out).contains("not a regular file"),
            "{}",
            stderr(&out)
        );
    }
    std::fs::write(&token_file, forge.token()).unwrap();
    let out = run(push().env("HERO_USAGE_BRANCH", "../main"));
    out.exit(78);
    assert!(stderr(&out).contains("branch"), "{}", stderr(&out));
    assert!(forge.requests().is_empty(), "no request was made");
}

#[test]
fn a_missing_required_flag_is_64_a_missing_json_field_65() {
    let env = TestEnv::new();
    let out =
        run(env
            .cmd("hero_usage_record")
            .args(["--idempotency-key", "k", "--user-sid", "0a1b"]));
    out.exit(64);
    let err = stderr(&out);
    assert!(
        err.contains("missing --amount-cents, --resource-kind"),
        "{err}"
    );
    let out = crate::support::run_with_stdin(
        env.cmd("hero_usage_record").arg("--stdin"),
        b"{\"idempotency_key\":\"k\",\"user_sid\":\"0a1b\"}\n",
    );
    out.exit(65);
}

#[test]
fn status_and_help_to_a_full_stdout_are_74() {
    let env = TestEnv::new();
    for args in ["", "--json", "--version"] {
        let bin = crate::support::bin("hero_usage_status");
        let out = sh(&env, &format!("exec '{}' {args} >/dev/full", bin.display()));
        out.exit(74);
    }
}

#[test]
fn a_control_character_in_the_forge_url_is_78_not_a_retried_75() {
    // It can never reach a server: every run would fail alike, and 75
    // would have cron retry it for ever.
    let env = TestEnv::new();
    let forge = TestForge::start(ForgeOptions::default());
    let token_file = env.path("token");
    std::fs::write(&token_file, forge.token()).unwrap();
    let url = format!("{}/\x1b[31m", forge.base_url());
    run(env.cmd("hero_usage_record").args(record_args("k1"))).exit(0);
    for extra in [None, Some("--check")] {
        let mut c = env.cmd("hero_usage_push");
        c.env("HERO_USAGE_FORGEJO_URL", &url)
            .env("HERO_USAGE_FORGEJO_TOKEN_FILE", &token_file)
            .args(extra);
        let out = run(&mut c);
        out.exit(78);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(text.contains("control character"), "{text}");
        assert!(!text.contains('\x1b'), "escaped, never raw: {text:?}");
    }
    assert!(forge.requests().is_empty(), "no request was made");
}

#[test]
fn an_empty_path_in_the_config_file_is_78_naming_the_key() {
    let env = TestEnv::new();
    let config = env.path("hero_usage.toml");
    for key in ["spool", "token_file", "admin_secret_file"] {
        std::fs::write(&config, format!("{key} = \"\"\n")).unwrap();
        for (binary, args) in [
            ("hero_usage_status", vec![]),
            ("hero_usage_record", record_args("k1")),
            (
                "hero_usage_push",
                vec!["--print-schedule".into(), "cron".into()],
            ),
        ] {
            let mut c = env.cmd(binary);
            c.env_remove("HERO_USAGE_SPOOL")
                .arg("--config")
                .arg(&config);
            let out = run(c.args(&args));
            out.exit(78);
            assert!(
                stderr(&out).contains(&format!("{key} is empty")),
                "{binary} {key}: {}",
                stderr(&out)
            );
        }
    }
}

#[test]
fn a_config_file_that_is_a_device_or_a_fifo_is_78_never_read() {
    // /dev/zero would fill the memory, a fifo would hang the run for ever.
    let env = TestEnv::new();
    let fifo = env.path("config.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let bin = crate::support::bin("hero_usage_status");
    for config in [Path::new("/dev/zero"), &fifo] {
        let script = format!(
            "exec timeout 20 '{}' --config '{}'",
            bin.display(),
            config.display()
        );
        let out = sh(&env, &script);
        out.exit(78);
        assert!(
            stderr(&out).contains("not a regular file"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn a_full_stderr_is_never_a_crash() {
    let env = TestEnv::new();
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    // The schedule's notes (what the scheduler will lack) are its news: 74.
    let out = run(env
        .cmd("hero_usage_push")
        .args(["--print-schedule", "cron"])
        .stdout(std::process::Stdio::null())
        .stderr(full()));
    out.exit(74);
    // An error that stderr cannot take keeps its own code (78, no URL).
    let out = run(env.cmd("hero_usage_push").arg("--once").stderr(full()));
    out.exit(78);
    // --json's error line goes to stderr too; the object still reaches stdout.
    let out = run(env
        .cmd("hero_usage_push")
        .args(["--once", "--json"])
        .stderr(full()));
    out.exit(78);
    assert!(
        stdout(&out).contains("\"exit_code\":78"),
        "{}",
        stdout(&out)
    );
}

/// man 7 hero_usage, SETTINGS: an unknown key in the config file is 78 (typos are
/// caught), and plain `http://` to a host that is not loopback is refused
/// without `--insecure-http`; neither run sends a request anywhere.
#[test]
fn an_unknown_config_key_and_plain_http_to_a_remote_host_are_78() {
    let env = TestEnv::new();
    let config = env.path("hero_usage.toml");
    std::fs::write(&config, "forgejo_urll = \"http://127.0.0.1:9\"\n").unwrap();
    let out = run(env.cmd("hero_usage_push").arg("--config").arg(&config));
    out.exit(78);
    assert!(stderr(&out).contains("forgejo_urll"), "{}", stderr(&out));

    let token = env.path("token");
    std::fs::write(&token, "abcdefghijkl\n").unwrap();
    let out = run(env
        .cmd("hero_usage_push")
        .env("HERO_USAGE_FORGEJO_URL", "http://192.0.2.1")
        .env("HERO_USAGE_FORGEJO_TOKEN_FILE", &token));
    out.exit(78);
    assert!(stderr(&out).contains("https"), "{}", stderr(&out));
}

/// All five binaries: `--help` and `--version` print to stdout and exit 0;
/// a bad command line is 64 and an unknown config key 78, each with the
/// contract's error line on stderr (clap's several lines made one).
#[test]
fn every_binary_answers_help_and_version_and_a_bad_flag_is_64() {
    let env = TestEnv::new();
    let config = env.path("typo.toml");
    std::fs::write(&config, "spoool = \"/var/x\"\n").unwrap();
    for b in [
        "hero_usage_record",
        "hero_usage_push",
        "hero_usage_shim",
        "hero_usage_status",
        "hero_usage_audit",
    ] {
        let out = run(env.cmd(b).arg("--help"));
        out.exit_for(0, b).stdout_has(&format!("Usage: {b} "));
        let out = run(env.cmd(b).arg("--version"));
        out.exit_for(0, b);
        let version = format!("{b} {}\n", env!("CARGO_PKG_VERSION"));
        assert_eq!(stdout(&out), version, "{b} --version");
        let out = run(env.cmd(b).args(["--no-such-flag", "--json"]));
        out.exit_for(64, b);
        // One line (the journal keeps it as one entry), saying what to do.
        let err = stderr(&out);
        assert!(err.starts_with(&format!("{b}: error: ")), "{b}: {err}");
        assert!(err.ends_with("; see --help\n"), "{b}: {err}");
        assert_eq!(err.lines().count(), 1, "{b}: {err}");
        assert_eq!(stdout(&out), "", "{b}: errors go to stderr only");
        let out = crate::support::run_with_stdin(
            env.cmd(b)
                .arg("--config")
                .arg(&config)
                .args((b == "hero_usage_record").then_some("--stdin")),
            b"",
        );
        out.exit_for(78, b)
            .stderr_has(&format!("{b}: error: config file {}", config.display()))
            .stderr_has("spoool");
    }
    assert!(!env.spool.exists(), "none of them created the spool");
}

/// The forge URL and the token have no default: a push without either
/// refuses to run (78, naming every way to set it), before the spool.
#[test]
fn a_push_without_a_forge_url_or_a_token_is_78_and_touches_nothing() {
    let env = TestEnv::new();
    let out = run(&mut env.cmd("hero_usage_push"));
    out.exit(78).stderr_has(
        "hero_usage_push: error: no Forgejo URL: set --forgejo-url, HERO_USAGE_FORGEJO_URL or forgejo_url",
    );
    let out = run(env
        .cmd("hero_usage_push")
        .args(["--forgejo-url", "https://forge.example.org"]));
    out.exit(78).stderr_has(
        "no Forgejo token: set --token-file, HERO_USAGE_FORGEJO_TOKEN_FILE, HERO_USAGE_FORGEJO_TOKEN or token_file",
    );
    assert!(!env.spool.exists(), "the spool was touched");
}

/// A bug (a panic, here at a test-only failpoint) is 70 with one error
/// line saying so, not Rust's 101 and its several lines.
#[test]
fn a_panic_is_an_internal_error_70_in_one_error_line() {
    let env = TestEnv::new();
    let out = run(env
        .cmd("hero_usage_record")
        .args(record_args("k1"))
        .env("HERO_USAGE_FAILPOINT", "panic:record-after-fsync"));
    out.exit(70);
    let err = stderr(&out);
    assert!(
        err.starts_with(
            "hero_usage_record: error: internal error (a bug): failpoint record-after-fsync at src/"
        ),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(stdout(&out), "", "nothing was recorded");
}
