//! Shared test helpers: `TestEnv` owns a temporary HOME and spool and hands
//! them to the binaries through the environment, nothing else leaks in;
//! [`Run`] checks how a binary's run ended; [`forge`] holds what the tests
//! that push to the test forge share.

#![allow(dead_code)]

pub mod forge;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Checks of a finished run (a binary's [`Output`]), each printing the
/// run's stdout and stderr when it fails, chained:
/// `run(cmd).exit(65).stderr_has("conflict")`.
pub trait Run {
    /// It exited with `code`.
    #[track_caller]
    fn exit(&self, code: i32) -> &Self;
    /// It exited with `code`; `what` says which run, in a loop.
    #[track_caller]
    fn exit_for(&self, code: i32, what: &str) -> &Self;
    /// It exited with one of `codes`; `what` says which run, in a loop.
    #[track_caller]
    fn exit_in(&self, codes: &[i32], what: &str) -> &Self;
    /// It exited with anything but 0.
    #[track_caller]
    fn fails(&self) -> &Self;
    /// A signal ended it (an abort at a crash point): no exit code; `what`
    /// says which run, in a loop.
    #[track_caller]
    fn killed_for(&self, what: &str) -> &Self;
    /// Its stderr holds `needle`.
    #[track_caller]
    fn stderr_has(&self, needle: &str) -> &Self;
    /// Its stdout holds `needle`.
    #[track_caller]
    fn stdout_has(&self, needle: &str) -> &Self;
}

impl Run for Output {
    fn exit(&self, code: i32) -> &Self {
        self.exit_for(code, "")
    }

    fn exit_for(&self, code: i32, what: &str) -> &Self {
        assert_eq!(
            self.status.code(),
            Some(code),
            "{what} expected exit {code}{}",
            shown(self)
        );
        self
    }

    fn exit_in(&self, codes: &[i32], what: &str) -> &Self {
        assert!(
            self.status.code().is_some_and(|c| codes.contains(&c)),
            "{what} expected an exit in {codes:?}{}",
            shown(self)
        );
        self
    }

    fn fails(&self) -> &Self {
        assert!(!self.status.success(), "expected a failure{}", shown(self));
        self
    }

    fn killed_for(&self, what: &str) -> &Self {
        assert_eq!(
            self.status.code(),
            None,
            "{what} expected no exit code (a signal){}",
            shown(self)
        );
        self
    }

    fn stderr_has(&self, needle: &str) -> &Self {
        assert!(
            stderr(self).contains(needle),
            "stderr lacks {needle:?}{}",
            shown(self)
        );
        self
    }

    fn stdout_has(&self, needle: &str) -> &Self {
        assert!(
            stdout(self).contains(needle),
            "stdout lacks {needle:?}{}",
            shown(self)
        );
        self
    }
}

fn shown(o: &Output) -> String {
    format!(
        " ({})\n--- stdout:\n{}\n--- stderr:\n{}",
        o.status,
        stdout(o),
        stderr(o)
    )
}

/// The path of one of the package's binaries (Cargo builds them before the
/// integration tests and names them in `CARGO_BIN_EXE_<name>`).
pub fn bin(name: &str) -> PathBuf {
    let path = PathBuf::from(match name {
        "hero_usage_record" => env!("CARGO_BIN_EXE_hero_usage_record"),
        "hero_usage_push" => env!("CARGO_BIN_EXE_hero_usage_push"),
        "hero_usage_shim" => env!("CARGO_BIN_EXE_hero_usage_shim"),
        "hero_usage_status" => env!("CARGO_BIN_EXE_hero_usage_status"),
        "hero_usage_audit" => env!("CARGO_BIN_EXE_hero_usage_audit"),
        other => panic!("no binary named {other}"),
    });
    assert!(path.exists(), "{} not built", path.display());
    path
}

/// The uid of this test process (the owner of /proc/self).
pub fn my_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").unwrap().uid()
}

/// `cmd` as user `nobody` when this test runs as root (root may move any
/// directory), else as it is; `tree` is handed to that user first.
pub fn unprivileged(cmd: &Command, tree: &Path) -> Command {
    let root = my_uid() == 0;
    let mut c = if root {
        let chown = run(Command::new("chown").arg("-R").arg("65534:65534").arg(tree));
        assert!(chown.status.success(), "{}", stderr(&chown));
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(cmd.get_program());
        c
    } else {
        Command::new(cmd.get_program())
    };
    c.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c
}

/// flock(1) holding the writers' lock while it runs `command`.
pub fn hold_lock_with_flock(
    spool: &hero_usage::spool::Spool,
    command: &[&str],
) -> std::process::Child {
    drop(spool.lock_writers().unwrap()); // the lock file exists
    let lock = spool.root().join("lock");
    let child = Command::new("flock")
        .arg(&lock)
        .args(command)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("flock(1) installed");
    let f = std::fs::File::open(&lock).unwrap();
    let start = std::time::Instant::now();
    while f.try_lock().is_ok() {
        f.unlock().unwrap();
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "flock(1) never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

/// Wait until process `pid` waits for the writers' lock of `spool` (its
/// blocked flock(2) shows in /proc/locks as `N: -> FLOCK ... PID DEV:INODE`).
pub fn wait_until_waiting_for_lock(spool: &hero_usage::spool::Spool, pid: u32) {
    use std::os::unix::fs::MetadataExt;
    let ino = std::fs::metadata(spool.root().join("lock")).unwrap().ino();
    let (pid, ino) = (pid.to_string(), format!(":{ino}"));
    let start = std::time::Instant::now();
    loop {
        let locks = std::fs::read_to_string("/proc/locks").unwrap();
        let waiting = locks.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&"->")
                && f.get(5) == Some(&pid.as_str())
                && f.get(6).is_some_and(|d| d.ends_with(&ino))
        });
        if waiting {
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "process {pid} never waited for the lock:\n{locks}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A new temporary directory for a test, under the test forge's
/// [`hero_usage_test_forge::scratch_root`] (tmpfs when there is room).
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(hero_usage_test_forge::scratch_root()).expect("temp dir")
}

pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    pub spool: PathBuf,
    pub node: String,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let dir = temp_dir();
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let spool = dir.path().join("spool");
        TestEnv {
            dir,
            home,
            spool,
            node: "test-node".to_string(),
        }
    }

    /// A command for `binary` with a clean environment: HOME, spool and node
    /// from this env, no HERO_* variables from the caller.
    pub fn cmd(&self, binary: &str) -> Command {
        let mut c = Command::new(bin(binary));
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("HERO_") {
                c.env_remove(k);
            }
        }
        c.env("HOME", &self.home)
            .env("HERO_USAGE_SPOOL", &self.spool)
            .env("HERO_NODE_ID", &self.node)
            // Push retries: 5 to 50 ms waits, for at most 3 s (debug builds
            // only; tests that need a longer window set their own).
            .env("HERO_USAGE_TEST_RETRY_MS", "5,50,3000");
        c
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

/// `hero_usage_push --print-schedule systemd --service-user hero-usage
/// --spool /var/lib/hero_usage/queue`: a server's system units, as an
/// operator prints them (add the settings to carry).
pub fn print_system_units(env: &TestEnv) -> Command {
    let mut c = env.cmd("hero_usage_push");
    c.args([
        "--print-schedule",
        "systemd",
        "--service-user",
        "hero-usage",
    ])
    .args(["--spool", "/var/lib/hero_usage/queue"]);
    c
}

/// The first `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

/// Run and return output; panics only if the process could not start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("spawn binary")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every regular file below `dir` (recursively), sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    out.sort();
    out
}

/// The texts of the `.reason` files under `spool`'s `rejected/`, in name order.
pub fn rejection_reasons(spool: &Path) -> Vec<String> {
    files_under(&spool.join("rejected"))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "reason"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// Run with `input` on stdin and return output.
pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn binary");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait for binary");
    writer.join().expect("stdin writer");
    out
}

/// The repository's root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Record one record (user `0a1b`, 250 cents of `cpu_hours`, now) through
/// `hero_usage_record` into `env`'s spool; fails the test unless it exits 0.
#[track_caller]
pub fn record(env: &TestEnv, key: &str) {
    let out = run(env.cmd("hero_usage_record").args([
        "--idempotency-key",
        key,
        "--user-sid",
        "0a1b",
        "--amount-cents",
        "250",
        "--resource-kind",
        "cpu_hours",
    ]));
    out.exit(0);
}

/// `hero_usage_status --json ARGS`: its run and parsed object.
pub fn status_json(env: &TestEnv, args: &[&str]) -> (Output, serde_json::Value) {
    let out = run(env.cmd("hero_usage_status").arg("--json").args(args));
    let v = serde_json::from_str(stdout(&out).trim())
        .unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    (out, v)
}

/// `git -C dir` (a work tree or a bare repository) that reads no user or
/// system configuration.
pub fn git_cmd(dir: &Path) -> Command {
    let mut c = Command::new("git");
    // No `git maintenance run --auto` after each commit: a process each.
    c.args(["-c", "maintenance.auto=false", "-C"])
        .arg(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1");
    c
}

/// `git -C dir ARGS`: its stdout; fails the test unless it succeeds.
#[track_caller]
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_cmd(dir).args(args).output().expect("git");
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn run_checks_pass_on_what_happened_and_fail_on_anything_else() {
    let ran = run(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]));
    ran.exit(3)
        .exit_in(&[0, 3], "")
        .fails()
        .stdout_has("out")
        .stderr_has("err");
    for wrong in [
        |o: &Output| {
            o.exit(0);
        },
        |o: &Output| {
            o.exit_in(&[0, 65], "");
        },
        |o: &Output| {
            o.killed_for("");
        },
        |o: &Output| {
            o.stderr_has("out");
        },
        |o: &Output| {
            o.stdout_has("err");
        },
    ] {
        let caught = std::panic::catch_unwind(|| wrong(&ran));
        assert!(caught.is_err(), "a check passed that should fail");
    }
}

/// A one-request-per-connection HTTP server on loopback whose answer to
/// each request head is `answer(head)`: (status line, content type, body).
pub fn fake_server<F, S>(answer: F) -> String
where
    F: Fn(&str) -> (S, S, S) + Send + 'static,
    S: AsRef<str>,
{
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let (status, content_type, body) = answer(&String::from_utf8_lossy(&head));
            let body = body.as_ref();
            let _ = write!(
                conn,
                "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                status.as_ref(),
                content_type.as_ref(),
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

/// A loopback port nobody listens on (bound, then closed): a connection to
/// it is refused.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
