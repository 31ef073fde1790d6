//! The `hero_usage_test_forge` binary: flags, the URL line, the control routes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &std::path::Path, extra: &[&str]) -> (Proc, String) {
    std::fs::write(dir.join("token"), "bin-token-1234567890\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hero_usage_test_forge"))
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--token-file")
        .arg(dir.join("token"))
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (Proc(child), line.trim().to_string())
}

/// One request; the forge closes the connection after each answer.
fn call(base: &str, method: &str, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
    let rest = base.strip_prefix("http://").unwrap();
    let (host, prefix) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, String::new()));
    let mut s = TcpStream::connect(host).unwrap();
    let auth = token
        .map(|t| format!("Authorization: token {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {prefix}{path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

const T: Option<&str> = Some("bin-token-1234567890");

#[test]
fn binary_prints_its_url_and_serves_the_api_and_control_routes() {
    let dir = tempfile::tempdir().unwrap();
    let (_p, url) = start(
        dir.path(),
        &["--org", "acme", "--user", "robot", "--prefix", "/forgejo"],
    );
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/forgejo"),
        "{url}"
    );

    let (s, b) = call(&url, "GET", "/api/v1/user", "", None);
    assert_eq!(s, 401);
    assert!(b.contains("token is required"));
    let (s, b) = call(&url, "GET", "/api/v1/user", "", T);
    assert_eq!(s, 200);
    assert!(b.contains("\"login\":\"robot\""));

    let (s, _) = call(
        &url,
        "POST",
        "/api/v1/orgs/acme/repos",
        r#"{"name":"b","private":true}"#,
        T,
    );
    assert_eq!(s, 201);
    assert!(dir.path().join("root/acme/b.git/HEAD").exists());
    let (s, _) = call(
        &url,
        "POST",
        "/api/v1/orgs/lhumina_code/repos",
        r#"{"name":"b"}"#,
        T,
    );
    assert_eq!(s, 404, "only --org orgs exist");
    let (s, _) = call(
        &url,
        "POST",
        "/_testforge/repos",
        r#"{"owner":"acme","name":"c","empty":false}"#,
        T,
    );
    assert_eq!(s, 201);

    // A fault over HTTP.
    let (s, _) = call(
        &url,
        "POST",
        "/_testforge/faults",
        r#"{"method":"GET","path_contains":"/repos/acme/c","times":1,"action":"fail","status":502,"message":"bad gateway"}"#,
        T,
    );
    assert_eq!(s, 201);
    let (s, b) = call(&url, "GET", "/api/v1/repos/acme/c", "", T);
    assert_eq!((s, b.contains("bad gateway")), (502, true));
    let (s, _) = call(&url, "GET", "/api/v1/repos/acme/c", "", T);
    assert_eq!(s, 200);

    let (s, _) = call(&url, "GET", "/_testforge/log", "", None);
    assert_eq!(s, 401);
    let (s, log) = call(&url, "GET", "/_testforge/log", "", T);
    assert_eq!(s, 200);
    let log: serde_json::Value = serde_json::from_str(&log).unwrap();
    let statuses: Vec<u64> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, vec![401, 200, 201, 404, 502, 200]);
    assert!(!serde_json::to_string(&log).unwrap().contains("bin-token"));
}

#[test]
fn binary_modes_legacy_422_and_no_multi_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_p, url) = start(dir.path(), &["--legacy-422", "--no-multi-file"]);
    let (s, _) = call(
        &url,
        "POST",
        "/_testforge/repos",
        r#"{"owner":"lhumina_code","name":"r","empty":false}"#,
        T,
    );
    assert_eq!(s, 201);
    let (s, b) = call(
        &url,
        "PUT",
        "/api/v1/repos/lhumina_code/r/contents/README.md",
        r#"{"content":"eA==","sha":"1111111111111111111111111111111111111111"}"#,
        T,
    );
    assert_eq!(s, 422);
    assert!(b.contains("sha does not match"));
    let (s, _) = call(
        &url,
        "POST",
        "/api/v1/repos/lhumina_code/r/contents",
        r#"{"files":[{"operation":"create","path":"a","content":"eA=="}]}"#,
        T,
    );
    assert_eq!(s, 405);
    let (s, b) = call(
        &url,
        "PUT",
        "/api/v1/repos/lhumina_code/r/contents/README.md",
        r#"{"content":"eA=="}"#,
        T,
    );
    assert_eq!((s, b.contains("[SHA]: Required")), (422, true));
    let (s, _) = call(
        &url,
        "PUT",
        "/api/v1/repos/lhumina_code/r/contents/nope",
        r#"{"content":"eA==","sha":"11"}"#,
        T,
    );
    assert_eq!(s, 500);
}

#[test]
fn binary_no_multi_file_answers_404_after_the_requests_it_serves() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--no-multi-file",
        "--no-multi-file-status",
        "404",
        "--no-multi-file-after",
        "1",
    ];
    let (_p, url) = start(dir.path(), &args);
    let (s, _) = call(
        &url,
        "POST",
        "/_testforge/repos",
        r#"{"owner":"lhumina_code","name":"r","empty":false}"#,
        T,
    );
    assert_eq!(s, 201);
    let many = |path: &str| {
        let body =
            format!(r#"{{"files":[{{"operation":"create","path":"{path}","content":"eA=="}}]}}"#);
        call(
            &url,
            "POST",
            "/api/v1/repos/lhumina_code/r/contents",
            &body,
            T,
        )
        .0
    };
    // The first many-files request is served, the later ones are not.
    assert_eq!(many("a"), 201);
    assert_eq!(many("b"), 404);
    assert_eq!(many("c"), 404);
    // One file at a time still works.
    let (s, _) = call(
        &url,
        "POST",
        "/api/v1/repos/lhumina_code/r/contents/b",
        r#"{"content":"eA=="}"#,
        T,
    );
    assert_eq!(s, 201);
}

#[test]
fn binary_refuses_a_non_loopback_listen_address_and_needs_a_token() {
    let out = Command::new(env!("CARGO_BIN_EXE_hero_usage_test_forge"))
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t"), "x\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hero_usage_test_forge"))
        .args(["--listen", "0.0.0.0:0", "--token-file"])
        .arg(dir.path().join("t"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}

#[test]
fn binary_takes_the_race_and_body_limit_flags_and_serves_stats() {
    let dir = tempfile::tempdir().unwrap();
    let (_p, url) = start(
        dir.path(),
        &["--commit-ms", "50", "--race-403", "--max-body-bytes", "100"],
    );
    let (s, _) = call(
        &url,
        "POST",
        "/_testforge/repos",
        r#"{"owner":"lhumina_code","name":"r","empty":false}"#,
        T,
    );
    assert_eq!(s, 201);
    let big = format!(r#"{{"content":"{}"}}"#, "eA==".repeat(50));
    let (s, _) = call(
        &url,
        "POST",
        "/api/v1/repos/lhumina_code/r/contents/f",
        &big,
        T,
    );
    assert_eq!(s, 413);
    let (s, _) = call(
        &url,
        "POST",
        "/api/v1/repos/lhumina_code/r/contents/f",
        r#"{"content":"eA=="}"#,
        T,
    );
    assert_eq!(s, 201);
    let (s, b) = call(&url, "GET", "/_testforge/stats", "", None);
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        (v["commits"].as_u64(), v["too_large"].as_u64()),
        (Some(1), Some(1))
    );
    let out = Command::new(env!("CARGO_BIN_EXE_hero_usage_test_forge"))
        .args(["--token-file", "/dev/null", "--commit-ms", "soon"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}
