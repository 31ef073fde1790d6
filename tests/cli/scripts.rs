//! The shipped scripts as an operator runs them: the smoke test against a
//! forge that fails. Real scripts, real binaries, the test forge on loopback.

use crate::support::{Run, TestEnv, bin, repo_root, run, stderr, stdout, which};
use hero_usage_test_forge::{Fault, ForgeOptions, TestForge};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A directory holding `curl`, a stand-in that appends its arguments (one a
/// line) to `log`, then runs the real curl: what `ps` would have shown.
fn logging_curl(dir: &Path, log: &Path) -> PathBuf {
    let real = which("curl").expect("curl installed (.ci/run installs it)");
    let shims = dir.join("shims");
    std::fs::create_dir_all(&shims).unwrap();
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$@\" >>'{}'\nexec '{}' \"$@\"\n",
        log.display(),
        real.display()
    );
    let curl = shims.join("curl");
    std::fs::write(&curl, script).unwrap();
    std::fs::set_permissions(&curl, std::fs::Permissions::from_mode(0o755)).unwrap();
    shims
}

#[test]
fn smoke_against_a_failing_forge_says_what_it_waits_for_and_keeps_the_token_off_curls_command_line()
{
    let forge = TestForge::start(ForgeOptions::default());
    // Every commit fails as an overloaded server's would.
    forge.inject(Fault::fail("POST", "/contents", 503, "overloaded").times(1000));
    let env = TestEnv::new();
    let log = env.path("curl_args");
    let shims = logging_curl(env.dir.path(), &log);
    let path = format!(
        "{}:{}",
        shims.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let tmp = env.path("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let started = Instant::now();
    let out = run(Command::new("bash")
        .arg(repo_root().join("scripts/smoke_usage_push.sh"))
        .env("PATH", path)
        .env("TMPDIR", &tmp)
        .env("FORGEJO_URL", forge.base_url())
        .env("FORGEJO_TOKEN", forge.token())
        .env(
            "HERO_USAGE_BIN_DIR",
            bin("hero_usage_push").parent().unwrap(),
        )
        // The shim's 30 s push-now window, shortened (debug builds only).
        .env("HERO_USAGE_TEST_RETRY_MS", "5,50,1500"));
    let took = started.elapsed();
    let text = stdout(&out);
    out.exit_for(1, &text);
    let wait = text
        .find("...  push-usage-now through the shim")
        .unwrap_or_else(|| panic!("no progress line before the push: {text}"));
    let failed = text
        .find("FAIL push-usage-now")
        .unwrap_or_else(|| panic!("the failed push is not reported: {text}"));
    assert!(wait < failed, "{text}");
    assert!(
        text.contains("skipped the checks that need the push"),
        "{text}"
    );
    assert!(
        text.contains("ok   cleanup: deleted scratch repository"),
        "{text}"
    );
    assert!(text.contains("smoke test FAILED"), "{text}");
    assert!(took < Duration::from_secs(30), "took {took:?}: {text}");
    // What curl was given on its command line: the header files, never
    // the token or the admin secret.
    let args = std::fs::read_to_string(&log).unwrap();
    assert!(args.lines().any(|a| a.starts_with('@')), "{args}");
    assert!(
        !args.contains(&forge.token()),
        "the token is on curl's command line"
    );
    assert!(
        !args.contains("X-Hero-Onboarding-Admin-Secret"),
        "the admin secret header is on curl's command line: {args}"
    );
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "work dir left");
}

/// `scripts/install.sh ARGS` with `home` as HOME (no XDG overrides).
fn install_sh(home: &Path, args: &[&str]) -> std::process::Output {
    run(Command::new("bash")
        .arg(repo_root().join("scripts/install.sh"))
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_DATA_HOME")
        .env_remove("BASH_COMPLETION_USER_DIR"))
}

fn debug_bin_dir() -> String {
    bin("hero_usage_push")
        .parent()
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn install_uninstall_removes_what_it_installed_and_nothing_else() {
    let env = TestEnv::new();
    let home = &env.home;
    let prefix = home.join("hero");
    // What the operator made under the same tree: never the script's to remove.
    let config = prefix.join("cfg/hero_usage.toml");
    let spool_file = prefix.join("var/hero_usage/queue/pending/x.toml");
    let own_tool = prefix.join("bin/my_tool");
    for f in [&config, &spool_file, &own_tool] {
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, "mine\n").unwrap();
    }
    let out = install_sh(home, &["--no-build", "--from", &debug_bin_dir()]);
    out.exit(0);
    let manifest = prefix.join("share/hero_usage/installed");
    let listed = std::fs::read_to_string(&manifest).unwrap();
    let bash_user = home.join(".local/share/bash-completion/completions/hero_usage_push");
    assert!(bash_user.is_file(), "{}", stdout(&out));
    assert!(
        listed.contains(&format!("f {}\n", bash_user.display())),
        "{listed}"
    );
    // An upgrade drops what the old version installed and the new one does not.
    let old = prefix.join("bin/hero_usage_retired");
    std::fs::write(&old, "old\n").unwrap();
    std::fs::write(&manifest, format!("{listed}f {}\n", old.display())).unwrap();
    install_sh(home, &["--no-build", "--from", &debug_bin_dir()]).exit(0);
    assert!(!old.exists(), "a file the old version installed is left");
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), listed);

    let out = install_sh(home, &["--uninstall"]);
    out.exit(0);
    let left: Vec<PathBuf> = crate::support::files_under(home);
    assert_eq!(left, {
        let mut v = vec![config.clone(), spool_file.clone(), own_tool.clone()];
        v.sort();
        v
    });
    assert!(!home.join(".local/share/bash-completion").exists());
    assert!(!prefix.join("share").exists(), "empty directories are left");
    assert!(
        stdout(&out).contains("kept: your config"),
        "{}",
        stdout(&out)
    );
    // A second uninstall finds no manifest and says so.
    let out = install_sh(home, &["--uninstall"]);
    out.exit(66);
    assert!(stderr(&out).contains("no manifest"), "{}", stderr(&out));
}

#[test]
fn install_without_cargo_suggests_no_build_from() {
    let env = TestEnv::new();
    // A PATH with the tools the script needs before it builds, and no cargo.
    let tools = env.path("tools");
    std::fs::create_dir_all(&tools).unwrap();
    std::os::unix::fs::symlink(which("dirname").unwrap(), tools.join("dirname")).unwrap();
    let out = run(Command::new(which("bash").unwrap())
        .arg(repo_root().join("scripts/install.sh"))
        .env("HOME", &env.home)
        .env("PATH", &tools));
    out.exit(69);
    let err = stderr(&out);
    assert!(err.contains("cargo is not installed"), "{err}");
    assert!(err.contains("--no-build --from DIR"), "{err}");
    assert!(
        !env.home.join("hero").exists(),
        "installed something anyway"
    );
}

#[test]
fn bash_finds_the_completions_of_a_home_install() {
    let loader = Path::new("/usr/share/bash-completion/bash_completion");
    if !loader.is_file() {
        eprintln!("skipped: bash-completion is not installed (.ci/run installs it)");
        return;
    }
    let env = TestEnv::new();
    let out = install_sh(&env.home, &["--no-build", "--from", &debug_bin_dir()]);
    out.exit(0);
    for b in ["hero_usage_push", "hero_usage_audit"] {
        // What a new interactive bash does on the first TAB after the name.
        let script = format!(
            "source {}; PATH=\"$HOME/hero/bin:$PATH\"; __load_completion {b} && complete -p {b}",
            loader.display()
        );
        let out = run(Command::new("bash")
            .args(["-c", &script])
            .env("HOME", &env.home)
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_DATA_DIRS")
            .env_remove("BASH_COMPLETION_USER_DIR"));
        out.exit(0);
        assert!(
            stdout(&out).contains(&format!("-F _{b} {b}")),
            "{}",
            stdout(&out)
        );
    }
}
