//! The shipped scripts as an operator runs them: the smoke test against a
//! forge that fails. Real scripts, real binaries, the test forge on loopback.

use crate::support::{TestEnv, bin, repo_root, run, stderr, stdout};
use hero_usage_test_forge::{Fault, ForgeOptions, TestForge};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The first `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

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
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", stderr(&out));
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
