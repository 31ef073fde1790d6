//! HTTP/1.1 as the shim speaks it: the request head and its checks, the
//! JSON response, the limits. Parsed with `httparse`; the server that reads
//! and writes connections is [`super::server`].
//!
//! Limits (man 1 hero_usage_shim, ROUTES): the request head is at most
//! [`MAX_HEAD`] bytes (431), the body at most [`MAX_BODY`] (413), any
//! `Transfer-Encoding` is refused (400), as is a repeated or malformed
//! `Content-Length` (400). Each read waits at most [`Limits::idle`] and the
//! whole request must arrive within [`Limits::deadline`] of the connection's
//! accept (408).

use serde::Serialize;
use std::time::Duration;

/// Largest request head (request line and headers), in bytes.
pub const MAX_HEAD: usize = 8 * 1024;
/// Largest request body, in bytes.
pub const MAX_BODY: u64 = 64 * 1024;
/// Most header fields in one request (more: 431).
pub const MAX_HEADERS: usize = 64;

/// The server's times and sizes: a value, so that tests can run a shim with
/// short timeouts instead of sleeping for the real ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest wait for the next bytes of a request.
    pub idle: Duration,
    /// The whole request (head and body) must arrive within this time of
    /// the accept (or of the previous answer on a kept-alive connection).
    pub deadline: Duration,
    /// Longest wait while writing a response.
    pub write: Duration,
    /// Worker threads answering complete requests.
    pub workers: usize,
    /// Complete requests waiting for a worker; beyond it new ones get 503.
    pub queue: usize,
    /// Connections waiting for their request (idle, slow, kept alive);
    /// beyond it the oldest is closed (503). Lowered to what the file
    /// descriptor limit allows.
    pub waiting: usize,
    /// Connections open at once, waiting or being answered (their answers
    /// queued for a worker or the group commit hold descriptors too):
    /// beyond it the oldest waiting one is closed, or with none waiting the
    /// new one is turned away (503). What the file descriptor limit allows.
    pub open: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            idle: Duration::from_secs(2),
            deadline: Duration::from_secs(5),
            write: Duration::from_secs(5),
            workers: 4,
            queue: 256,
            waiting: 1024,
            open: usize::MAX,
        }
    }
}

impl Limits {
    /// The defaults, or in debug builds (tests) shorter times from
    /// `HERO_USAGE_TEST_SHIM_TIMES=<idle ms>,<deadline ms>` and fewer waiting
    /// connections from `HERO_USAGE_TEST_SHIM_WAITING=<n>`, and fewer
    /// workers from `HERO_USAGE_TEST_SHIM_WORKERS=<n>`.
    pub fn from_env() -> Limits {
        let mut limits = Limits::default();
        if let Some(v) = crate::failpoint::test_knob("HERO_USAGE_TEST_SHIM_TIMES") {
            let ms: Vec<u64> = v.split(',').filter_map(|n| n.trim().parse().ok()).collect();
            if let [idle, deadline] = ms[..] {
                limits.idle = Duration::from_millis(idle);
                limits.deadline = Duration::from_millis(deadline);
            }
        }
        if let Some(n) =
            crate::failpoint::test_knob("HERO_USAGE_TEST_SHIM_WAITING").and_then(|v| v.parse().ok())
        {
            limits.waiting = n;
        }
        if let Some(n) =
            crate::failpoint::test_knob("HERO_USAGE_TEST_SHIM_WORKERS").and_then(|v| v.parse().ok())
        {
            limits.workers = n;
        }
        limits
    }
}

/// The head of a request: what the application sees before the body is read.
#[derive(Debug, Clone)]
pub struct Head {
    pub method: String,
    /// The path without the query string.
    pub path: String,
    /// Header names in lower case, values as sent (surrounding white space trimmed).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The `Content-Length`, if given (checked: one, digits only, within [`MAX_BODY`]).
    pub content_length: Option<u64>,
    /// HTTP/1.1 without `Connection: close`: the client may send another
    /// request on this connection.
    pub keep_alive: bool,
    /// HTTP/1.1 (else HTTP/1.0).
    pub http_1_1: bool,
}

impl Head {
    /// The value of a header (the first, if repeated); `name` in lower case.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Whether the client waits for `100 Continue` before the body (an
    /// HTTP/1.0 client cannot tell it from the answer: RFC 9110, 10.1.1).
    pub fn expects_continue(&self) -> bool {
        self.http_1_1
            && self
                .header("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"))
    }

    /// How often a header occurs; `name` in lower case.
    pub fn header_count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n == name).count()
    }
}

/// A whole request.
#[derive(Debug, Clone)]
pub struct Request {
    pub head: Head,
    pub body: Vec<u8>,
}

/// A JSON response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    /// The `Allow` header of a 405.
    pub allow: Option<&'static str>,
    /// Appended to the request's log line (never a secret, never the body).
    pub note: Option<String>,
}

impl Response {
    pub fn json(status: u16, value: &impl Serialize) -> Response {
        let mut body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        body.push(b'\n');
        Response {
            status,
            body,
            allow: None,
            note: None,
        }
    }

    /// `{"status": status_word, "error": message}`.
    pub fn error(status: u16, status_word: &str, message: impl Into<String>) -> Response {
        Response::json(
            status,
            &serde_json::json!({"status": status_word, "error": message.into()}),
        )
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Response {
        self.note = Some(note.into());
        self
    }

    /// The response as sent; `keep_alive`: the connection stays open.
    pub fn bytes(&self, keep_alive: bool) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: {}\r\n",
            self.status,
            reason(self.status),
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" }
        );
        if let Some(allow) = self.allow {
            out.push_str(&format!("Allow: {allow}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// What was learnt of a request, for its log line.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
}

impl Default for Seen {
    fn default() -> Seen {
        Seen {
            method: "-".into(),
            path: "-".into(),
        }
    }
}

/// Refuse a request the server itself cannot take (framing, limits, time):
/// the message is the answer's error and the log line's note, so it never
/// holds a header value or anything else the client sent.
pub fn refuse(status: u16, status_word: &str, message: String) -> Response {
    Response::error(status, status_word, message.clone()).with_note(message)
}

/// The 408 of a request that did not arrive in time.
pub fn timeout(limits: &Limits) -> Response {
    refuse(
        408,
        "timeout",
        format!(
            "the request did not arrive in time (at most {} ms idle, {} ms in all)",
            limits.idle.as_millis(),
            limits.deadline.as_millis()
        ),
    )
}

/// The 400 of a malformed request.
pub fn bad(message: impl Into<String>) -> Response {
    refuse(400, "bad-request", message.into())
}

/// Parse and check the head at the start of `buf`: `Ok(None)` while it is
/// incomplete, else the head and where it ends. The request line goes into
/// `seen` as soon as it is parsed, so that a request refused later (framing,
/// limits, time) is still logged with it.
pub fn parse_head(buf: &[u8], seen: &mut Seen) -> Result<Option<(Head, usize)>, Response> {
    let window = &buf[..buf.len().min(MAX_HEAD)];
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let parsed = req.parse(window);
    if let (Some(method), Some(target)) = (req.method, req.path) {
        seen.method = method.to_string();
        seen.path = path_of(target);
    }
    match parsed {
        Ok(httparse::Status::Partial) if window.len() == MAX_HEAD => Err(refuse(
            431,
            "head-too-large",
            format!("the request head is larger than {MAX_HEAD} bytes"),
        )),
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(end)) => Ok(Some((make_head(&req)?, end))),
        Err(httparse::Error::TooManyHeaders) => Err(refuse(
            431,
            "head-too-large",
            format!("more than {MAX_HEADERS} header fields"),
        )),
        Err(e) => Err(bad(format!("malformed request: {e}"))),
    }
}

/// The path of a request target: without the query string, which is
/// neither routed on nor logged.
fn path_of(target: &str) -> String {
    target.split('?').next().unwrap_or_default().to_string()
}

fn make_head(req: &httparse::Request) -> Result<Head, Response> {
    let method = req.method.unwrap_or_default().to_string();
    let path = path_of(req.path.unwrap_or_default());
    let headers: Vec<(String, Vec<u8>)> = req
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.trim_ascii().to_vec()))
        .collect();
    if headers.iter().any(|(n, _)| n == "transfer-encoding") {
        return Err(bad(
            "Transfer-Encoding is not supported; send the body with a Content-Length",
        ));
    }
    let lengths: Vec<&[u8]> = headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v.as_slice())
        .collect();
    let content_length = match lengths.as_slice() {
        [] => None,
        [v] => {
            if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
                return Err(bad("invalid Content-Length"));
            }
            let n: u64 = std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("invalid Content-Length"))?;
            if n > MAX_BODY {
                return Err(refuse(
                    413,
                    "body-too-large",
                    format!("the body is larger than {MAX_BODY} bytes"),
                ));
            }
            Some(n)
        }
        _ => return Err(bad("Content-Length is given more than once")),
    };
    let close = headers.iter().any(|(n, v)| {
        n == "connection"
            && v.split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
    });
    let http_1_1 = req.version == Some(1);
    Ok(Head {
        method,
        path,
        headers,
        content_length,
        keep_alive: http_1_1 && !close,
        http_1_1,
    })
}

/// Printable ASCII only, at most `max` characters: safe for a log line.
pub fn printable(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Head, Response> {
        let parsed = parse_head(raw.as_bytes(), &mut Seen::default())?;
        let (head, end) = parsed.expect("a complete head");
        assert_eq!(end, raw.len());
        Ok(head)
    }

    fn status(r: Result<Head, Response>) -> u16 {
        match r {
            Ok(_) => 0,
            Err(resp) => resp.status,
        }
    }

    #[test]
    fn framing_rules() {
        let h = head("POST /a?b=c HTTP/1.1\r\nContent-Length: 12\r\nX-A:  v \r\n\r\n").unwrap();
        assert_eq!(h.path, "/a");
        assert_eq!(h.content_length, Some(12));
        assert_eq!(h.header("x-a"), Some(&b"v"[..]));
        for (raw, code) in [
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            (
                "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
                400,
            ),
            ("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n", 413),
            (
                "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
                400,
            ),
            ("POST / HTTP/1.1\r\nContent-Length: 65536\r\n\r\n", 0),
        ] {
            assert_eq!(status(head(raw)), code, "{raw:?}");
        }
    }

    #[test]
    fn keep_alive_and_partial_heads() {
        assert!(head("GET / HTTP/1.1\r\n\r\n").unwrap().keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        let close = "GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n";
        assert!(!head(close).unwrap().keep_alive);
        let mut seen = Seen::default();
        let partial = parse_head(b"POST /record_usage?x HTTP/1.1\r\nHo", &mut seen);
        assert!(matches!(partial, Ok(None)));
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            ("POST", "/record_usage")
        );
        let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD));
        assert_eq!(
            status(parse_head(long.as_bytes(), &mut seen).map(|_| unreachable!())),
            431
        );
    }

    #[test]
    fn only_http_1_1_is_sent_100_continue() {
        let expect = "Expect: 100-continue\r\nContent-Length: 2\r\n\r\n";
        let h11 = head(&format!("POST / HTTP/1.1\r\n{expect}")).unwrap();
        assert!(h11.expects_continue());
        // RFC 9110, 10.1.1: an HTTP/1.0 request's expectation is ignored
        // (its client cannot tell a 100 from the final answer).
        let h10 = head(&format!("POST / HTTP/1.0\r\n{expect}")).unwrap();
        assert!(!h10.expects_continue());
    }

    #[test]
    fn log_text_is_printable() {
        assert_eq!(printable("/a\u{1b}[1m\n", 10), "/a?[1m?");
        assert_eq!(printable("abcdef", 3), "abc");
    }
}
