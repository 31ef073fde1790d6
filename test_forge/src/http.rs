//! A small threaded HTTP/1.1 server: one thread per connection, requests
//! parsed with httparse, bodies by `Content-Length` only, one request per
//! connection (`Connection: close`), which every HTTP client handles.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Largest request body accepted (a push of 100k records sends ~30 MB).
pub const MAX_BODY: usize = 256 * 1024 * 1024;
const MAX_HEAD: usize = 64 * 1024;

pub struct Request {
    pub method: String,
    /// The target as sent: path and query, still percent-encoded.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The Content-Length exceeded [`Limits::max_body`]: the body was not
    /// read (and `body` is empty); the connection closes after the answer.
    pub body_too_large: bool,
}

/// What a proxy in front of the forge would refuse.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limits {
    /// nginx's `client_max_body_size`.
    pub max_body: Option<u64>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The path part of the target (no query), still encoded.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
    /// A query parameter, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        let q = self.target.split_once('?')?.1;
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then(|| percent_decode(v))
        })
    }
}

pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    /// More headers, e.g. `X-Total-Count` of a paged list.
    pub headers: Vec<(String, String)>,
}

impl Response {
    pub fn json(status: u16, v: &serde_json::Value) -> Response {
        Response {
            status,
            content_type: "application/json;charset=utf-8".into(),
            body: serde_json::to_vec(v).expect("json"),
            headers: Vec::new(),
        }
    }
    /// nginx's answer to a body over `client_max_body_size`.
    pub fn nginx_413() -> Response {
        Response {
            status: 413,
            content_type: "text/html".into(),
            body: b"<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n\
<body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n\
<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
                .to_vec(),
            headers: Vec::new(),
        }
    }
    pub fn bytes(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            body,
            headers: Vec::new(),
        }
    }
}

/// What the handler wants done with the connection.
pub enum Outcome {
    Reply(Response),
    /// Close the connection without a reply.
    Drop,
    /// Reset the connection (TCP RST) without a reply.
    Reset,
}

pub type Handler = Arc<dyn Fn(Request) -> Outcome + Send + Sync>;

pub struct Server {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(listen: &str, handler: Handler, limits: Limits) -> std::io::Result<Server> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let accept = std::thread::Builder::new()
            .name("testforge-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = conn else { continue };
                    let h = handler.clone();
                    let _ = std::thread::Builder::new()
                        .name("testforge-conn".into())
                        .spawn(move || serve(stream, h, limits));
                }
            })?;
        Ok(Server {
            addr,
            stop,
            accept: Some(accept),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn serve(stream: TcpStream, handler: Handler, limits: Limits) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let req = match read_request(&stream, limits) {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err((status, msg)) => {
            let body = serde_json::json!({"message": msg, "url": ""});
            let _ = write_response(&stream, &Response::json(status, &body));
            return;
        }
    };
    let unread_body = req.body_too_large;
    match handler(req) {
        // As a proxy does: answer, then close with the body still unread
        // (the client may see the answer or a reset, i.e. a broken pipe).
        Outcome::Reply(resp) if unread_body => {
            let _ = write_response(&stream, &resp);
            let _ = stream.shutdown(Shutdown::Both);
        }
        Outcome::Reply(resp) => {
            let _ = write_response(&stream, &resp);
            let _ = stream.shutdown(Shutdown::Write);
        }
        Outcome::Drop => {
            let _ = stream.shutdown(Shutdown::Both);
        }
        Outcome::Reset => reset(stream),
    }
}

/// Close with SO_LINGER 0: the peer gets a TCP RST ("connection reset"),
/// not an orderly end of the stream.
fn reset(stream: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a pointer to a linger of the size given.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(stream);
}

fn read_request(stream: &TcpStream, limits: Limits) -> Result<Option<Request>, (u16, String)> {
    let mut r = BufReader::new(stream);
    let mut head = Vec::new();
    loop {
        let n = r
            .read_until(b'\n', &mut head)
            .map_err(|e| (400, format!("read: {e}")))?;
        if n == 0 {
            if head.is_empty() {
                return Ok(None);
            }
            return Err((400, "truncated request head".into()));
        }
        if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
            break;
        }
        if head.len() > MAX_HEAD {
            return Err((431, "request head too large".into()));
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err((400, "malformed request".into())),
    }
    let method = parsed.method.unwrap_or("").to_string();
    let target = parsed.path.unwrap_or("").to_string();
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    let find = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    if find("transfer-encoding").is_some() {
        return Err((
            411,
            "chunked bodies are not supported: send Content-Length".into(),
        ));
    }
    let len: usize = match find("content-length") {
        Some(v) => v
            .parse()
            .map_err(|_| (400, "bad Content-Length".to_string()))?,
        None => 0,
    };
    let body_too_large = limits.max_body.is_some_and(|m| len as u64 > m);
    if len > MAX_BODY && !body_too_large {
        return Err((413, "request body too large".into()));
    }
    let mut body = Vec::new();
    if !body_too_large {
        body = vec![0u8; len];
        r.read_exact(&mut body)
            .map_err(|e| (400, format!("truncated body: {e}")))?;
    }
    Ok(Some(Request {
        method,
        target,
        headers,
        body,
        body_too_large,
    }))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Request Entity Too Large",
        422 => "Unprocessable Entity",
        423 => "Locked",
        429 => "Too Many Requests",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn write_response(mut stream: &TcpStream, resp: &Response) -> std::io::Result<()> {
    let extra: String = resp
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(&resp.body);
    stream.write_all(&out)?;
    stream.flush()
}

/// Decode `%XX` escapes (and nothing else: `+` stays `+`, as in a path).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
