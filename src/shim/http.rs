//! A minimal, hardened HTTP/1.1 server on `std::net`: no async runtime, one
//! request per connection (`Connection: close`), a fixed pool of worker
//! threads fed by the accept loop, requests parsed with `httparse`.
//!
//! Limits (man 1 hero_usage_shim, ROUTES): the request head is at most
//! [`MAX_HEAD`] bytes (431), the body at most [`MAX_BODY`] (413), any
//! `Transfer-Encoding` is refused (400), as is a repeated or malformed
//! `Content-Length` (400). Each read waits at most [`Limits::idle`] and the
//! whole request must arrive within [`Limits::deadline`] (408), so a stalled
//! or trickling client holds a worker for a few seconds at most.

use crate::console::err_line;
use serde::Serialize;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest request head (request line and headers), in bytes.
pub const MAX_HEAD: usize = 8 * 1024;
/// Largest request body, in bytes.
pub const MAX_BODY: u64 = 64 * 1024;
/// Most header fields in one request (more: 431).
pub const MAX_HEADERS: usize = 64;

/// The server's times and sizes of its pool: a value, so that tests can run
/// a shim with short timeouts instead of sleeping for the real ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest wait for the next bytes of a request.
    pub idle: Duration,
    /// The whole request (head and body) must arrive within this time.
    pub deadline: Duration,
    /// Longest wait while writing a response.
    pub write: Duration,
    /// Worker threads serving connections.
    pub workers: usize,
    /// Accepted connections waiting for a worker; beyond it new ones get 503.
    pub queue: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            idle: Duration::from_secs(2),
            deadline: Duration::from_secs(5),
            write: Duration::from_secs(5),
            workers: 4,
            queue: 64,
        }
    }
}

impl Limits {
    /// The defaults, or in debug builds (tests) shorter times from
    /// `HERO_USAGE_TEST_SHIM_TIMES=<idle ms>,<deadline ms>`.
    pub fn from_env() -> Limits {
        let mut limits = Limits::default();
        if let Some(v) = crate::failpoint::test_knob("HERO_USAGE_TEST_SHIM_TIMES") {
            let ms: Vec<u64> = v.split(',').filter_map(|n| n.trim().parse().ok()).collect();
            if let [idle, deadline] = ms[..] {
                limits.idle = Duration::from_millis(idle);
                limits.deadline = Duration::from_millis(deadline);
            }
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
}

impl Head {
    /// The value of a header (the first, if repeated); `name` in lower case.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
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

    fn bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.body.len()
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

/// The application behind the server.
pub trait Handler: Send + Sync + 'static {
    /// Decide on the head alone (route, method, authentication, whether a
    /// body is required): `Err` answers at once and the body is not read.
    fn check(&self, head: &Head) -> Result<(), Response>;
    /// Answer a whole request that passed [`Handler::check`].
    fn handle(&self, request: &Request) -> Response;
}

/// A bound listener, not yet serving.
pub struct Server {
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    /// Prefix of every log line (the binary's name).
    name: &'static str,
    limits: Limits,
}

/// Stops a serving [`Server`] from another thread (a signal handler thread):
/// no new connections are accepted, those accepted are finished.
#[derive(Clone)]
pub struct Stopper {
    stop: Arc<AtomicBool>,
    wake: SocketAddr,
}

impl Stopper {
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocked accept(2); the connection closes at once.
        let _ = TcpStream::connect_timeout(&self.wake, Duration::from_secs(1));
    }
}

impl Server {
    pub fn bind(addr: SocketAddr, name: &'static str, limits: Limits) -> io::Result<Server> {
        Ok(Server {
            listener: TcpListener::bind(addr)?,
            stop: Arc::new(AtomicBool::new(false)),
            name,
            limits,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn stopper(&self) -> io::Result<Stopper> {
        let mut wake = self.listener.local_addr()?;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        Ok(Stopper {
            stop: self.stop.clone(),
            wake,
        })
    }

    /// Serve until stopped, then finish every accepted connection and return.
    pub fn serve(self, handler: Arc<dyn Handler>) -> io::Result<()> {
        let limits = self.limits;
        let (tx, rx) = mpsc::sync_channel::<TcpStream>(limits.queue);
        let rx = Arc::new(Mutex::new(rx));
        let mut workers = Vec::with_capacity(limits.workers);
        for i in 0..limits.workers {
            let rx = rx.clone();
            let handler = handler.clone();
            let name = self.name;
            workers.push(
                std::thread::Builder::new()
                    .name(format!("http-worker-{i}"))
                    .spawn(move || {
                        loop {
                            let next = rx.lock().map(|r| r.recv());
                            match next {
                                Ok(Ok(stream)) => {
                                    serve_connection(stream, &*handler, name, &limits)
                                }
                                _ => break,
                            }
                        }
                    })?,
            );
        }
        let Server {
            listener,
            stop,
            name,
            ..
        } = self;
        for conn in listener.incoming() {
            match conn {
                Ok(stream) => match tx.try_send(stream) {
                    Ok(()) => {}
                    Err(TrySendError::Full(stream)) => busy(stream, name),
                    Err(TrySendError::Disconnected(_)) => break,
                },
                Err(e) => {
                    // Out of file descriptors and the like: do not spin.
                    let _ = err_line(&format!("{name}: accept failed: {e}"));
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            if stop.load(Ordering::SeqCst) {
                break;
            }
        }
        drop(listener);
        drop(tx);
        for w in workers {
            let _ = w.join();
        }
        Ok(())
    }
}

/// Every worker is busy and the queue is full: a short 503, without waiting
/// (nothing is read, so the method and path are unknown).
fn busy(stream: TcpStream, name: &str) {
    let _ = stream.set_nonblocking(true);
    let resp = Response::error(503, "busy", "the shim is busy; try again");
    let _ = (&stream).write_all(&resp.bytes());
    let _ = err_line(&format!("{name}: {} - - 503 0ms busy", peer_of(&stream)));
}

/// The client's address for a log line, `-` when unknown.
fn peer_of(stream: &TcpStream) -> String {
    stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "-".into())
}

/// Why reading a request stopped.
#[derive(Debug)]
enum Stop {
    /// The client sent nothing and went away (or a stop wake-up): no answer.
    Silent,
    /// Answer with this response.
    Answer(Response),
}

/// A connection with its request deadline.
struct Conn {
    stream: TcpStream,
    deadline: Instant,
    limits: Limits,
}

impl Conn {
    /// Read some bytes within the idle timeout and the request deadline;
    /// Ok(0) is end of input.
    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, Stop> {
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timeout(&self.limits));
            }
            let wait = left.min(self.limits.idle);
            if self.stream.set_read_timeout(Some(wait)).is_err() {
                return Err(Stop::Silent);
            }
            match self.stream.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(timeout(&self.limits));
                }
                Err(_) => return Err(Stop::Silent),
            }
        }
    }
}

/// Refuse a request the server itself cannot take (framing, limits, time):
/// the message is the answer's error and the log line's note, so it never
/// holds a header value or anything else the client sent.
fn refuse(status: u16, status_word: &str, message: String) -> Stop {
    Stop::Answer(Response::error(status, status_word, message.clone()).with_note(message))
}

fn timeout(limits: &Limits) -> Stop {
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

fn bad(message: impl Into<String>) -> Stop {
    refuse(400, "bad-request", message.into())
}

/// Read and check the head; returns it with the bytes read past it. The
/// request line goes into `seen` as soon as it is parsed, so that a request
/// refused later (framing, limits, time) is still logged with it.
fn read_head(conn: &mut Conn, seen: &mut Seen) -> Result<(Head, Vec<u8>), Stop> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    loop {
        if len == MAX_HEAD {
            return Err(refuse(
                431,
                "head-too-large",
                format!("the request head is larger than {MAX_HEAD} bytes"),
            ));
        }
        let n = conn.read_some(&mut buf[len..])?;
        if n == 0 {
            return Err(if len == 0 {
                Stop::Silent
            } else {
                bad("the request ended before its head was complete")
            });
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let parsed = req.parse(&buf[..len]);
        if let (Some(method), Some(target)) = (req.method, req.path) {
            seen.method = method.to_string();
            seen.path = path_of(target);
        }
        match parsed {
            Ok(httparse::Status::Partial) => continue,
            Ok(httparse::Status::Complete(end)) => {
                let head = make_head(&req)?;
                return Ok((head, buf[end..len].to_vec()));
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(refuse(
                    431,
                    "head-too-large",
                    format!("more than {MAX_HEADERS} header fields"),
                ));
            }
            Err(e) => return Err(bad(format!("malformed request: {e}"))),
        }
    }
}

/// The path of a request target: without the query string, which is
/// neither routed on nor logged.
fn path_of(target: &str) -> String {
    target.split('?').next().unwrap_or_default().to_string()
}

fn make_head(req: &httparse::Request) -> Result<Head, Stop> {
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
    Ok(Head {
        method,
        path,
        headers,
        content_length,
    })
}

fn read_body(conn: &mut Conn, head: &Head, mut body: Vec<u8>) -> Result<Vec<u8>, Stop> {
    let want = head.content_length.unwrap_or(0) as usize;
    // Bytes past the body (a pipelined request) are not served.
    body.truncate(want);
    let mut chunk = [0u8; 8192];
    while body.len() < want {
        let room = (want - body.len()).min(chunk.len());
        let n = conn.read_some(&mut chunk[..room])?;
        if n == 0 {
            return Err(bad("the request ended before its body was complete"));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(body)
}

/// What was learnt of a request, for its log line.
struct Seen {
    method: String,
    path: String,
    /// The request was not read to its end (answer before the body).
    unread: bool,
}

/// Serve one connection: read one request, answer it, close.
fn serve_connection(stream: TcpStream, handler: &dyn Handler, name: &str, limits: &Limits) {
    let start = Instant::now();
    let peer = peer_of(&stream);
    let _ = stream.set_write_timeout(Some(limits.write));
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        stream,
        deadline: start + limits.deadline,
        limits: *limits,
    };
    let mut seen = Seen {
        method: "-".into(),
        path: "-".into(),
        unread: true,
    };
    let resp = match exchange(&mut conn, handler, &mut seen) {
        Ok(resp) => resp,
        Err(Stop::Answer(resp)) => resp,
        Err(Stop::Silent) => return,
    };
    let _ = conn.stream.write_all(&resp.bytes());
    let _ = conn.stream.flush();
    let _ = conn.stream.shutdown(Shutdown::Write);
    if seen.unread {
        linger(&mut conn.stream);
    }
    let note = resp
        .note
        .as_deref()
        .map(|n| format!(" {}", printable(n, 300)))
        .unwrap_or_default();
    // A log line stderr cannot take must not end the worker thread.
    let _ = err_line(&format!(
        "{name}: {peer} {} {} {} {}ms{note}",
        printable(&seen.method, 16),
        printable(&seen.path, 128),
        resp.status,
        start.elapsed().as_millis()
    ));
}

fn exchange(conn: &mut Conn, handler: &dyn Handler, seen: &mut Seen) -> Result<Response, Stop> {
    let (head, rest) = read_head(conn, seen)?;
    handler.check(&head).map_err(Stop::Answer)?;
    let expects_continue = head
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"));
    if expects_continue && head.content_length.unwrap_or(0) > rest.len() as u64 {
        let _ = conn.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let body = read_body(conn, &head, rest)?;
    seen.unread = false;
    let request = Request { head, body };
    let resp = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler.handle(&request)))
        .unwrap_or_else(|_| {
            Response::error(500, "error", "internal error (a bug); see the shim's log")
        });
    Ok(resp)
}

/// After answering a request that was not read to its end, read (and drop)
/// what the client still sends for a moment, so that closing does not reset
/// the connection before the client has read the answer.
fn linger(stream: &mut TcpStream) {
    let until = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 8192];
    let mut total = 0usize;
    while total < 1 << 20 {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
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

    fn head(raw: &str) -> Result<Head, Stop> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        assert!(req.parse(raw.as_bytes()).unwrap().is_complete());
        make_head(&req)
    }

    fn status(r: Result<Head, Stop>) -> u16 {
        match r {
            Ok(_) => 0,
            Err(Stop::Answer(resp)) => resp.status,
            Err(Stop::Silent) => 1,
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
    fn log_text_is_printable() {
        assert_eq!(printable("/a\u{1b}[1m\n", 10), "/a?[1m?");
        assert_eq!(printable("abcdef", 3), "abc");
    }
}
