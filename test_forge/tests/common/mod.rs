//! A raw HTTP/1.1 client for the forge's tests: the forge closes the
//! connection after each answer, so a request is write, then read to EOF.
#![allow(dead_code)]

use base64::Engine;
use hero_usage_test_forge::{ForgeOptions, TestForge};
use std::io::{Read, Write};
use std::net::TcpStream;

pub const ORG: &str = "lhumina_code";

pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

pub fn forge(f: impl FnOnce(&mut ForgeOptions)) -> TestForge {
    let mut o = ForgeOptions::default();
    f(&mut o);
    TestForge::start(o)
}

pub fn call(forge: &TestForge, method: &str, path: &str, body: &str) -> Answer {
    call_as(forge, method, path, body, Some(&forge.token()))
}

pub fn call_as(
    forge: &TestForge,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> Answer {
    let mut s = TcpStream::connect(forge.addr()).unwrap();
    let auth = token
        .map(|t| format!("Authorization: token {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    read_answer(&mut s)
}

pub fn read_answer(s: &mut TcpStream) -> Answer {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let out = String::from_utf8_lossy(&raw).into_owned();
    let status = out[9..12].parse().unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

pub fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A `ChangeFilesOptions` body creating `files` (path, content).
pub fn creates(files: &[(&str, &str)], extra: &str) -> String {
    let ops: Vec<String> = files
        .iter()
        .map(|(p, c)| {
            format!(
                r#"{{"operation":"create","path":"{p}","content":"{}"}}"#,
                b64(c)
            )
        })
        .collect();
    format!(r#"{{"files":[{}]{extra}}}"#, ops.join(","))
}

pub fn contents(repo: &str) -> String {
    format!("/api/v1/repos/{ORG}/{repo}/contents")
}

/// Number of commits reachable from `branch`.
pub fn commit_count(forge: &TestForge, repo: &str, branch: &str) -> usize {
    let out = std::process::Command::new("git")
        .env("GIT_DIR", forge.bare_repo(ORG, repo))
        .args(["rev-list", "--count", &format!("refs/heads/{branch}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}
