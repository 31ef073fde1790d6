//! `hero_usage_shim` end to end: the real binary on 127.0.0.1:0 with a temp
//! spool and secret file, driven by raw HTTP over a plain `TcpStream` (which
//! is also how the limits are tested).

use crate::support::forge::{OWNER, REPO, forge_env};
use crate::support::{Run, TestEnv, files_under, run, stderr, stdout};
use hero_usage::otoml::parse_batch;
use hero_usage_test_forge::{ForgeOptions, TestForge};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "s3cret-Admin-Value-42";
const HEADER: &str = "X-Hero-Onboarding-Admin-Secret";

/// A running shim.
struct Shim {
    env: TestEnv,
    child: Child,
    addr: String,
    secret_file: PathBuf,
    log: PathBuf,
}

/// One HTTP answer.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

fn parse_reply(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete answer: {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status: {head:?}"));
    Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// Read one answer: its head, then as many bytes as its Content-Length
/// says (the connection may stay open for the next request).
fn read_reply(stream: &mut TcpStream) -> Reply {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => raw.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            end => panic!(
                "no complete answer ({end:?}): {:?}",
                String::from_utf8_lossy(&raw)
            ),
        }
    }
    let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length: {head:?}"));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).expect("read the body");
    raw.extend_from_slice(&body);
    parse_reply(&raw)
}

impl Shim {
    fn start() -> Shim {
        Shim::start_with(TestEnv::new(), |_| {})
    }

    fn start_with(env: TestEnv, setup: impl FnOnce(&mut Command)) -> Shim {
        Shim::spawn(env, true, "127.0.0.1:0", setup)
    }

    /// Start on 127.0.0.1:0; `secret_flag`: pass `--admin-secret-file`.
    fn spawn(
        env: TestEnv,
        secret_flag: bool,
        listen: &str,
        setup: impl FnOnce(&mut Command),
    ) -> Shim {
        let (child, addr) = launch(&env, secret_flag, listen, setup);
        Shim {
            secret_file: env.path("admin_secret"),
            log: env.path("shim.log"),
            env,
            child,
            addr,
        }
    }

    /// kill -9, then start again on the same spool.
    fn kill_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let (child, addr) = launch(&self.env, true, "127.0.0.1:0", |_| {});
        self.child = child;
        self.addr = addr;
    }

    fn connect(&self) -> TcpStream {
        TcpStream::connect(&self.addr).expect("connect to the shim")
    }

    /// Send raw bytes, read the answer.
    fn raw(&self, request: &[u8]) -> Reply {
        let mut s = self.connect();
        s.write_all(request).unwrap();
        read_reply(&mut s)
    }

    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.raw(req.as_bytes())
    }

    fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[(HEADER, SECRET)], "")
    }

    fn post(&self, path: &str, body: &str) -> Reply {
        self.request("POST", path, &[(HEADER, SECRET)], body)
    }

    fn record(&self, body: &Value) -> Reply {
        self.post("/record_usage", &body.to_string())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// SIGTERM, wait, and return the exit code and the log.
    fn stop(mut self) -> (Option<i32>, String) {
        let k = run(Command::new("kill").args(["-TERM", &self.pid()]));
        assert!(k.status.success(), "kill: {}", stderr(&k));
        let code = wait_exit(&mut self.child, Duration::from_secs(15));
        let log = self.log();
        assert!(!log.contains(SECRET), "the secret is in the log:\n{log}");
        (code, log)
    }
}

/// Start a shim on `env`'s spool; returns it and its address.
fn launch(
    env: &TestEnv,
    secret_flag: bool,
    listen: &str,
    setup: impl FnOnce(&mut Command),
) -> (Child, String) {
    let secret_file = env.path("admin_secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let log = env.path("shim.log");
    let mut cmd = env.cmd("hero_usage_shim");
    cmd.args(["--listen", listen]);
    if secret_flag {
        cmd.arg("--admin-secret-file").arg(&secret_file);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap());
    setup(&mut cmd);
    let mut child = cmd.spawn().expect("spawn hero_usage_shim");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| {
            panic!(
                "no ready line: {line:?}; stderr: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })
        .to_string();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    (child, addr)
}

impl Drop for Shim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(start.elapsed() < limit, "the shim did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn record(key: &str, amount: u64) -> Value {
    json!({
        "idempotency_key": key,
        "user_sid": "0a1b",
        "amount_cents": amount,
        "resource_kind": "cpu_hours",
        "description": "4 vCPU for 1 h",
        "occurred_at": "2026-11-20 16:04:05",
    })
}

fn pending(shim: &Shim) -> usize {
    files_under(&shim.env.spool.join("pending")).len()
}

#[test]
fn healthz_needs_no_secret() {
    let shim = Shim::start();
    let r = shim.request("GET", "/healthz", &[], "");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json(), json!({"status": "ok"}));
    assert!(
        r.head.contains("Content-Type: application/json"),
        "{}",
        r.head
    );
    assert!(r.head.contains("Connection: close"), "{}", r.head);
    let (code, log) = shim.stop();
    assert_eq!(code, Some(0));
    assert!(log.contains("GET /healthz 200"), "{log}");
}

#[test]
fn missing_or_wrong_secret_is_401_on_every_other_route() {
    let shim = Shim::start();
    for (method, path) in [
        ("GET", "/status"),
        ("POST", "/record_usage"),
        ("POST", "/admin/push-usage-now"),
    ] {
        let body = record("k-401", 1).to_string();
        let none = shim.request(method, path, &[], &body);
        assert_eq!(none.status, 401, "{method} {path}: {none:?}");
        let wrong = shim.request(method, path, &[(HEADER, "s3cret-Admin-Value-43")], &body);
        assert_eq!(wrong.status, 401, "{method} {path}: {wrong:?}");
        let prefix = shim.request(method, path, &[(HEADER, "s3cret")], &body);
        assert_eq!(prefix.status, 401, "{method} {path}: {prefix:?}");
        let twice = shim.request(method, path, &[(HEADER, SECRET), (HEADER, "x")], &body);
        assert_eq!(twice.status, 401, "{method} {path}: {twice:?}");
    }
    assert_eq!(pending(&shim), 0, "nothing recorded without the secret");
    // Unknown route and wrong method.
    assert_eq!(shim.get("/nope").status, 404);
    let r = shim.get("/record_usage");
    assert_eq!(r.status, 405, "{r:?}");
    assert!(r.head.contains("Allow: POST"), "{}", r.head);
    assert_eq!(shim.post("/healthz", "").status, 405);
    let (code, log) = shim.stop();
    assert_eq!(code, Some(0));
    assert!(log.contains("GET /status 401"), "{log}");
}

#[test]
fn a_full_stderr_neither_kills_a_worker_nor_the_shutdown() {
    let shim = Shim::start_with(TestEnv::new(), |c| {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full");
        c.stderr(full.unwrap());
    });
    // Every answer is logged to stderr: more requests than workers.
    for i in 0..40 {
        let r = shim.record(&record(&format!("job-{i}"), 250));
        assert_eq!(r.status, 201, "{r:?}");
    }
    let (code, _) = shim.stop();
    assert_eq!(code, Some(0));
}

#[test]
fn record_then_duplicate_then_conflict() {
    let shim = Shim::start();
    let r = shim.record(&record("job-1", 250));
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(
        r.json(),
        json!({"status": "recorded", "idempotency_key": "job-1"})
    );
    assert_eq!(pending(&shim), 1, "the record is in pending/");

    let r = shim.record(&record("job-1", 250));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["status"], "duplicate");
    assert_eq!(r.json()["idempotency_key"], "job-1");

    let r = shim.record(&record("job-1", 999));
    assert_eq!(r.status, 422, "{r:?}");
    let j = r.json();
    assert_eq!(j["status"], "conflict");
    assert_eq!(j["fields"], json!(["amount_cents"]));
    assert_eq!(pending(&shim), 1, "nothing changed");

    // The same spool as hero_usage_status sees it.
    let out = run(shim.env.cmd("hero_usage_status").arg("--json"));
    out.exit(0);
    let status: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(status["pending"], 1);
    // A record without occurred_at defaults to now; retrying it is a duplicate.
    let mut now = record("job-2", 5);
    now.as_object_mut().unwrap().remove("occurred_at");
    assert_eq!(shim.record(&now).status, 201);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(shim.record(&now).status, 200);
    let (code, log) = shim.stop();
    assert_eq!(code, Some(0));
    assert!(!log.contains("4 vCPU"), "the body is never logged:\n{log}");
}

#[test]
fn bad_fields_and_bad_json_are_400_naming_the_field() {
    let shim = Shim::start();
    let mut bad = record("job-bad", 1);
    bad["user_sid"] = json!("NOT-A-SID");
    bad["amount_cents"] = json!(-1);
    let r = shim.record(&bad);
    assert_eq!(r.status, 400, "{r:?}");
    let j = r.json();
    assert_eq!(j["status"], "invalid");
    let fields: Vec<&str> = j["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"user_sid"), "{j}");
    assert!(fields.contains(&"amount_cents"), "{j}");
    assert!(j["errors"][0]["problem"].as_str().unwrap().len() > 5, "{j}");

    let r = shim.post("/record_usage", "{\"idempotency_key\": ");
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.json()["errors"][0]["field"], "body");
    assert!(r.body.contains("not valid JSON"), "{}", r.body);

    let r = shim.post("/record_usage", "[1, 2]");
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.json()["errors"][0]["field"], "body");

    let mut missing = record("job-missing", 1);
    missing.as_object_mut().unwrap().remove("resource_kind");
    let r = shim.record(&missing);
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["errors"][0]["field"],
        "resource_kind",
        "{}",
        r.body
    );
    assert_eq!(pending(&shim), 0, "an invalid record writes nothing");
    assert_eq!(shim.stop().0, Some(0));
}

#[test]
fn idempotency_key_header() {
    let shim = Shim::start();
    let mut body = record("unused", 7);
    body.as_object_mut().unwrap().remove("idempotency_key");
    let body = body.to_string();
    let with = |key: &str, body: &str| {
        shim.request(
            "POST",
            "/record_usage",
            &[(HEADER, SECRET), ("Idempotency-Key", key)],
            body,
        )
    };
    let r = with("hdr-1", &body);
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.json()["idempotency_key"], "hdr-1");
    // The same key in the body and the header: fine (a duplicate here).
    let same = record("hdr-1", 7).to_string();
    assert_eq!(with("hdr-1", &same).status, 200);
    // Different: 400 naming idempotency_key.
    let r = with("hdr-2", &same);
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.json()["errors"][0]["field"], "idempotency_key");
    assert_eq!(pending(&shim), 1);
    assert_eq!(shim.stop().0, Some(0));
}

#[test]
fn framing_limits() {
    let shim = Shim::start();
    let auth = format!("{HEADER}: {SECRET}\r\n");
    // POST /record_usage without Content-Length: 411.
    let r = shim.raw(format!("POST /record_usage HTTP/1.1\r\n{auth}\r\n").as_bytes());
    assert_eq!(r.status, 411, "{r:?}");
    // Any Transfer-Encoding: 400.
    let r = shim.raw(
        format!(
            "POST /record_usage HTTP/1.1\r\n{auth}Transfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("Transfer-Encoding"), "{}", r.body);
    // Repeated or malformed Content-Length: 400.
    let r = shim.raw(
        format!(
            "POST /record_usage HTTP/1.1\r\n{auth}Content-Length: 2\r\nContent-Length: 2\r\n\r\n{{}}"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 400, "{r:?}");
    let r = shim.raw(
        format!("POST /record_usage HTTP/1.1\r\n{auth}Content-Length: +2\r\n\r\n{{}}").as_bytes(),
    );
    assert_eq!(r.status, 400, "{r:?}");
    // A 65 KiB body: 413, and the answer arrives although the body is unread.
    let big = format!("{{\"description\": \"{}\"}}", "x".repeat(65 * 1024 - 19));
    assert_eq!(big.len(), 65 * 1024);
    let r = shim.raw(
        format!(
            "POST /record_usage HTTP/1.1\r\n{auth}Content-Length: {}\r\n\r\n{big}",
            big.len()
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 413, "{r:?}");
    // Exactly 64 KiB is a body like any other (JSON allows the padding).
    let body = record("k-64k", 1).to_string();
    let body = format!("{body}{}", " ".repeat(64 * 1024 - body.len()));
    let r = shim.post("/record_usage", &body);
    assert_eq!(r.status, 201, "{r:?}");
    // A head of exactly 8 KiB is read.
    let start = "GET /healthz HTTP/1.1\r\nX-Pad: ";
    let pad = "a".repeat(8 * 1024 - start.len() - 4);
    let r = shim.raw(format!("{start}{pad}\r\n\r\n").as_bytes());
    assert_eq!(r.status, 200, "{r:?}");
    // A 9 KiB head: 431.
    let r = shim.raw(
        format!(
            "GET /healthz HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(9 * 1024)
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 431, "{r:?}");
    // Garbage: 400.
    assert_eq!(shim.raw(b"\x01\x02 nonsense\r\n\r\n").status, 400);
    // The shim still serves.
    assert_eq!(shim.request("GET", "/healthz", &[], "").status, 200);
    assert_eq!(pending(&shim), 1, "the 64 KiB record");
    assert_eq!(shim.stop().0, Some(0));
}

/// The log line of the request from `peer` (the client's own address).
fn log_line<'a>(log: &'a str, peer: &str) -> &'a str {
    let prefix = format!("hero_usage_shim: {peer} ");
    log.lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no line for {peer} in\n{log}"))
}

#[test]
fn framing_errors_are_logged_with_the_method_path_and_a_note() {
    // A short idle time: the stalled case below need not wait 2 s.
    let shim = Shim::start_with(TestEnv::new(), |c| {
        c.env("HERO_USAGE_TEST_SHIM_TIMES", "300,2000");
    });
    let auth = format!("{HEADER}: {SECRET}\r\n");
    let post = "POST /record_usage?q=query-not-logged HTTP/1.1\r\n";
    let cases: Vec<(String, u16, &str, &str)> = vec![
        (
            format!("{post}{auth}Transfer-Encoding: te-value-not-logged\r\n\r\n"),
            400,
            "POST /record_usage 400",
            "Transfer-Encoding is not supported",
        ),
        (
            format!("{post}{auth}Content-Length: 2\r\nContent-Length: 2\r\n\r\n{{}}"),
            400,
            "POST /record_usage 400",
            "Content-Length is given more than once",
        ),
        (
            format!("{post}{auth}Content-Length: 70000\r\n\r\n"),
            413,
            "POST /record_usage 413",
            "larger than 65536 bytes",
        ),
        (
            format!(
                "GET /healthz HTTP/1.1\r\nX-Pad: {}\r\n\r\n",
                "a".repeat(9 * 1024)
            ),
            431,
            "GET /healthz 431",
            "head is larger than",
        ),
        (
            "\x01\x02 nonsense\r\n\r\n".to_string(),
            400,
            "- - 400",
            "malformed request",
        ),
    ];
    let mut peers = Vec::new();
    for (raw, status, _, _) in &cases {
        let mut s = shim.connect();
        peers.push(s.local_addr().unwrap().to_string());
        s.write_all(raw.as_bytes()).unwrap();
        assert_eq!(read_reply(&mut s).status, *status, "{raw:.80?}");
    }
    // Stalled after the request line: 408, still with the method and path.
    let mut stalled = shim.connect();
    let stalled_peer = stalled.local_addr().unwrap().to_string();
    stalled
        .write_all(b"POST /record_usage HTTP/1.1\r\nContent-Length: 10\r\n")
        .unwrap();
    assert_eq!(read_reply(&mut stalled).status, 408);
    drop(stalled); // so that the shim's drain of its input ends at once
    let (code, log) = shim.stop();
    assert_eq!(code, Some(0));
    for ((_, _, what, note), peer) in cases.iter().zip(&peers) {
        let line = log_line(&log, peer);
        assert!(line.contains(what) && line.contains(note), "{line}");
    }
    let line = log_line(&log, &stalled_peer);
    assert!(
        line.contains("POST /record_usage 408") && line.contains("did not arrive in time"),
        "{line}"
    );
    for secret in ["query-not-logged", "te-value-not-logged", "aaaaaaaa"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

#[test]
fn a_full_waiting_room_closes_the_oldest_connection_first() {
    let shim = Shim::start_with(TestEnv::new(), |c| {
        c.env("HERO_USAGE_TEST_SHIM_WAITING", "8");
    });
    // Eight silent connections fill the room; each is accepted before the
    // next is opened (a request served in between shows it), so the first
    // is the oldest.
    let mut silent: Vec<TcpStream> = Vec::new();
    for i in 0..8 {
        silent.push(shim.connect());
        if i < 7 {
            assert_eq!(shim.request("GET", "/healthz", &[], "").status, 200);
        }
    }
    let oldest = silent[0].local_addr().unwrap().to_string();
    // A ninth connection closes the oldest with a 503, and is served.
    let r = shim.record(&record("job-room", 5));
    assert_eq!(r.status, 201, "{r:?}");
    let r = read_reply(&mut silent[0]);
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.json()["status"], "busy");
    // The others still wait: nothing was answered on them.
    silent[1]
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        silent[1].read(&mut byte).is_err(),
        "the second oldest was answered"
    );
    drop(silent);
    let (code, log) = shim.stop();
    assert_eq!(code, Some(0));
    let line = log_line(&log, &oldest);
    assert!(
        line.contains(" - - 503 ") && line.contains("oldest"),
        "{line}"
    );
}

#[test]
fn a_full_waiting_room_closes_a_connection_owed_nothing_before_one_mid_request() {
    // Long idle and request times: only room decides here.
    let shim = Shim::start_with(TestEnv::new(), |c| {
        c.env("HERO_USAGE_TEST_SHIM_WAITING", "2");
        c.env("HERO_USAGE_TEST_SHIM_TIMES", "30000,30000");
    });
    // The oldest: its request is on its way (half a head).
    let mut arriving = shim.connect();
    arriving.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    // Younger, kept alive after its answer: owed nothing.
    let mut idle = shim.connect();
    idle.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_reply(&mut idle).status, 200);
    // A third connection makes room: the idle one is closed, silently.
    assert_eq!(shim.request("GET", "/healthz", &[], "").status, 200);
    let mut rest = Vec::new();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        idle.read_to_end(&mut rest).unwrap(),
        0,
        "closed, nothing said"
    );
    // The request on its way is served, not turned away.
    arriving.write_all(b"\r\n").unwrap();
    assert_eq!(read_reply(&mut arriving).status, 200);
    drop(arriving);
    assert_eq!(shim.stop().0, Some(0));
}

#[test]
fn a_stalled_or_trickling_client_gets_408_while_others_are_served() {
    // Times scaled down (0.5 s idle, 1.2 s in all) so the test does not
    // wait for the real 2 s and 5 s; the rules are the same. (The trickle
    // sends a byte every 50 ms: a loaded machine can stall a thread for a
    // while, but not for the 0.5 s that would make it idle.)
    let shim = Shim::start_with(TestEnv::new(), |c| {
        c.env("HERO_USAGE_TEST_SHIM_TIMES", "500,1200");
    });
    let start = Instant::now();
    // Stalled: half a head, then nothing.
    let mut stalled = shim.connect();
    stalled
        .write_all(b"POST /record_usage HTTP/1.1\r\nContent-Length: 10\r\n")
        .unwrap();
    // Trickling: one byte every 50 ms, forever (slowloris).
    let mut trickle = shim.connect();
    let mut writer = trickle.try_clone().unwrap();
    // It stops once its 408 is read (the shim drains a closed request's
    // input for a while, so writes would go on succeeding).
    let read_408 = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = read_408.clone();
    let trickler = std::thread::spawn(move || {
        let _ = writer.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ");
        for _ in 0..100 {
            if stop.load(std::sync::atomic::Ordering::Relaxed) || writer.write_all(b"a").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    // Meanwhile others are served, quickly.
    for _ in 0..3 {
        let t = Instant::now();
        let r = shim.request("GET", "/healthz", &[], "");
        assert_eq!(r.status, 200);
        assert!(
            t.elapsed() < Duration::from_millis(450),
            "{:?}",
            t.elapsed()
        );
    }
    let r = read_reply(&mut stalled);
    assert_eq!(r.status, 408, "{r:?}");
    assert!(r.body.contains("500 ms idle"), "{r:?}");
    assert!(
        start.elapsed() < Duration::from_millis(1100),
        "{:?}",
        start.elapsed()
    );
    let r = read_reply(&mut trickle);
    read_408.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(r.status, 408, "{r:?}");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1100) && took < Duration::from_millis(3000),
        "the whole-request deadline: {took:?}"
    );
    trickler.join().unwrap();
    // Closed, so that the shim's drain of their input ends at once.
    drop((stalled, trickle));
    assert_eq!(shim.stop().0, Some(0));
}

#[test]
fn rotating_the_secret_file_needs_no_restart() {
    let shim = Shim::start();
    assert_eq!(shim.get("/status").status, 200);
    let new = "rotated-Secret-Value-99";
    let tmp = shim.env.path("admin_secret.new");
    std::fs::write(&tmp, format!("{new}\n")).unwrap();
    std::fs::rename(&tmp, &shim.secret_file).unwrap();
    assert_eq!(shim.get("/status").status, 401, "the old secret is refused");
    let r = shim.request("GET", "/status", &[(HEADER, new)], "");
    assert_eq!(r.status, 200, "{r:?}");
    // A secret file that cannot be read lets nobody in.
    std::fs::remove_file(&shim.secret_file).unwrap();
    let r = shim.request("GET", "/status", &[(HEADER, new)], "");
    assert_eq!(r.status, 500, "{r:?}");
    let (code, log) = shim.stop();
    assert_eq!(code, Some(0));
    assert!(!log.contains(new), "{log}");
}

fn with_forge(url: &str, token_file: PathBuf) -> impl FnOnce(&mut Command) {
    let url = url.to_string();
    move |c: &mut Command| forge_env(c, &url, &token_file, &format!("{OWNER}/{REPO}"))
}

#[test]
fn push_now_pushes_to_the_forge() {
    let forge = TestForge::start(ForgeOptions::default());
    let env = TestEnv::new();
    let token = env.path("token");
    std::fs::write(&token, forge.token()).unwrap();
    let shim = Shim::start_with(env, with_forge(&forge.base_url(), token));
    assert_eq!(shim.record(&record("job-1", 250)).status, 201);
    assert_eq!(shim.record(&record("job-2", 100)).status, 201);
    let r = shim.post("/admin/push-usage-now", "");
    assert_eq!(r.status, 200, "{r:?}");
    let j = r.json();
    assert_eq!(j["outcome"], "pushed", "{j}");
    assert_eq!(j["pushed"], 2);
    assert_eq!(j["exit_code"], 0);
    let text = forge
        .file(
            OWNER,
            REPO,
            "main",
            "nodes/test-node/usage_2026-11-20-16.otoml",
        )
        .expect("hour file in the billing repo");
    let keys: Vec<String> = parse_batch(&String::from_utf8(text).unwrap())
        .unwrap()
        .into_iter()
        .map(|r| r.idempotency_key)
        .collect();
    assert_eq!(keys, ["job-1", "job-2"]);
    assert_eq!(pending(&shim), 0);
    // Again: nothing to push, still 200. No body needed (curl -X POST sends none).
    let r = shim.raw(
        format!("POST /admin/push-usage-now HTTP/1.1\r\n{HEADER}: {SECRET}\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["outcome"], "nothing-to-push");
    // /status shows the last push.
    let s = shim.get("/status").json();
    assert_eq!(s["sent"], 2);
    assert_eq!(s["last_push"]["outcome"], "nothing-to-push");
    let (code, log) = shim.stop();
    assert_eq!(code, Some(0));
    assert!(!log.contains(&forge.token()), "the token is in the log");
}

/// A loopback URL where nothing listens.
fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

#[test]
fn push_now_is_503_when_the_forge_is_down_or_not_configured() {
    let env = TestEnv::new();
    let token = env.path("token");
    std::fs::write(&token, "some-token").unwrap();
    let shim = Shim::start_with(env, with_forge(&closed_port_url(), token));
    assert_eq!(shim.record(&record("job-1", 250)).status, 201);
    let r = shim.post("/admin/push-usage-now", "");
    assert_eq!(r.status, 503, "{r:?}");
    let j = r.json();
    assert_eq!(j["outcome"], "failed");
    assert_eq!(j["exit_code"], 75);
    assert_eq!(pending(&shim), 1, "nothing lost");
    assert_eq!(shim.stop().0, Some(0));

    // No forge configured: the shim runs; push-now says so.
    let shim = Shim::start();
    let r = shim.post("/admin/push-usage-now", "");
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.json()["status"], "not-configured");
    assert_eq!(r.json()["exit_code"], 78);
    assert!(r.body.contains("Forgejo URL"), "{}", r.body);
    assert_eq!(shim.stop().0, Some(0));
}

#[test]
fn push_now_is_502_when_the_forge_refuses_the_token() {
    let forge = TestForge::start(ForgeOptions::default());
    let env = TestEnv::new();
    let token = env.path("token");
    std::fs::write(&token, "wrong-token-0123456789").unwrap();
    let shim = Shim::start_with(env, with_forge(&forge.base_url(), token));
    assert_eq!(shim.record(&record("job-1", 250)).status, 201);
    let r = shim.post("/admin/push-usage-now", "");
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(r.json()["outcome"], "failed", "{r:?}");
    assert_eq!(r.json()["exit_code"], 77, "{r:?}");
    assert_eq!(pending(&shim), 1, "nothing lost");
    assert_eq!(shim.stop().0, Some(0));
}

/// The one worker waits on a forge that never answers (a push-now): a
/// record and a health check are still answered at once, since the poller
/// handles what never waits and workers take only what may (the status, a
/// push). Before, a record queued behind the push for its 120 s timeout.
#[test]
fn records_are_answered_while_every_worker_waits_on_the_forge() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let env = TestEnv::new();
    let token = env.path("token");
    std::fs::write(&token, "some-token").unwrap();
    let forge = with_forge(&url, token);
    let shim = Shim::start_with(env, |c| {
        forge(c);
        c.env("HERO_USAGE_TEST_SHIM_WORKERS", "1");
    });
    assert_eq!(shim.record(&record("job-1", 1)).status, 201);
    let mut push = shim.connect();
    let req = format!(
        "POST /admin/push-usage-now HTTP/1.1\r\n{HEADER}: {SECRET}\r\nContent-Length: 0\r\n\r\n"
    );
    push.write_all(req.as_bytes()).unwrap();
    // The forge sees the push's connection: the worker is waiting on it.
    let _held = silent.accept().expect("push-now reaches the forge");
    let t = Instant::now();
    assert_eq!(shim.request("GET", "/healthz", &[], "").status, 200);
    let r = shim.record(&record("job-busy", 1));
    assert_eq!(r.status, 201, "{r:?}");
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "a push waiting on the forge delayed a record by {took:?}"
    );
    assert_eq!(pending(&shim), 2);
}

/// A person waits on push-now: a forge that takes the connection and never
/// answers ends it within the retry window (3 s in tests, 30 s shipped)
/// with 503 and nothing lost, and with it a SIGTERM that waits for it.
/// Before, each request waited for the forge client's 120 s.
#[test]
fn push_now_to_a_silent_forge_ends_within_its_retry_window() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let env = TestEnv::new();
    let token = env.path("token");
    std::fs::write(&token, "some-token").unwrap();
    let shim = Shim::start_with(env, with_forge(&url, token));
    assert_eq!(shim.record(&record("job-1", 1)).status, 201);
    let t = Instant::now();
    let r = shim.post("/admin/push-usage-now", "");
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.json()["exit_code"], 75, "{r:?}");
    let took = t.elapsed();
    assert!(took < Duration::from_secs(20), "push-now took {took:?}");
    assert_eq!(pending(&shim), 1, "nothing lost");
    assert_eq!(shim.stop().0, Some(0));
}

/// A bug in the group committer (a panic, at a test-only failpoint) ends
/// the shim with 70 and the panic in its log, for its supervisor to restart
/// it: it must not stay up refusing every record while /healthz says ok.
/// The record was not acknowledged; after a restart it is recorded.
#[test]
fn a_panic_in_the_group_committer_ends_the_shim_with_70() {
    let mut shim = Shim::start_with(TestEnv::new(), |c| {
        c.env("HERO_USAGE_FAILPOINT", "panic:record-after-fsync");
    });
    let mut s = shim.connect();
    let body = record("job-bug", 1).to_string();
    let req = format!(
        "POST /record_usage HTTP/1.1\r\n{HEADER}: {SECRET}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(!answer.contains(" 201 "), "{answer}");
    assert_eq!(
        wait_exit(&mut shim.child, Duration::from_secs(10)),
        Some(70)
    );
    let log = shim.log();
    assert!(
        log.contains(
            "hero_usage_shim: error: internal error (a bug): failpoint record-after-fsync"
        ),
        "{log}"
    );
    assert_eq!(pending(&shim), 0);
    let (child, addr) = launch(&shim.env, true, "127.0.0.1:0", |_| {});
    (shim.child, shim.addr) = (child, addr);
    assert_eq!(shim.record(&record("job-bug", 1)).status, 201);
    assert_eq!(pending(&shim), 1);
}

#[test]
fn push_now_is_409_while_another_push_runs() {
    let env = TestEnv::new();
    let token = env.path("token");
    std::fs::write(&token, "some-token").unwrap();
    let shim = Shim::start_with(env, with_forge(&closed_port_url(), token));
    let spool = hero_usage::spool::Spool::open(&shim.env.spool).unwrap();
    let lock = spool.try_lock_push().unwrap().expect("push lock is free");
    let r = shim.post("/admin/push-usage-now", "");
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.json()["outcome"], "locked");
    drop(lock);
    assert_eq!(shim.stop().0, Some(0));
}

#[test]
fn status_is_the_same_json_as_hero_usage_status() {
    let shim = Shim::start();
    assert_eq!(shim.record(&record("job-1", 1)).status, 201);
    let r = shim.get("/status");
    assert_eq!(r.status, 200, "{r:?}");
    let mut served = r.json();
    let out = run(shim.env.cmd("hero_usage_status").arg("--json"));
    let mut cli: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    // The age moves with the clock.
    served["oldest_pending_age_seconds"] = Value::Null;
    cli["oldest_pending_age_seconds"] = Value::Null;
    assert_eq!(served, cli);
    assert_eq!(served["pending"], 1);
    assert_eq!(served["node"], "test-node");
    assert_eq!(shim.stop().0, Some(0));
}

#[test]
fn sigterm_finishes_the_request_in_flight_then_exits_0() {
    let shim = Shim::start();
    let body = record("job-term", 3).to_string();
    let mut s = shim.connect();
    s.write_all(
        format!(
            "POST /record_usage HTTP/1.1\r\n{HEADER}: {SECRET}\r\nContent-Length: {}\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let k = run(Command::new("kill").args(["-TERM", &shim.pid()]));
    assert!(k.status.success());
    std::thread::sleep(Duration::from_millis(300));
    // No longer accepting.
    assert!(
        TcpStream::connect(&shim.addr).is_err(),
        "still accepting after SIGTERM"
    );
    s.write_all(format!("\r\n{body}").as_bytes()).unwrap();
    let r = read_reply(&mut s);
    assert_eq!(r.status, 201, "{r:?}");
    let mut shim = shim;
    assert_eq!(wait_exit(&mut shim.child, Duration::from_secs(10)), Some(0));
    assert_eq!(pending(&shim), 1);
    let log = shim.log();
    assert!(log.contains("POST /record_usage 201"), "{log}");
}

/// The ready line on a stdout that nobody reads any more (a script read
/// it, or never wanted it, and closed its end; SIGPIPE is ignored, so the
/// write fails with EPIPE) does not end the shim: it serves. A stdout that
/// cannot be written otherwise (a full disk) is 74, as for every binary.
/// Both ended it with 70, "internal error (a bug)".
#[test]
fn a_closed_stdout_does_not_stop_the_shim_and_a_full_one_is_74() {
    let env = TestEnv::new();
    let secret = env.path("admin_secret");
    std::fs::write(&secret, SECRET).unwrap();
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full");
    let out = run(env
        .cmd("hero_usage_shim")
        .args(["--listen", "127.0.0.1:0", "--admin-secret-file"])
        .arg(&secret)
        .stdout(full.unwrap()));
    out.exit(74);
    assert!(
        stderr(&out).contains("cannot write to stdout"),
        "{}",
        stderr(&out)
    );

    let addr = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap().to_string()
    };
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = env
        .cmd("hero_usage_shim")
        .args(["--listen", &addr, "--admin-secret-file"])
        .arg(&secret)
        .stdout(writer)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let served = loop {
        if let Ok(mut s) = TcpStream::connect(&addr) {
            s.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
            break read_reply(&mut s).status;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the shim ended: {status}");
        }
        assert!(start.elapsed() < Duration::from_secs(10), "not listening");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(served, 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn refuses_a_non_loopback_address_without_allow_remote() {
    let env = TestEnv::new();
    let secret = env.path("admin_secret");
    std::fs::write(&secret, SECRET).unwrap();
    let out = run(env
        .cmd("hero_usage_shim")
        .args(["--listen", "0.0.0.0:0", "--admin-secret-file"])
        .arg(&secret));
    out.exit(78);
    assert!(stderr(&out).contains("--allow-remote"), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("hero_usage_shim: error: "));
    // The environment and the config file are held to the same rule.
    let out = run(env
        .cmd("hero_usage_shim")
        .env("HERO_USAGE_LISTEN", "0.0.0.0:0")
        .env("HERO_ONBOARDING_ADMIN_SECRET_FILE", &secret));
    out.exit(78);
}

#[test]
fn allow_remote_binds_any_address() {
    let shim = Shim::spawn(TestEnv::new(), true, "0.0.0.0:0", |c| {
        c.arg("--allow-remote");
    });
    let port = shim.addr.rsplit(':').next().unwrap().to_string();
    let mut s = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_reply(&mut s).status, 200);
    assert_eq!(shim.stop().0, Some(0));
}

#[test]
fn no_admin_secret_refuses_to_start() {
    let env = TestEnv::new();
    let out = run(env.cmd("hero_usage_shim").args(["--listen", "127.0.0.1:0"]));
    out.exit(78);
    assert!(stderr(&out).contains("admin secret"), "{}", stderr(&out));
    // An empty secret file is no secret either.
    let empty = env.path("empty");
    std::fs::write(&empty, "\n").unwrap();
    let out = run(env
        .cmd("hero_usage_shim")
        .args(["--listen", "127.0.0.1:0", "--admin-secret-file"])
        .arg(&empty));
    out.exit(78);
}

#[test]
fn the_secret_from_the_environment_works_and_is_never_logged() {
    let value = "env-Secret-Value-7";
    let shim = Shim::spawn(TestEnv::new(), false, "127.0.0.1:0", |c| {
        c.env("HERO_ONBOARDING_ADMIN_SECRET", value);
    });
    let r = shim.request("GET", "/status", &[(HEADER, value)], "");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(shim.get("/status").status, 401);
    let (code, log) = shim.stop();
    assert_eq!(code, Some(0));
    assert!(!log.contains(value), "{log}");
}

/// Raise this process's open-files limit to its hard limit (at most
/// 8192): a test holding a thousand connections needs that many.
fn raise_open_files_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    let want = lim.maximum.unwrap_or(8192).min(8192);
    if lim.current.is_some_and(|c| c < want) {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(want),
                maximum: lim.maximum,
            },
        );
    }
}

/// `n` connections that send nothing do not hold up a well-formed request:
/// it is answered long before their 2 s idle time is up (the old pool of
/// four workers took them first and answered others only after it).
fn idle_connections_leave_requests_served(n: usize) {
    raise_open_files_limit();
    let shim = Shim::start();
    let idle: Vec<TcpStream> = (0..n).map(|_| shim.connect()).collect();
    let t = Instant::now();
    let r = shim.request("GET", "/healthz", &[], "");
    assert_eq!(r.status, 200, "{r:?}");
    let r = shim.record(&record("job-idle", 1));
    assert_eq!(r.status, 201, "{r:?}");
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "{n} idle connections delayed two requests by {took:?}"
    );
    drop(idle);
    let (code, log) = shim.stop();
    assert_eq!(code, Some(0));
    assert!(!log.contains(" 503 "), "nothing was turned away:\n{log}");
}

/// Run the command with at most `n` open files (soft and hard limit).
fn limit_open_files(c: &mut Command, n: u64) {
    use rustix::process::{Resource, Rlimit, setrlimit};
    use std::os::unix::process::CommandExt;
    let lim = Rlimit {
        current: Some(n),
        maximum: Some(n),
    };
    // SAFETY: setrlimit(2) is async-signal-safe and allocates nothing.
    unsafe {
        c.pre_exec(move || setrlimit(Resource::Nofile, lim).map_err(std::io::Error::from));
    }
}

/// Connections being answered hold their descriptors too: with the
/// open-files limit low (200), 69 records waiting for their group (a
/// test knob holds the first group until the 70th) and idle connections
/// beyond the limit, the group still gets the files it needs and every
/// record is 201. (Only waiting connections were counted: idle ones took
/// every descriptor left, and the group failed with 500, "Too many open
/// files".)
#[test]
fn connections_never_take_the_descriptors_the_spool_needs() {
    raise_open_files_limit();
    let shim = Shim::start_with(TestEnv::new(), |c| {
        c.env("HERO_USAGE_TEST_SHIM_GROUP", "70");
        c.env("HERO_USAGE_TEST_SHIM_TIMES", "30000,30000");
        limit_open_files(c, 200);
    });
    let send = |key: &str| {
        let mut s = shim.connect();
        let body = record(key, 1).to_string();
        let req = format!(
            "POST /record_usage HTTP/1.1\r\n{HEADER}: {SECRET}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        s
    };
    // Answered once every connection opened before it was accepted and
    // read; kept open.
    let probe = || {
        let mut s = shim.connect();
        s.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(read_reply(&mut s).status, 200);
        s
    };
    let mut held: Vec<TcpStream> = (0..69).map(|i| send(&format!("job-fd-{i}"))).collect();
    let mut open = vec![probe()];
    open.extend((0..250).map(|_| shim.connect()));
    open.push(probe());
    held.push(send("job-fd-69"));
    for (i, s) in held.iter_mut().enumerate() {
        let r = read_reply(s);
        assert_eq!(r.status, 201, "job-fd-{i}: {r:?}");
    }
    assert_eq!(pending(&shim), 70);
    drop(open);
    assert_eq!(shim.stop().0, Some(0));
}

#[test]
fn sixty_four_idle_connections_delay_nothing() {
    idle_connections_leave_requests_served(64);
}

#[test]
fn a_thousand_idle_connections_do_not_bring_the_shim_down() {
    idle_connections_leave_requests_served(1000);
}

#[test]
fn kept_alive_connections_serve_request_after_request() {
    let shim = Shim::start();
    let mut s = shim.connect();
    let body = record("job-ka", 3).to_string();
    // Two requests in one write (pipelined), then a third that closes.
    s.write_all(
        format!(
            "GET /healthz HTTP/1.1\r\n\r\nPOST /record_usage HTTP/1.1\r\n{HEADER}: {SECRET}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let r = read_reply(&mut s);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.head.contains("Connection: keep-alive"), "{}", r.head);
    let r = read_reply(&mut s);
    assert_eq!(r.status, 201, "{r:?}");
    s.write_all(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = read_reply(&mut s);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.head.contains("Connection: close"), "{}", r.head);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "nothing after the last answer: {rest:?}");
    assert_eq!(pending(&shim), 1);
    assert_eq!(shim.stop().0, Some(0));
}

/// A client that pipelines its requests and then closes its sending side
/// (`printf ... | nc -N`) has asked for every one of them: each is
/// answered, the last with `Connection: close`, and a new line after the
/// last body (a shell's `printf '...%s\n'`) is no request. (The shim
/// answered the first with close and dropped the others unread.)
#[test]
fn requests_pipelined_before_a_half_close_are_all_answered() {
    let shim = Shim::start();
    // Stopped, so that the shim reads the requests and the end together.
    let signal = |sig: &str| {
        assert!(
            run(Command::new("kill").args([sig, &shim.pid()]))
                .status
                .success()
        )
    };
    signal("-STOP");
    let mut s = shim.connect();
    let mut sent = String::new();
    for key in ["job-hc-1", "job-hc-2"] {
        let body = record(key, 3).to_string();
        sent.push_str(&format!(
            "POST /record_usage HTTP/1.1\r\n{HEADER}: {SECRET}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    }
    sent.push_str("\r\n");
    s.write_all(sent.as_bytes()).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    signal("-CONT");
    for (key, connection) in [("job-hc-1", "keep-alive"), ("job-hc-2", "close")] {
        let r = read_reply(&mut s);
        assert_eq!(r.status, 201, "{r:?}");
        assert_eq!(r.json()["idempotency_key"], key);
        assert!(
            r.head.contains(&format!("Connection: {connection}")),
            "{r:?}"
        );
    }
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "nothing after the last answer: {rest:?}");
    assert_eq!(pending(&shim), 2);
    assert_eq!(shim.stop().0, Some(0));
}

#[test]
fn one_group_with_a_duplicate_and_a_conflict_inside_it() {
    // The first group waits for three records (a test knob): the three
    // requests below, sent at once, are committed together.
    let shim = Shim::start_with(TestEnv::new(), |c| {
        c.env("HERO_USAGE_TEST_SHIM_GROUP", "3");
    });
    let bodies = [
        record("job-g", 250),
        record("job-g", 250),
        record("job-g", 999),
    ];
    let replies: Vec<Reply> = std::thread::scope(|scope| {
        let shim = &shim;
        let threads: Vec<_> = bodies
            .iter()
            .map(|b| scope.spawn(move || shim.record(b)))
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    let recorded: Vec<usize> = (0..3).filter(|&i| statuses[i] == 201).collect();
    assert_eq!(recorded.len(), 1, "exactly one 201: {statuses:?}");
    let winner = recorded[0];
    for i in (0..3).filter(|&i| i != winner) {
        // Identical to the recorded one: a duplicate; different: a conflict.
        let want = if bodies[i] == bodies[winner] {
            200
        } else {
            422
        };
        assert_eq!(statuses[i], want, "{statuses:?}: {:?}", replies[i]);
    }
    assert_eq!(pending(&shim), 1);
    let (code, log) = shim.stop();
    assert_eq!(code, Some(0));
    let in_group = log
        .lines()
        .filter(|l| l.contains("POST /record_usage") && l.ends_with("group=3"))
        .count();
    assert_eq!(in_group, 3, "the three were one group:\n{log}");
}

/// What a load client saw of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// A complete answer with this status.
    Answer(u16),
    /// The connection closed before a byte of an answer: never accepted
    /// (the shim stopped or died first).
    Nothing,
    /// Part of an answer, then the end: must never happen.
    Torn(String),
}

/// `clients` threads sending records with unique keys, each on a new
/// connection (`Connection: close`), until `stop` is set or the shim goes
/// away (a refused connection); each returns what it saw per key.
fn record_load(
    addr: &str,
    clients: usize,
    stop: &std::sync::atomic::AtomicBool,
    acked: &std::sync::atomic::AtomicUsize,
) -> Vec<(String, Seen)> {
    use std::sync::atomic::Ordering;
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..clients)
            .map(|c| {
                scope.spawn(move || {
                    let mut seen = Vec::new();
                    for i in 0.. {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(mut s) = TcpStream::connect(addr) else {
                            break;
                        };
                        let key = format!("load-{c}-{i}");
                        let body = record(&key, i).to_string();
                        let req = format!(
                            "POST /record_usage HTTP/1.1\r\n{HEADER}: {SECRET}\r\n\
                             Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(req.as_bytes()).is_err() {
                            seen.push((key, Seen::Nothing));
                            continue;
                        }
                        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                        let mut raw = Vec::new();
                        let _ = s.read_to_end(&mut raw);
                        let text = String::from_utf8_lossy(&raw).into_owned();
                        let what = match text.split_once("\r\n\r\n") {
                            _ if raw.is_empty() => Seen::Nothing,
                            Some((_, body)) if body.ends_with('\n') => {
                                let r = parse_reply(&raw);
                                if r.status == 201 {
                                    acked.fetch_add(1, Ordering::SeqCst);
                                }
                                Seen::Answer(r.status)
                            }
                            _ => Seen::Torn(text),
                        };
                        seen.push((key, what));
                    }
                    seen
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    })
}

/// Wait (bounded) until `acked` reaches `n`.
fn wait_for(acked: &std::sync::atomic::AtomicUsize, n: usize) {
    let start = Instant::now();
    while acked.load(std::sync::atomic::Ordering::SeqCst) < n {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the load got no {n} answers"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_record() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let mut shim = Shim::start();
    let (stop, acked) = (AtomicBool::new(false), AtomicUsize::new(0));
    let addr = shim.addr.clone();
    let pid = shim.child.id();
    let seen = std::thread::scope(|scope| {
        let load = scope.spawn(|| record_load(&addr, 16, &stop, &acked));
        wait_for(&acked, 200);
        let k = run(Command::new("kill").args(["-KILL", &pid.to_string()]));
        assert!(k.status.success());
        stop.store(true, Ordering::SeqCst);
        load.join().unwrap()
    });
    let torn: Vec<_> = seen
        .iter()
        .filter(|(_, s)| matches!(s, Seen::Torn(_)))
        .collect();
    assert!(torn.is_empty(), "torn answers: {torn:?}");
    let recorded: Vec<&String> = seen
        .iter()
        .filter(|(_, s)| *s == Seen::Answer(201))
        .map(|(k, _)| k)
        .collect();
    assert!(recorded.len() >= 200, "{}", recorded.len());
    // Every 201 is in the spool once: after a restart each is a duplicate.
    shim.kill_and_restart();
    let held = pending(&shim);
    assert!(
        held >= recorded.len() && held <= seen.len(),
        "{held} in pending/ for {} acknowledged of {} sent",
        recorded.len(),
        seen.len()
    );
    for key in recorded {
        let i: u64 = key.rsplit('-').next().unwrap().parse().unwrap();
        let r = shim.record(&record(key, i));
        assert_eq!(r.status, 200, "{key}: {r:?}");
    }
    assert_eq!(pending(&shim), held, "nothing recorded twice");
    assert_eq!(shim.stop().0, Some(0));
}

#[test]
fn sigterm_under_load_answers_every_request_it_took_and_exits_0() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let shim = Shim::start();
    let (stop, acked) = (AtomicBool::new(false), AtomicUsize::new(0));
    let addr = shim.addr.clone();
    let pid = shim.pid();
    let seen = std::thread::scope(|scope| {
        let load = scope.spawn(|| record_load(&addr, 16, &stop, &acked));
        wait_for(&acked, 100);
        let k = run(Command::new("kill").args(["-TERM", &pid]));
        assert!(k.status.success());
        // The clients go on until the shim refuses connections.
        let seen = load.join().unwrap();
        stop.store(true, Ordering::SeqCst);
        seen
    });
    let mut shim = shim;
    assert_eq!(wait_exit(&mut shim.child, Duration::from_secs(15)), Some(0));
    let torn: Vec<_> = seen
        .iter()
        .filter(|(_, s)| matches!(s, Seen::Torn(_)))
        .collect();
    assert!(torn.is_empty(), "torn answers: {torn:?}");
    let statuses: Vec<&Seen> = seen
        .iter()
        .map(|(_, s)| s)
        .filter(|s| **s != Seen::Nothing)
        .collect();
    assert!(
        statuses.iter().all(|s| **s == Seen::Answer(201)),
        "{statuses:?}"
    );
    // Every answer the shim gave reached its client, and every 201 is in
    // the spool.
    let log = shim.log();
    let logged = log
        .lines()
        .filter(|l| l.contains("POST /record_usage 201"))
        .count();
    assert_eq!(logged, statuses.len(), "{log}");
    assert_eq!(pending(&shim), statuses.len());
    assert!(log.contains("stopped"), "{log}");
}

#[test]
fn push_now_signs_with_the_key_the_hourly_job_uses() {
    // A key ssh-keygen made, named by the environment, as for the hourly job.
    let forge = TestForge::start(ForgeOptions::default());
    let env = TestEnv::new();
    let token = env.path("token");
    std::fs::write(&token, forge.token()).unwrap();
    let key = env.path("node_key");
    let made = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key));
    assert!(made.status.success(), "{}", stderr(&made));
    let public = std::fs::read_to_string(env.path("node_key.pub")).unwrap();
    let allowed = env.path("allowed_signers");
    std::fs::write(&allowed, format!("test-node {public}")).unwrap();
    let url = forge.base_url();
    let setup = with_forge(&url, token);
    let key_env = key.clone();
    let shim = Shim::start_with(env, move |c: &mut Command| {
        setup(c);
        c.env("HERO_USAGE_SIGNING_KEY_FILE", key_env);
    });
    assert_eq!(shim.record(&record("job-1", 250)).status, 201);
    let r = shim.post("/admin/push-usage-now", "");
    assert_eq!(r.status, 200, "{r:?}");
    let hour = "usage_2026-11-20-16.otoml";
    let data = forge
        .file(OWNER, REPO, "main", &format!("nodes/test-node/{hour}"))
        .unwrap();
    let sig = forge
        .file(
            OWNER,
            REPO,
            "main",
            &format!("signatures/test-node/{hour}.sig"),
        )
        .expect("the signature beside the hour file");
    crate::signing::ssh_verify(&allowed, "test-node", &data, &sig).unwrap();
}
