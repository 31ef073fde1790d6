//! Every EXAMPLES block of every man page, run as a reader would paste it:
//! in one bash session per page, in a scratch home whose node is set up as
//! `man 7 hero_usage` says (a config file at the default path naming the
//! test forge, the token file and the repository), with PATH at the built
//! binaries. Addresses that only exist on a reader's machine (a Forgejo at
//! :3000, the shim's :9920, node_exporter's directory, the forge's clone
//! URL) are replaced by the test's own, each replacement required to match,
//! so that an example that drifts from what the binaries do fails here.

use crate::support::{Run, TestEnv, bin, repo_root, run, stderr, stdout};
use hero_usage_test_forge::{ForgeOptions, TestForge};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// The roff of one line of an example, as the reader sees it.
fn unroff(line: &str) -> String {
    line.replace("\\-", "-")
        .replace("\\(aq", "'")
        .replace("\\(dq", "\"")
        .replace("\\(ga", "`")
        .replace("\\en", "\\n")
        .replace("\\e", "\\")
        .replace("\\&", "")
}

/// The example blocks (`.EX`/`.EE` or `.nf`/`.fi`) of `page`'s EXAMPLES
/// section, as shell text.
pub fn example_blocks(page: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("man").join(page)).unwrap();
    let mut blocks = Vec::new();
    let mut in_section = false;
    let mut block: Option<Vec<String>> = None;
    for line in text.lines() {
        if let Some(head) = line.strip_prefix(".SH ") {
            in_section = head.trim() == "EXAMPLES";
            continue;
        }
        if !in_section {
            continue;
        }
        match line {
            ".EX" | ".nf" => block = Some(Vec::new()),
            ".EE" | ".fi" => blocks.extend(block.take().map(|b| b.join("\n") + "\n")),
            l if l.starts_with('.') => {} // .RS, .RE, comments
            l => {
                if let Some(b) = block.as_mut() {
                    b.push(unroff(l));
                }
            }
        }
    }
    blocks
}

/// A stand-in for `crontab` that keeps the table in `$HOME/crontab`: the
/// examples must not touch the real user's.
fn stand_ins(dir: &Path) -> std::path::PathBuf {
    let d = dir.join("stand-ins");
    std::fs::create_dir_all(&d).unwrap();
    let crontab = d.join("crontab");
    std::fs::write(
        &crontab,
        "#!/bin/sh\ncase \"$1\" in\n-l) cat \"$HOME/crontab\" 2>/dev/null || exit 1 ;;\n\
         -) cat >\"$HOME/crontab\" ;;\n*) exit 2 ;;\nesac\n",
    )
    .unwrap();
    std::fs::set_permissions(&crontab, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A reader's node: a scratch home with the config `man 7 hero_usage`
/// describes, against `forge`.
struct Reader<'a> {
    env: TestEnv,
    forge: &'a TestForge,
    shim: String,
    work: std::path::PathBuf,
}

impl Reader<'_> {
    fn new(forge: &TestForge) -> Reader<'_> {
        let env = TestEnv::new();
        let cfg = env.home.join("hero/cfg");
        std::fs::create_dir_all(&cfg).unwrap();
        let token = cfg.join("forgejo_token");
        std::fs::write(&token, format!("{}\n", forge.token())).unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(
            cfg.join("hero_usage.toml"),
            format!(
                "node = \"example-node\"\nforgejo_url = \"{}\"\ntoken_file = \"{}\"\nrepo = \"billing/usage\"\n",
                forge.base_url(),
                token.display()
            ),
        )
        .unwrap();
        let work = env.path("work");
        std::fs::create_dir_all(&work).unwrap();
        Reader {
            env,
            forge,
            shim: format!("127.0.0.1:{}", free_port()),
            work,
        }
    }

    /// `page`'s examples with this machine's addresses, each replacement
    /// required to be used.
    fn script(&self, page: &str, replace: &[(&str, String)]) -> Vec<String> {
        let blocks = example_blocks(page);
        assert!(!blocks.is_empty(), "{page} has no EXAMPLES blocks");
        let all = blocks.concat();
        for (from, _) in replace {
            assert!(all.contains(from), "{page}'s examples no longer use {from}");
        }
        blocks
            .into_iter()
            .map(|b| replace.iter().fold(b, |b, (from, to)| b.replace(from, to)))
            .collect()
    }

    /// Run the blocks in one bash session (as pasted into one terminal),
    /// each followed by a check of its exit status, the shim's readiness
    /// after a block that starts it, and a stop of what it left running.
    fn run(&self, page: &str, blocks: &[String]) -> (String, String) {
        let mut script = format!(
            "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n\
             cd {work}\n",
            work = self.work.display()
        );
        for (n, b) in blocks.iter().enumerate() {
            script.push_str(b);
            script.push_str(&format!(
                "rc=$?; [ $rc = 0 ] || {{ echo \"{page}: example block {} exited $rc\" >&2; exit 1; }}\n",
                n + 1
            ));
            if b.trim_end().ends_with('&') {
                script.push_str(&format!(
                    "for i in $(seq 100); do curl -s http://{}/healthz >/dev/null && break; sleep 0.05; done\n",
                    self.shim
                ));
            }
        }
        let path = format!(
            "{}:{}:{}",
            stand_ins(self.env.dir.path()).display(),
            bin("hero_usage_push").parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        // A command that never returns (a server started in the
        // foreground) fails the test after a minute instead of hanging it;
        // timeout signals the whole process group.
        let mut cmd = Command::new("timeout");
        cmd.args(["--kill-after=5", "60", "bash", "-c"])
            .arg(&script);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("HERO_") {
                cmd.env_remove(k);
            }
        }
        let out = run(cmd
            .env("HOME", &self.env.home)
            .env("PATH", path)
            .env("TOKEN", self.forge.token())
            .env("HERO_USAGE_LISTEN", &self.shim)
            .env("HERO_USAGE_TEST_RETRY_MS", "5,50,3000"));
        let (o, e) = (stdout(&out), stderr(&out));
        out.exit_for(0, &script);
        for bad in [
            "command not found",
            "No such file or directory",
            ": error:",
            "curl: (",
        ] {
            assert!(!e.contains(bad), "{page}: {bad}\n{script}\n--- stderr\n{e}");
        }
        (o, e)
    }
}

fn forge() -> TestForge {
    TestForge::start(ForgeOptions {
        orgs: vec!["lhumina_code".into(), "billing".into()],
        ..ForgeOptions::default()
    })
}

#[test]
fn the_examples_of_hero_usage_record_run() {
    let forge = forge();
    let r = Reader::new(&forge);
    let blocks = r.script("hero_usage_record.1", &[]);
    let (out, _) = r.run("hero_usage_record.1", &blocks);
    for key in [
        "job-42-2026-11-26T16",
        "job-43-2026-11-26T16",
        "job-44-2026-11-26T16",
    ] {
        assert!(out.contains(&format!("recorded {key}\n")), "{out}");
    }
}

#[test]
fn the_examples_of_hero_usage_push_run() {
    let forge = forge();
    let r = Reader::new(&forge);
    // A record for the push to carry.
    let blocks = [
        example_blocks("hero_usage_record.1")[..1].to_vec(),
        r.script(
            "hero_usage_push.1",
            &[("http://127.0.0.1:3000", forge.base_url())],
        ),
    ]
    .concat();
    let (out, _) = r.run("hero_usage_push.1", &blocks);
    assert!(out.contains("a push would exit 0"), "{out}");
    let tab = std::fs::read_to_string(r.env.home.join("crontab")).unwrap();
    assert_eq!(tab.lines().count(), 1, "{tab}");
    assert!(tab.contains("# hero_usage_push"), "{tab}");
    assert!(
        r.env
            .home
            .join("hero/units/hero_usage_push.timer")
            .is_file()
    );
    assert!(forge.root().join("billing/usage.git").is_dir());
}

#[test]
fn the_examples_of_hero_usage_shim_run() {
    let forge = forge();
    let r = Reader::new(&forge);
    let blocks = r.script("hero_usage_shim.1", &[("127.0.0.1:9920", r.shim.clone())]);
    let (out, _) = r.run("hero_usage_shim.1", &blocks);
    assert!(out.contains("\"status\":\"recorded\""), "{out}");
    assert!(out.contains("\"pushed\":1"), "{out}");
}

#[test]
fn the_examples_of_hero_usage_status_run() {
    let forge = forge();
    let r = Reader::new(&forge);
    let textfile = r.env.path("node-exporter");
    std::fs::create_dir_all(&textfile).unwrap();
    let blocks = r.script(
        "hero_usage_status.1",
        &[(
            "/var/lib/prometheus/node-exporter",
            textfile.display().to_string(),
        )],
    );
    r.run("hero_usage_status.1", &blocks);
    let metrics = std::fs::read_to_string(textfile.join("hero_usage.prom")).unwrap();
    assert!(metrics.contains("hero_usage_pending_records"), "{metrics}");
}

#[test]
fn the_examples_of_hero_usage_spool_run() {
    let forge = forge();
    let r = Reader::new(&forge);
    let blocks = r.script("hero_usage_spool.5", &[]);
    let (out, _) = r.run("hero_usage_spool.5", &blocks);
    assert!(out.contains("incoming  1"), "{out}");
}

#[test]
fn the_examples_of_hero_usage_audit_run() {
    let forge = forge();
    let r = Reader::new(&forge);
    // The billing repository the page clones, with a push in it.
    let setup = [
        example_blocks("hero_usage_record.1")[..1].to_vec(),
        vec!["hero_usage_push --repo lhumina_code/hero_onboarding_billing >/dev/null\n".into()],
    ]
    .concat();
    let origin = forge
        .root()
        .join("lhumina_code/hero_onboarding_billing.git");
    let blocks = [
        setup,
        r.script(
            "hero_usage_audit.1",
            &[(
                "https://forge.example.org/lhumina_code/hero_onboarding_billing.git",
                origin.display().to_string(),
            )],
        ),
    ]
    .concat();
    r.run("hero_usage_audit.1", &blocks);
    assert!(r.work.join("2026-11.csv").is_file());
}

#[test]
fn every_page_with_examples_is_run_here() {
    // A page that gains an EXAMPLES section needs a test above.
    let tested = [
        "hero_usage_record.1",
        "hero_usage_push.1",
        "hero_usage_shim.1",
        "hero_usage_status.1",
        "hero_usage_spool.5",
        "hero_usage_audit.1",
    ];
    for entry in std::fs::read_dir(repo_root().join("man")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !example_blocks(&name).is_empty() {
            assert!(
                tested.contains(&name.as_str()),
                "{name}'s EXAMPLES are not run"
            );
        }
    }
}
