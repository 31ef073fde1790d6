//! The operator's path: printed schedules, `--check`, config files with
//! relative paths, secret file modes, `--quiet`, monitoring, `--help`, the
//! install script. Real binaries, real files, the test forge on loopback.

use crate::support::{
    Run, TestEnv, bin, fake_server, my_uid, print_system_units, record, repo_root, run, stderr,
    stdout, which,
};
use hero_usage_test_forge::{ForgeOptions, TestForge};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A spool and a token for one forge.
struct Op {
    env: TestEnv,
    token_file: PathBuf,
    url: String,
}

impl Op {
    fn new(forge: &TestForge) -> Op {
        let env = TestEnv::new();
        let token_file = env.path("token");
        write_private(&token_file, &format!("{}\n", forge.token()));
        Op {
            env,
            token_file,
            url: forge.base_url(),
        }
    }

    /// `hero_usage_push` with the forge in this shell's environment.
    fn push(&self) -> Command {
        let mut c = self.env.cmd("hero_usage_push");
        c.env("HERO_USAGE_FORGEJO_URL", &self.url)
            .env("HERO_USAGE_FORGEJO_TOKEN_FILE", &self.token_file)
            .env("HERO_USAGE_REPO", "billing-bot/billing");
        c
    }
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn forge_with_read_only() -> (TestForge, String) {
    let ro = "read-only-token-0123456789".to_string();
    let forge = TestForge::start(ForgeOptions {
        read_only_token: Some(ro.clone()),
        ..ForgeOptions::default()
    });
    (forge, ro)
}

#[test]
fn cron_line_is_quiet_splayed_marked_and_installs_once() {
    let forge = TestForge::start(ForgeOptions::default());
    let op = Op::new(&forge);
    let out = run(op.push().args(["--print-schedule", "cron"]));
    out.exit(0);
    let line = stdout(&out);
    let minute: u32 = line.split_whitespace().next().unwrap().parse().unwrap();
    assert!(minute < 60);
    let tail = format!(
        "hero_usage_push --once --splay 3600 --quiet --spool {} --node test-node",
        op.env.spool.display()
    );
    assert!(line.contains(&tail), "{line}");
    // What only this shell has goes on the line (the token as its file).
    let forge_words = format!(
        "--forgejo-url {} --repo billing-bot/billing --token-file {} # hero_usage_push\n",
        op.url,
        op.token_file.display()
    );
    assert!(line.ends_with(&forge_words), "{line}");
    // The install command, run twice against a stand-in crontab, leaves one line.
    let err = stderr(&out);
    let install = err
        .lines()
        .find_map(|l| {
            l.trim_start_matches("hero_usage_push:")
                .trim()
                .strip_prefix("(crontab")
        })
        .map(|rest| format!("(crontab{rest}"))
        .unwrap_or_else(|| panic!("no install command: {err}"));
    let fake = op.env.path("fakebin");
    std::fs::create_dir_all(&fake).unwrap();
    let tab = op.env.path("crontab.txt");
    std::fs::write(&tab, "MAILTO=ops\n").unwrap();
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = -l ]; then cat '{0}'; else cat > '{0}.new' && mv '{0}.new' '{0}'; fi\n",
        tab.display()
    );
    std::fs::write(fake.join("crontab"), script).unwrap();
    std::fs::set_permissions(fake.join("crontab"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap());
    for _ in 0..2 {
        let o = run(Command::new("sh")
            .arg("-c")
            .arg(&install)
            .env("PATH", &path));
        o.exit(0);
    }
    let installed = std::fs::read_to_string(&tab).unwrap();
    assert_eq!(installed, format!("MAILTO=ops\n{line}"), "{installed}");
}

#[test]
fn hero_proc_action_takes_its_name_and_splays() {
    let env = TestEnv::new();
    let out = run(env.cmd("hero_usage_push").args([
        "--print-schedule",
        "hero_proc",
        "--action-name",
        "hero_onboarding_billing_cron",
    ]));
    out.exit(0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["name"], "hero_onboarding_billing_cron");
    assert_eq!(v["kind"], "action", "one-shot, not a process: {v}");
    assert_eq!(v["schedule_policy"]["interval_ms"], 3_600_000);
    let script = v["script"].as_str().unwrap();
    assert!(
        script.contains("hero_usage_push --once --splay 3600 --spool"),
        "{script}"
    );
    let err = stderr(&out);
    assert!(err.contains("hero_onboarding_billing_cron.json"), "{err}");
    // Nothing configured: the schedule would fail every hour; say so.
    assert!(err.contains("no Forgejo URL is configured"), "{err}");
    assert!(err.contains("no Forgejo token is configured"), "{err}");
    for bad in ["a b", "x\ny", ""] {
        let out = run(env.cmd("hero_usage_push").args([
            "--print-schedule",
            "hero_proc",
            "--action-name",
            bad,
        ]));
        out.exit(64);
    }
    let out = run(env.cmd("hero_usage_push").args(["--action-name", "x"]));
    out.exit(64);
    // Without --action-name: the name every node's hero_proc knows it by.
    let out = run(env
        .cmd("hero_usage_push")
        .args(["--print-schedule", "hero_proc"]));
    out.exit(0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["name"], "hero_usage_billing_cron");
}

/// The crontab line's minute past the hour: derived from the node name
/// (the same for it whatever else changes; spread over a fleet), so that
/// many nodes do not all hit the forge at :00.
#[test]
fn the_cron_minute_is_derived_from_the_node_name() {
    let env = TestEnv::new();
    let minute = |node: &str, spool: &str| -> u32 {
        let out = run(env
            .cmd("hero_usage_push")
            .args(["--print-schedule", "cron", "--spool", spool])
            .env("HERO_NODE_ID", node));
        out.exit(0);
        let line = stdout(&out);
        line.split_whitespace().next().unwrap().parse().unwrap()
    };
    let fleet: Vec<u32> = (0..8)
        .map(|i| minute(&format!("node-{i}"), "/srv/a"))
        .collect();
    for (i, m) in fleet.iter().enumerate() {
        assert!(*m < 60);
        assert_eq!(minute(&format!("node-{i}"), "/srv/b"), *m, "node-{i}");
    }
    let distinct: std::collections::BTreeSet<_> = fleet.iter().collect();
    assert!(distinct.len() > 2, "eight nodes at minutes {fleet:?}");
    // The systemd timer fires at the node's minute too.
    let out = run(env
        .cmd("hero_usage_push")
        .args(["--print-schedule", "systemd", "--spool", "/srv/a"])
        .env("HERO_NODE_ID", "node-0"));
    out.exit(0);
    out.stdout_has(&format!("OnCalendar=*-*-* *:{:02}:00\n", fleet[0]));
}

#[test]
fn a_token_only_in_this_shell_is_a_note_with_the_fix() {
    let env = TestEnv::new();
    let out = run(env
        .cmd("hero_usage_push")
        .args(["--print-schedule", "cron"])
        .env("HERO_USAGE_FORGEJO_URL", "https://forge.example.org")
        .env("HERO_USAGE_FORGEJO_TOKEN", "a-token-value-123"));
    out.exit(0);
    let (o, e) = (stdout(&out), stderr(&out));
    assert!(!o.contains("a-token-value-123") && !e.contains("a-token-value-123"));
    assert!(e.contains("HERO_USAGE_FORGEJO_TOKEN"), "{e}");
    assert!(e.contains("token_file"), "{e}");
    assert!(o.contains("--forgejo-url https://forge.example.org"), "{o}");
    // In the config file, it reaches the scheduler: no note.
    let cfg = env.path("hero_usage.toml");
    write_private(&env.path("tok"), "a-token-value-123\n");
    std::fs::write(
        &cfg,
        "forgejo_url = \"https://forge.example.org\"\ntoken_file = \"tok\"\n",
    )
    .unwrap();
    let out = run(env
        .cmd("hero_usage_push")
        .args(["--print-schedule", "cron", "--config"])
        .arg(&cfg));
    out.exit(0);
    assert!(!stderr(&out).contains("note:"), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("--config {}", cfg.display())));
}

#[test]
fn a_control_character_in_any_schedule_is_refused() {
    let env = TestEnv::new();
    for scheduler in ["cron", "systemd", "hero_proc"] {
        let out = run(env
            .cmd("hero_usage_push")
            .args(["--print-schedule", scheduler])
            .env("HERO_USAGE_SPOOL", env.path("sp\nool")));
        out.exit(78);
        assert!(stdout(&out).is_empty(), "{scheduler}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("control character"),
            "{}",
            stderr(&out)
        );
        let out = run(env
            .cmd("hero_usage_push")
            .args(["--print-schedule", scheduler, "--token-file"])
            .arg(env.path("tok\u{1b}en")));
        out.exit(78);
    }
}

fn systemd_units(env: &TestEnv, dir: &Path) -> String {
    let cfg = env.path("cfg.toml");
    std::fs::write(&cfg, "forgejo_url = \"https://f.example.org\"\ntoken_file = \"/etc/tok\"\nadmin_secret_file = \"/etc/sec\"\n").unwrap();
    let out = run(env
        .cmd("hero_usage_push")
        .args(["--print-schedule", "systemd", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(dir));
    out.exit(0);
    // Root alone is told about --service-user; nothing else is noted.
    let err = stderr(&out);
    assert!(
        err.lines()
            .all(|l| my_uid() == 0 && l.contains("--service-user NAME")),
        "{err}"
    );
    stdout(&out)
}

#[test]
fn systemd_units_run_as_the_printing_user_and_verify() {
    let env = TestEnv::new();
    let dir = env.path("units");
    let printed = systemd_units(&env, &dir);
    let names = [
        "hero_usage_push.service",
        "hero_usage_push.timer",
        "hero_usage_shim.service",
    ];
    for n in names {
        assert!(
            printed.contains(&format!("wrote {}", dir.join(n).display())),
            "{printed}"
        );
    }
    let service = std::fs::read_to_string(dir.join(names[0])).unwrap();
    let timer = std::fs::read_to_string(dir.join(names[1])).unwrap();
    let root = my_uid() == 0;
    if root {
        assert!(service.contains("\nUser=root\nGroup="), "{service}");
        assert!(
            printed.contains("systemctl enable --now hero_usage_push.timer"),
            "{printed}"
        );
    } else {
        assert!(!service.contains("User="), "{service}");
        assert!(printed.contains("systemctl --user enable --now hero_usage_push.timer"));
        assert!(printed.contains("loginctl enable-linger"));
    }
    assert!(printed.contains("daemon-reload"), "{printed}");
    assert!(
        timer.contains("RandomizedDelaySec=3600\nFixedRandomDelay=true\n"),
        "{timer}"
    );
    let Some(analyze) = which("systemd-analyze") else {
        eprintln!("skipped systemd-analyze verify: systemd-analyze is not installed");
        return;
    };
    let o = run(Command::new(analyze)
        .arg("verify")
        .args(names.map(|n| dir.join(n))));
    let err = stderr(&o);
    // Outside a booted systemd the tool may not run at all; say so.
    if err.contains("Failed to initialize manager") || err.contains("System has not been booted") {
        eprintln!("skipped systemd-analyze verify: {err}");
        return;
    }
    o.exit(0);
    assert!(!err.contains("hero_usage"), "{err}");
}

#[test]
fn relative_paths_in_a_config_file_are_beside_it() {
    let env = TestEnv::new();
    let cfg_dir = env.path("cfg");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    std::fs::write(cfg_dir.join("hero_usage.toml"), "spool = \"q\"\n").unwrap();
    let elsewhere = env.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let out = run(env
        .cmd("hero_usage_status")
        .arg("--json")
        .env_remove("HERO_USAGE_SPOOL")
        .env("HERO_USAGE_CONFIG", "../cfg/hero_usage.toml")
        .current_dir(&elsewhere));
    out.exit(0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let spool = PathBuf::from(v["spool"].as_str().unwrap());
    assert_eq!(spool, elsewhere.join("../cfg/q"), "{v}");
    assert_eq!(
        spool.parent().unwrap().canonicalize().unwrap(),
        cfg_dir.canonicalize().unwrap()
    );
}

#[test]
fn check_shows_sources_probes_and_exits_as_a_push_would() {
    let (forge, ro) = forge_with_read_only();
    let op = Op::new(&forge);
    let out = run(op.push().args(["--check", "--node", "n-flag"]));
    out.exit(0);
    let text = stdout(&out);
    assert!(!text.contains(&forge.token()), "the token leaked");
    for want in [
        "node             flag      n-flag",
        "forgejo_url      env",
        &format!(
            "token            env       file {}",
            op.token_file.display()
        ),
        "repo             env       billing-bot/billing",
        "branch           default",
        "ok   the token is accepted: user billing-bot",
        "does not exist yet; the token may create it under user billing-bot",
        "check: a push would exit 0",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    // Nothing changed: no repository, no spool.
    assert!(!forge.bare_repo("billing-bot", "billing").exists());
    assert!(!op.env.spool.exists());
    // An existing repository, a token that may only read it: 77.
    forge.create_repo("billing-bot", "billing", true);
    let ro_file = op.env.path("ro");
    write_private(&ro_file, &ro);
    let out = run(op
        .push()
        .arg("--check")
        .env("HERO_USAGE_FORGEJO_TOKEN_FILE", &ro_file));
    out.exit(77);
    assert!(
        stdout(&out).contains("the token may not write it (403)"),
        "{}",
        stdout(&out)
    );
    let out = run(op.push().arg("--check"));
    out.exit(0);
    assert!(
        stdout(&out).contains("exists; the token may write it"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn check_names_a_wrong_base_url_as_such() {
    let forge = TestForge::start(ForgeOptions::default());
    let op = Op::new(&forge);
    for url in [format!("{}/api/v1", op.url), format!("{}/web", op.url)] {
        let out = run(op
            .push()
            .args(["--check", "--repo", "nobody/x", "--forgejo-url", &url]));
        out.exit(78);
        let text = stdout(&out);
        assert!(text.contains("is --forgejo-url the base URL?"), "{text}");
        assert!(!text.contains("neither an organisation"), "{text}");
        // Remote bodies stay on one line each.
        assert!(text.lines().all(|l| l.len() < 600), "{text}");
    }
    let bad = op.env.path("bad");
    write_private(&bad, "not-the-token-123\n");
    let out = run(op
        .push()
        .arg("--check")
        .env("HERO_USAGE_FORGEJO_TOKEN_FILE", &bad));
    out.exit(77);
    let out = run(op
        .push()
        .arg("--check")
        .env_remove("HERO_USAGE_FORGEJO_URL"));
    out.exit(78);
    assert!(
        stdout(&out).contains("FAIL settings: no Forgejo URL"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn push_names_a_wrong_base_url_as_such() {
    let forge = TestForge::start(ForgeOptions::default());
    let op = Op::new(&forge);
    record(&op.env, "k1");
    for url in [format!("{}/api/v1", op.url), format!("{}/web", op.url)] {
        let out = run(op.push().args(["--once", "--forgejo-url", &url]));
        out.exit(78);
        let text = stderr(&out);
        assert!(text.contains("is --forgejo-url the base URL?"), "{text}");
        assert!(!text.contains("neither an organisation"), "{text}");
    }
}

#[test]
fn a_secret_file_open_to_others_is_a_warning_naming_chmod() {
    let forge = TestForge::start(ForgeOptions::default());
    let op = Op::new(&forge);
    std::fs::set_permissions(&op.token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(op.push().arg("--quiet"));
    out.exit(0);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("token file {}", op.token_file.display())),
        "{err}"
    );
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&op.token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run(&mut op.push());
    out.exit(0);
    assert!(!stderr(&out).contains("chmod"), "{}", stderr(&out));
}

#[test]
fn quiet_prints_only_on_failure() {
    let forge = TestForge::start(ForgeOptions::default());
    let op = Op::new(&forge);
    let out = run(op.push().arg("--quiet"));
    out.exit(0);
    assert!(
        stdout(&out).is_empty() && stderr(&out).is_empty(),
        "{}",
        stdout(&out)
    );
    record(&op.env, "k1");
    let out = run(op.push().arg("--quiet").env("HERO_USAGE_REPO", "nobody/x"));
    out.fails();
    assert!(!stderr(&out).is_empty());
}

#[test]
fn prometheus_shows_the_last_success_even_after_a_failure() {
    let forge = TestForge::start(ForgeOptions::default());
    let op = Op::new(&forge);
    let metric = |op: &Op| {
        let out = run(op.env.cmd("hero_usage_status").arg("--prometheus"));
        out.exit(0);
        let text = stdout(&out);
        assert!(
            text.contains("# TYPE hero_usage_last_success_timestamp_seconds gauge"),
            "{text}"
        );
        text.lines()
            .find(|l| l.starts_with("hero_usage_last_success_timestamp_seconds{"))
            .and_then(|l| l.rsplit(' ').next())
            .map(|v| v.parse::<f64>().unwrap())
            .unwrap()
    };
    assert_eq!(metric(&op), 0.0);
    run(&mut op.push()).exit(0);
    let first = metric(&op);
    let now = chrono::Utc::now().timestamp() as f64;
    assert!((now - first).abs() < 120.0, "{first} vs {now}");
    record(&op.env, "k1");
    let out = run(op
        .push()
        .env("HERO_USAGE_FORGEJO_URL", "http://127.0.0.1:1"));
    out.exit(75);
    assert_eq!(metric(&op), first);
}

#[test]
fn every_help_ends_at_its_man_page_and_completions_generate() {
    for b in [
        "hero_usage_record",
        "hero_usage_push",
        "hero_usage_shim",
        "hero_usage_status",
    ] {
        let out = run(Command::new(bin(b)).arg("--help"));
        out.exit(0);
        let help = stdout(&out);
        assert!(
            help.trim_end().ends_with(&format!("See man 1 {b}.")),
            "{help}"
        );
        assert!(help.contains("--completions <SHELL>"), "{help}");
        for shell in ["bash", "zsh", "fish"] {
            let out = run(Command::new(bin(b)).args(["--completions", shell]));
            out.exit(0);
            assert!(stdout(&out).contains(b), "{b} {shell}");
        }
    }
    let out = run(Command::new(bin("hero_usage_push")).args(["--completions", "tcsh"]));
    out.exit(64);
}

#[test]
fn install_script_installs_a_tree_man_reads_and_is_idempotent() {
    let env = TestEnv::new();
    let prefix = env.path("prefix with space");
    let from = bin("hero_usage_push").parent().unwrap().to_path_buf();
    let script = repo_root().join("scripts/install.sh");
    let mut listing = Vec::new();
    for _ in 0..2 {
        let out = run(Command::new("bash")
            .arg(&script)
            .arg("--prefix")
            .arg(&prefix)
            .arg("--no-build")
            .arg("--from")
            .arg(&from)
            .env("HOME", &env.home));
        out.exit(0);
        assert!(stdout(&out).contains("MANPATH"), "{}", stdout(&out));
        listing.push(crate::support::files_under(&prefix));
    }
    assert_eq!(listing[0], listing[1]);
    for rel in [
        "bin/hero_usage_push",
        "bin/hero_usage_record",
        "bin/hero_usage_shim",
        "bin/hero_usage_status",
        "share/man/man1/hero_usage_push.1",
        "share/man/man5/hero_usage_spool.5",
        "share/man/man7/hero_usage.7",
        "share/bash-completion/completions/hero_usage_push",
        "share/zsh/site-functions/_hero_usage_push",
        "share/fish/vendor_completions.d/hero_usage_push.fish",
        "share/doc/hero_usage/hero_usage.toml.example",
    ] {
        assert!(prefix.join(rel).is_file(), "{rel} not installed");
    }
    let out = run(Command::new(prefix.join("bin/hero_usage_status")).arg("--version"));
    out.exit(0);
    let Some(man) = which("man") else {
        eprintln!("skipped man -M: man is not installed (.ci/run installs man-db)");
        return;
    };
    let out = run(Command::new(man)
        .arg("-M")
        .arg(prefix.join("share/man"))
        .args(["-P", "cat", "7", "hero_usage"])
        .env("MANWIDTH", "80"));
    out.exit(0);
    assert!(stdout(&out).contains("hero_usage"), "{}", stdout(&out));
}

#[test]
fn the_example_config_holds_every_setting_and_loads() {
    let env = TestEnv::new();
    let text = std::fs::read_to_string(repo_root().join("hero_usage.toml.example")).unwrap();
    // Every key, commented out, with an absolute path where it is a path.
    for key in [
        "spool",
        "node",
        "forgejo_url",
        "token_file",
        "repo",
        "branch",
        "admin_secret_file",
        "listen",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("# {key} = ")) || l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("{key} missing"));
        if key.ends_with("file") || key == "spool" {
            assert!(line.contains("= \"/"), "{line}");
        }
    }
    // Uncommented, it is a valid config file.
    let cfg = env.path("c.toml");
    let uncommented: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("# ").filter(|l| l.contains(" = ")))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&cfg, uncommented).unwrap();
    let out = run(env
        .cmd("hero_usage_push")
        .args(["--check", "--config"])
        .arg(&cfg)
        .env_remove("HERO_NODE_ID"));
    // It loads (no unknown key, 78 only from the token file missing).
    assert!(!stdout(&out).contains("unknown field"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("config           flag"),
        "{}",
        stdout(&out)
    );
}

/// A web server that is not Forgejo: every request gets the same HTML page.
fn plain_web_server() -> String {
    fake_server(|_| {
        let body = "<html>\n<body>\nWelcome to nginx!\n</body>\n</html>\n";
        ("200 OK", "text/html", body)
    })
}

#[test]
fn check_names_a_web_server_that_is_not_forgejo() {
    let forge = TestForge::start(ForgeOptions::default());
    let op = Op::new(&forge);
    let url = plain_web_server();
    let out = run(op.push().args(["--check", "--forgejo-url", &url]));
    out.exit(78);
    let text = stdout(&out);
    let fail = text.lines().find(|l| l.starts_with("FAIL")).unwrap();
    assert!(fail.contains("is --forgejo-url the base URL?"), "{text}");
    assert!(fail.contains("<html> <body> Welcome to nginx!"), "{text}");
}

#[test]
fn the_shim_warns_about_an_admin_secret_open_to_others() {
    let env = TestEnv::new();
    let secret = env.path("secret");
    std::fs::write(&secret, "a-long-admin-secret\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
    // A port in use: the shim gives up after the settings are read.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = run(env
        .cmd("hero_usage_shim")
        .arg("--listen")
        .arg(busy.local_addr().unwrap().to_string())
        .arg("--admin-secret-file")
        .arg(&secret));
    out.fails();
    let err = stderr(&out);
    assert!(
        err.contains(&format!("warning: admin secret file {}", secret.display())),
        "{err}"
    );
    assert!(err.contains("chmod 600"), "{err}");
}

/// A server that answers Forgejo's version and user with control
/// characters in them, and 404 to anything else.
fn hostile_forge() -> String {
    fake_server(|head| {
        let (status, body) = if head.contains(" /api/v1/version ") {
            ("200 OK", r#"{"version":"1.0\u001b[2J"}"#)
        } else if head.contains(" /api/v1/user ") {
            ("200 OK", r#"{"login":"bot\u001b]0;owned\u0007"}"#)
        } else {
            ("404 Not Found", r#"{"message":"not\u001b[31m found"}"#)
        };
        (status, "application/json", body)
    })
}

#[test]
fn check_shows_what_a_server_says_escaped_never_raw() {
    let forge = TestForge::start(ForgeOptions::default());
    let op = Op::new(&forge);
    let url = hostile_forge();
    let out = run(op
        .push()
        .args(["--check", "--repo", "someorg/x", "--forgejo-url", &url]));
    let text = stdout(&out);
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
    assert!(text.contains("version 1.0\\u{1b}[2J"), "{text}");
    assert!(text.contains("user bot\\u{1b}]0;owned\\u{7}"), "{text}");
}

#[test]
fn install_script_with_a_relative_prefix_prints_absolute_paths() {
    // `export PATH="rel/bin:$PATH"` would work only in the install directory.
    let env = TestEnv::new();
    let cwd = env.path("here");
    std::fs::create_dir_all(&cwd).unwrap();
    let from = bin("hero_usage_push").parent().unwrap().to_path_buf();
    let out = run(Command::new("bash")
        .arg(repo_root().join("scripts/install.sh"))
        .args(["--prefix", "rel", "--no-build", "--from"])
        .arg(&from)
        .current_dir(&cwd)
        .env("HOME", &env.home));
    out.exit(0);
    let abs = std::fs::canonicalize(cwd.join("rel")).unwrap();
    assert!(abs.join("bin/hero_usage_push").is_file());
    let text = stdout(&out);
    assert!(
        text.contains(&format!("export PATH=\"{}/bin:", abs.display())),
        "{text}"
    );
    assert!(
        text.contains(&format!("MANPATH=\"{}/share/man:", abs.display())),
        "{text}"
    );
}

#[test]
fn the_readme_token_step_works_as_written_on_a_fresh_home() {
    // Production setup, step 2: on a fresh node ~/hero/cfg does not exist yet.
    let env = TestEnv::new();
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let step = readme
        .lines()
        .find(|l| l.contains("> ~/hero/cfg/forgejo_token"))
        .expect("the README's token step")
        .trim();
    let home = env.path("fresh-home");
    std::fs::create_dir_all(&home).unwrap();
    let out = run(Command::new("bash")
        .args(["-c", &format!("umask 022; {step}\numask")])
        .env("HOME", &home)
        .env("TOKEN", "0123456789abcdef0123"));
    out.exit(0);
    let token = home.join("hero/cfg/forgejo_token");
    assert_eq!(
        std::fs::read_to_string(&token).unwrap(),
        "0123456789abcdef0123\n"
    );
    let mode = std::fs::metadata(&token).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The operator's shell keeps its own umask.
    assert_eq!(stdout(&out).trim(), "0022");
}

#[test]
fn check_exits_78_for_a_spool_of_another_node_as_the_push_would() {
    let forge = TestForge::start(ForgeOptions::default());
    let op = Op::new(&forge);
    let out = run(op.push().arg("--check"));
    out.exit(0);
    assert!(
        stdout(&out).contains("does not exist yet"),
        "{}",
        stdout(&out)
    );
    assert!(!op.env.spool.exists(), "--check creates nothing");
    record(&op.env, "k1");
    let check = run(op.push().arg("--check").env("HERO_NODE_ID", "renamed-node"));
    let push = run(op.push().env("HERO_NODE_ID", "renamed-node"));
    push.exit(78);
    check.exit(78);
    let text = stdout(&check);
    let fail = text
        .lines()
        .find(|l| l.starts_with("FAIL spool"))
        .unwrap_or("");
    assert!(
        fail.contains(&op.env.node) && fail.contains("renamed-node"),
        "{text}"
    );
    let out = run(op.push().arg("--check"));
    out.exit(0);
    assert!(stdout(&out).contains(&format!("belongs to node {}", op.env.node)));
}

#[test]
fn a_relative_out_dir_gives_install_commands_that_work_from_anywhere() {
    let env = TestEnv::new();
    let cwd = env.path("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let cfg = env.path("cfg.toml");
    std::fs::write(&cfg, "forgejo_url = \"https://f.example.org\"\ntoken_file = \"/etc/tok\"\nadmin_secret_file = \"/etc/sec\"\n").unwrap();
    for scheduler in ["systemd", "cron", "hero_proc"] {
        let out = run(env
            .cmd("hero_usage_push")
            .args(["--print-schedule", scheduler, "--out", "units", "--config"])
            .arg(&cfg)
            .current_dir(&cwd));
        out.exit(0);
        let abs = cwd.join("units");
        let text = stdout(&out);
        assert!(text.contains(&format!("{}/", abs.display())), "{text}");
        assert!(!text.contains(" units/"), "{text}");
    }
}

#[test]
fn the_open_secret_warning_escapes_the_name_and_quotes_the_chmod() {
    let forge = TestForge::start(ForgeOptions::default());
    let op = Op::new(&forge);
    let odd = op.env.path("my token\x1b[31m");
    std::fs::write(&odd, format!("{}\n", forge.token())).unwrap();
    std::fs::set_permissions(&odd, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(op.push().env("HERO_USAGE_FORGEJO_TOKEN_FILE", &odd));
    out.exit(0);
    let err = stderr(&out);
    assert!(!err.contains('\x1b'), "{err:?}");
    assert!(err.contains("my token\\u{1b}[31m"), "{err}");
    assert!(err.contains("chmod 600 '"), "{err}");
}

/// `systemd-analyze security --offline=yes UNIT`'s overall exposure, or
/// why it could not be had.
fn exposure(analyze: &Path, unit: &Path) -> Result<f64, String> {
    let o = run(Command::new(analyze)
        .args(["security", "--offline=yes"])
        .arg(unit));
    let text = format!("{}{}", stdout(&o), stderr(&o));
    text.lines()
        .find_map(|l| l.split("Overall exposure level for ").nth(1))
        .and_then(|rest| rest.split(": ").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or(text)
}

#[test]
fn units_for_a_service_user_are_sandboxed_to_an_exposure_of_at_most_3() {
    let env = TestEnv::new();
    let dir = env.path("units");
    let cfg = env.path("etc/hero_usage.toml");
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(&cfg, "forgejo_url = \"https://f.example.org\"\ntoken_file = \"/etc/hero_usage/token\"\nadmin_secret_file = \"/etc/hero_usage/secret\"\n").unwrap();
    let out = run(print_system_units(&env)
        .arg("--config")
        .arg(&cfg)
        .args([
            "--status-out",
            "/var/lib/prometheus/node-exporter/hero_usage.prom",
        ])
        .arg("--out")
        .arg(&dir));
    out.exit(0);
    let printed = stdout(&out);
    assert!(
        printed.contains("install -d -m 700 -o hero-usage /var/lib/hero_usage/queue"),
        "{printed}"
    );
    assert!(
        printed.contains("systemctl enable --now hero_usage_status.timer"),
        "{printed}"
    );
    let services = [
        "hero_usage_push.service",
        "hero_usage_shim.service",
        "hero_usage_status.service",
    ];
    for name in services {
        let unit = std::fs::read_to_string(dir.join(name)).unwrap();
        assert!(unit.contains("\nUser=hero-usage\n"), "{unit}");
        assert!(!unit.contains("Group="), "{unit}");
        assert!(unit.contains("\nProtectSystem=strict\n"), "{unit}");
    }
    let push = std::fs::read_to_string(dir.join(services[0])).unwrap();
    assert!(
        push.contains("\nReadWritePaths=/var/lib/hero_usage/queue\n"),
        "{push}"
    );
    let status = std::fs::read_to_string(dir.join(services[2])).unwrap();
    assert!(
        status.contains(" --prometheus --out /var/lib/prometheus/node-exporter/hero_usage.prom "),
        "{status}"
    );
    let timer = std::fs::read_to_string(dir.join("hero_usage_status.timer")).unwrap();
    assert!(timer.contains("\nOnCalendar=minutely\n"), "{timer}");

    let Some(analyze) = which("systemd-analyze") else {
        eprintln!("skipped systemd-analyze security: systemd-analyze is not installed");
        return;
    };
    // And the Debian package's units (debian/units/, the same renderer's).
    let shipped = repo_root().join("debian/units");
    let units = services
        .iter()
        .map(|name| dir.join(name))
        .chain(services.iter().map(|name| shipped.join(name)));
    for unit in units {
        let name = unit.display();
        match exposure(&analyze, &unit) {
            Ok(score) => {
                eprintln!("systemd-analyze security --offline=yes {name}: exposure {score}");
                assert!(score <= 3.0, "{name}: exposure {score} > 3.0");
            }
            // systemd before 250 has no --offline.
            Err(why) if why.contains("offline") => {
                eprintln!("skipped systemd-analyze security: {why}");
                return;
            }
            Err(why) => panic!("no exposure for {name}: {why}"),
        }
    }
}

#[test]
fn a_service_user_name_is_checked() {
    let env = TestEnv::new();
    for bad in ["Root", "a b", "-x", "a\nb", ""] {
        let out = run(env
            .cmd("hero_usage_push")
            .args(["--print-schedule", "systemd"])
            .arg(format!("--service-user={bad}")));
        out.exit(64);
        assert!(stderr(&out).contains("--service-user"), "{}", stderr(&out));
    }
}
