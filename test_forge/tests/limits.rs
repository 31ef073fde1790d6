//! `max_body_bytes`: a proxy's body limit (nginx `client_max_body_size`).
//! 413 without reading the body, then the connection closes.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn a_request_over_the_limit_gets_413_before_its_body_is_sent() {
    let f = forge(|o| o.max_body_bytes = Some(1000));
    f.create_repo(ORG, "r", false);
    let mut s = TcpStream::connect(f.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Only the head: a forge that waited for the body would time out here.
    write!(
        s,
        "POST {} HTTP/1.1\r\nHost: x\r\nAuthorization: token {}\r\nContent-Length: 5000\r\n\r\n",
        contents("r"),
        f.token()
    )
    .unwrap();
    let a = read_answer(&mut s);
    assert_eq!(a.status, 413);
    assert!(
        a.body.contains("413 Request Entity Too Large"),
        "{}",
        a.body
    );
    let mut rest = Vec::new();
    assert_eq!(
        s.read_to_end(&mut rest).unwrap_or(0),
        0,
        "closed after the answer"
    );
    let st = f.stats();
    assert_eq!((st.too_large, st.commits), (1, 0));
    assert_eq!(f.requests().last().unwrap().status, 413);
}

#[test]
fn a_client_sending_a_large_body_sees_413_or_a_broken_pipe_and_nothing_lands() {
    let f = forge(|o| o.max_body_bytes = Some(64 * 1024));
    f.create_repo(ORG, "r", false);
    let big = "x".repeat(4 * 1024 * 1024);
    let body = creates(&[("big", &big)], "");
    let mut s = TcpStream::connect(f.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nAuthorization: token {}\r\nContent-Length: {}\r\n\r\n",
        contents("r"),
        f.token(),
        body.len()
    );
    let sent = s
        .write_all(head.as_bytes())
        .and_then(|_| s.write_all(body.as_bytes()));
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let answer = String::from_utf8_lossy(&raw);
    assert!(
        sent.is_err() || answer.starts_with("HTTP/1.1 413"),
        "either a broken pipe or 413, got {sent:?} / {answer:?}"
    );
    assert!(f.file(ORG, "r", "main", "big").is_none());
    // Under the limit all is as usual.
    let r = call(&f, "POST", &contents("r"), &creates(&[("small", "s")], ""));
    assert_eq!(r.status, 201);
}
