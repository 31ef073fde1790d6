//! The shim's HTTP server on `std::net` and poll(2), without an async
//! runtime. One poller thread accepts connections and reads each request
//! whole (head and body) without blocking; only a complete request (or one
//! whose time is up) goes on: a quick one ([`Handler::quick`]) is handled
//! there, the others go to a fixed pool of worker threads. So idle and
//! slow connections wait outside the workers: they cost a file descriptor
//! and a few bytes each, and at most [`Limits::waiting`] of them are kept
//! (the oldest is closed when a new one comes). A request is answered
//! through its [`Reply`], from whichever thread decides the answer (a
//! worker, or the group committer of records); a kept-alive connection then
//! goes back to the poller for its next request, and a write the socket
//! cannot take at once is finished there.

use super::http::{
    Head, Limits, MAX_BODY, MAX_HEAD, Request, Response, Seen, bad, parse_head, printable, timeout,
};
use crate::console::err_line;
use rustix::event::{PollFd, PollFlags, poll};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the input of a request answered before it was read to its end
/// is drained, so that closing does not reset the connection before the
/// client has read the answer.
const DRAIN: Duration = Duration::from_secs(1);
/// Most bytes drained that way.
const DRAIN_BYTES: usize = 1 << 20;
/// File descriptors kept free for everything but connections (the spool,
/// push-now's connections to the forge, the log).
const SPARE_FDS: u64 = 64;

/// The application behind the server.
pub trait Handler: Send + Sync + 'static {
    /// Decide on the head alone (route, method, authentication, whether a
    /// body is required): `Err` answers at once.
    fn check(&self, head: &Head) -> Result<(), Response>;
    /// Answer a whole request that passed [`Handler::check`], now or later,
    /// from any thread, through `reply`.
    fn handle(&self, request: Request, reply: Reply);
    /// Whether [`Handler::check`] and [`Handler::handle`] never wait for
    /// this request (no fsync, no network; a queue is fine): the poller then
    /// answers it itself, sparing the hop through a worker, which is most of
    /// a lone record's latency besides its fsync.
    fn quick(&self, _head: &Head) -> bool {
        false
    }
}

/// What the poller and the answering threads share.
struct Shared {
    /// Prefix of every log line (the binary's name).
    name: &'static str,
    limits: Limits,
    stop: AtomicBool,
    /// Kept-alive connections (and answers the socket did not take at once)
    /// handed back to the poller.
    back: Mutex<Vec<Conn>>,
    /// Written to wake the poller.
    waker: UnixStream,
    /// Requests handed to the workers and not yet answered and closed or
    /// handed back: the poller finishes them before a stop returns.
    in_flight: AtomicUsize,
}

impl Shared {
    fn wake(&self) {
        // A full socket means a wake-up is pending already.
        let _ = (&self.waker).write(&[1]);
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// A connection goes back to the poller (which counts it in again).
    fn give_back(&self, conn: Conn) {
        if let Ok(mut back) = self.back.lock() {
            back.push(conn);
        }
        self.wake();
    }

    /// A request handed out was answered and its connection closed.
    fn done(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.stopping() {
            self.wake();
        }
    }

    /// One line per request on stderr, never a header value or the body.
    fn log(&self, conn: &Conn, resp: &Response) {
        let note = resp
            .note
            .as_deref()
            .map(|n| format!(" {}", printable(n, 300)))
            .unwrap_or_default();
        // A log line stderr cannot take must not end a thread.
        let _ = err_line(&format!(
            "{}: {} {} {} {} {}ms{note}",
            self.name,
            conn.peer,
            printable(&conn.seen.method, 16),
            printable(&conn.seen.path, 128),
            resp.status,
            conn.start.elapsed().as_millis()
        ));
    }
}

/// A bound listener, not yet serving.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    wake_rx: UnixStream,
}

/// Stops a serving [`Server`] from another thread (a signal handler thread):
/// no new connections are accepted; the requests that arrived are answered.
#[derive(Clone)]
pub struct Stopper {
    shared: Arc<Shared>,
}

impl Stopper {
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake();
    }
}

/// A complete request for a worker.
struct Job {
    request: Request,
    reply: Reply,
}

impl Server {
    pub fn bind(addr: SocketAddr, name: &'static str, mut limits: Limits) -> io::Result<Server> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let (waker, wake_rx) = UnixStream::pair()?;
        waker.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let room = waiting_room();
        limits.waiting = limits.waiting.min(room).max(1);
        limits.open = limits.open.min(room).max(1);
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                name,
                limits,
                stop: AtomicBool::new(false),
                back: Mutex::new(Vec::new()),
                waker,
                in_flight: AtomicUsize::new(0),
            }),
            wake_rx,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn stopper(&self) -> Stopper {
        Stopper {
            shared: self.shared.clone(),
        }
    }

    /// Serve until stopped, then answer every request that arrived and return.
    pub fn serve(self, handler: Arc<dyn Handler>) -> io::Result<()> {
        let limits = self.shared.limits;
        let (jobs, rx) = mpsc::sync_channel::<Job>(limits.queue);
        let rx = Arc::new(Mutex::new(rx));
        let mut workers = Vec::with_capacity(limits.workers);
        for i in 0..limits.workers {
            let (rx, handler) = (rx.clone(), handler.clone());
            workers.push(
                std::thread::Builder::new()
                    .name(format!("http-worker-{i}"))
                    .spawn(move || work(&rx, &*handler))?,
            );
        }
        Poller {
            listener: Some(self.listener),
            wake_rx: self.wake_rx,
            shared: self.shared,
            jobs,
            handler,
            conns: Vec::new(),
        }
        .run();
        for w in workers {
            let _ = w.join();
        }
        Ok(())
    }
}

/// Raise the soft limit of open files to the hard one (at most 8192), and
/// return how many connections it leaves room for.
fn waiting_room() -> usize {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    let want = lim.maximum.unwrap_or(8192).min(8192);
    if lim.current.is_some_and(|c| c < want) {
        let raised = Rlimit {
            current: Some(want),
            maximum: lim.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            lim.current = Some(want);
        }
    }
    let room = lim.current.unwrap_or(8192).saturating_sub(SPARE_FDS);
    usize::try_from(room).unwrap_or(usize::MAX)
}

/// A worker: answer complete requests until the poller is gone.
fn work(rx: &Mutex<Receiver<Job>>, handler: &dyn Handler) {
    loop {
        let next = rx.lock().map(|r| r.recv());
        let Ok(Ok(job)) = next else {
            break;
        };
        run_job(handler, job);
    }
}

/// Check and handle one request. A panic in the handler answers 500 (the
/// dropped [`Reply`] does) and ends neither a worker nor the poller.
fn run_job(handler: &dyn Handler, Job { request, reply }: Job) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        match handler.check(&request.head) {
            Ok(()) => handler.handle(request, reply),
            Err(resp) => reply.send(resp),
        }
    }));
}

/// One answer owed: the connection its request came on. Answered exactly
/// once; dropped unanswered (a panic), it answers 500.
pub struct Reply {
    conn: Option<Conn>,
    shared: Arc<Shared>,
    keep_alive: bool,
}

impl Reply {
    /// Send the answer: written at once if the socket takes it (else the
    /// poller finishes it), then the connection is closed or, kept alive,
    /// goes back to the poller for the next request.
    pub fn send(mut self, resp: Response) {
        if let Some(conn) = self.conn.take() {
            answer(conn, &resp, self.keep_alive, &self.shared);
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let resp = Response::error(500, "error", "internal error (a bug); see the shim's log");
            answer(conn, &resp, false, &self.shared);
        }
    }
}

/// Answer a request handed out to a worker (see [`Reply::send`]).
fn answer(mut conn: Conn, resp: &Response, keep_alive: bool, shared: &Shared) {
    let keep = keep_alive && !shared.stopping();
    shared.log(&conn, resp);
    let out = resp.bytes(keep);
    let then = if keep { After::Next } else { After::Close };
    match write_some(&conn.stream, &out) {
        Ok(n) if n == out.len() => {
            if keep {
                conn.next_request();
                shared.give_back(conn);
            } else {
                let _ = conn.stream.shutdown(Shutdown::Write);
                drop(conn);
                shared.done();
            }
        }
        Ok(n) => {
            conn.state = State::Writing {
                out,
                at: n,
                then,
                until: Instant::now() + shared.limits.write,
            };
            shared.give_back(conn);
        }
        Err(_) => {
            drop(conn);
            shared.done();
        }
    }
}

/// Write what the socket takes now (it is non-blocking); returns how much.
fn write_some(mut stream: &TcpStream, out: &[u8]) -> io::Result<usize> {
    let mut at = 0;
    while at < out.len() {
        match stream.write(&out[at..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(at)
}

/// What happens once an answer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Read the next request (keep-alive).
    Next,
    /// Close.
    Close,
    /// The request was not read to its end: drain its input a moment, then
    /// close.
    Drain,
}

enum State {
    /// Waiting for (the rest of) a request.
    Reading,
    Writing {
        out: Vec<u8>,
        at: usize,
        then: After,
        until: Instant,
    },
    Draining {
        until: Instant,
        drained: usize,
    },
}

/// A connection and its request so far.
struct Conn {
    stream: TcpStream,
    /// The client's address, for the log.
    peer: String,
    /// Bytes read and not yet handed on (a pipelined request's too).
    buf: Vec<u8>,
    /// When the wait for this request began: the accept, or the answer
    /// before it on a kept-alive connection. Its deadline counts from here.
    start: Instant,
    last_read: Instant,
    /// Answers sent on this connection.
    served: u32,
    /// `100 Continue` sent for this request.
    continued: bool,
    /// The client closed its side.
    eof: bool,
    seen: Seen,
    state: State,
}

impl Conn {
    fn new(stream: TcpStream, now: Instant) -> Conn {
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "-".into());
        Conn {
            stream,
            peer,
            buf: Vec::new(),
            start: now,
            last_read: now,
            served: 0,
            continued: false,
            eof: false,
            seen: Seen::default(),
            state: State::Reading,
        }
    }

    /// Ready for the next request on a kept-alive connection.
    fn next_request(&mut self) {
        let now = Instant::now();
        self.served += 1;
        self.start = now;
        self.last_read = now;
        self.continued = false;
        self.seen = Seen::default();
        self.state = State::Reading;
    }

    /// Between requests on a kept-alive connection: nothing is owed.
    fn idle_kept_alive(&self) -> bool {
        matches!(self.state, State::Reading) && self.served > 0 && self.no_request_read()
    }

    /// Nothing of a next request has been read: at most the empty lines a
    /// client may send after a request (a shell's `printf '...%s\n'`),
    /// which RFC 9112 (2.2) says to ignore.
    fn no_request_read(&self) -> bool {
        self.buf.iter().all(|&b| b == b'\r' || b == b'\n')
    }

    /// Which connections make room first: those owed nothing (idle between
    /// requests, then draining after their answer), then one whose request
    /// is on its way (it gets a 503), last one whose answer is still being
    /// written (that cuts an answer owed, a record's 201; but clients that
    /// never read their answers must not hold the room either).
    fn eviction_rank(&self) -> u8 {
        match self.state {
            State::Reading if self.idle_kept_alive() => 0,
            State::Draining { .. } => 1,
            State::Reading => 2,
            State::Writing { .. } => 3,
        }
    }

    /// When the poller must look at this connection without an event.
    fn due(&self, limits: &Limits) -> Instant {
        match &self.state {
            State::Reading => (self.start + limits.deadline).min(self.last_read + limits.idle),
            State::Writing { until, .. } | State::Draining { until, .. } => *until,
        }
    }

    fn events(&self) -> PollFlags {
        match self.state {
            State::Writing { .. } => PollFlags::OUT,
            State::Reading | State::Draining { .. } => PollFlags::IN,
        }
    }
}

/// What became of a connection the poller looked at.
enum Step {
    Keep(Conn),
    /// Handed to a worker, or closed.
    Gone,
}

/// The accepting and reading thread.
struct Poller {
    listener: Option<TcpListener>,
    wake_rx: UnixStream,
    shared: Arc<Shared>,
    jobs: SyncSender<Job>,
    handler: Arc<dyn Handler>,
    conns: Vec<Conn>,
}

impl Poller {
    fn run(mut self) {
        loop {
            self.take_back();
            if self.shared.stopping() {
                // No new connections; those between requests are closed.
                self.listener = None;
                self.conns.retain(|c| !c.idle_kept_alive());
            }
            if self.shared.stopping()
                && self.conns.is_empty()
                && self.shared.in_flight.load(Ordering::SeqCst) == 0
            {
                return;
            }
            let mut ready = self.wait();
            if ready.listener {
                self.accept(&mut ready.conns);
            }
            let now = Instant::now();
            let limits = self.shared.limits;
            let conns = std::mem::take(&mut self.conns);
            for (conn, events) in conns.into_iter().zip(ready.conns) {
                let step = if !events.is_empty() {
                    self.progress(conn)
                } else if conn.due(&limits) <= now {
                    self.expire(conn)
                } else {
                    Step::Keep(conn)
                };
                if let Step::Keep(conn) = step {
                    self.conns.push(conn);
                }
            }
        }
    }

    /// Take in the connections answering threads handed back: a kept-alive
    /// one may hold its next request already (pipelined).
    fn take_back(&mut self) {
        let back = match self.shared.back.lock() {
            Ok(mut back) => std::mem::take(&mut *back),
            Err(_) => Vec::new(),
        };
        for conn in back {
            self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            let step = match conn.state {
                State::Reading if !conn.buf.is_empty() => self.advance(conn),
                _ => Step::Keep(conn),
            };
            if let Step::Keep(conn) = step {
                self.conns.push(conn);
            }
        }
    }

    /// Accept what is waiting. A new connection is read at once (its request
    /// has often arrived with it). When [`Limits::waiting`] connections wait
    /// already, or [`Limits::open`] are open, a waiting one is closed first
    /// ([`Poller::make_room`]); with none waiting, the new one is turned away.
    fn accept(&mut self, events: &mut Vec<PollFlags>) {
        if let Some(listener) = self.listener.take() {
            self.accept_from(&listener, events);
            self.listener = Some(listener);
        }
    }

    fn accept_from(&mut self, listener: &TcpListener, events: &mut Vec<PollFlags>) {
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    if self.full() && !self.make_room(events) {
                        let conn = Conn::new(stream, Instant::now());
                        self.busy(
                            &conn,
                            "every connection the open-files limit allows is open",
                        );
                        continue;
                    }
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    self.conns.push(Conn::new(stream, Instant::now()));
                    events.push(PollFlags::IN);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of file descriptors and the like: make room, and
                    // do not spin.
                    let _ = err_line(&format!("{}: accept failed: {e}", self.shared.name));
                    if !self.make_room(events) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    return;
                }
            }
        }
    }

    /// Whether a new connection must make room first.
    fn full(&self) -> bool {
        let (limits, answering) = (&self.shared.limits, &self.shared.in_flight);
        self.conns.len() >= limits.waiting
            || self.conns.len() + answering.load(Ordering::SeqCst) >= limits.open
    }

    /// Close a waiting connection to make room, the oldest of those that
    /// come first (see [`Conn::eviction_rank`]): a short 503 unless it was
    /// idle between requests (nothing owed). Returns whether there was one.
    fn make_room(&mut self, events: &mut Vec<PollFlags>) -> bool {
        let rank = |c: &Conn| (c.eviction_rank(), c.start);
        let Some(i) = (0..self.conns.len()).min_by_key(|&i| rank(&self.conns[i])) else {
            return false;
        };
        let conn = self.conns.swap_remove(i);
        events.swap_remove(i);
        if matches!(conn.state, State::Reading) && !conn.idle_kept_alive() {
            self.busy(&conn, "too many connections waiting; the oldest was closed");
        }
        true
    }

    /// A short 503 on a connection about to be closed, logged with `note`.
    fn busy(&self, conn: &Conn, note: &str) {
        let resp = Response::error(503, "busy", "the shim is busy; try again").with_note(note);
        self.shared.log(conn, &resp);
        let _ = write_some(&conn.stream, &resp.bytes(false));
    }

    /// Act on an event.
    fn progress(&mut self, mut conn: Conn) -> Step {
        match &mut conn.state {
            State::Reading => {
                if self.read(&mut conn).is_err() {
                    return Step::Gone;
                }
                self.advance(conn)
            }
            State::Writing { out, at, then, .. } => {
                let then = *then;
                match write_some(&conn.stream, &out[*at..]) {
                    Ok(n) if *at + n == out.len() => self.written(conn, then),
                    Ok(n) => {
                        *at += n;
                        Step::Keep(conn)
                    }
                    Err(_) => Step::Gone,
                }
            }
            State::Draining { drained, .. } => {
                let mut sink = [0u8; 16 * 1024];
                loop {
                    match (&conn.stream).read(&mut sink) {
                        Ok(0) => return Step::Gone,
                        Ok(n) => {
                            *drained += n;
                            if *drained >= DRAIN_BYTES {
                                return Step::Gone;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            return Step::Keep(conn);
                        }
                        Err(_) => return Step::Gone,
                    }
                }
            }
        }
    }

    /// Its time is up: a request that did not arrive is answered 408 (a
    /// kept-alive connection with nothing owed is just closed); a write or
    /// a drain that did not end is given up.
    fn expire(&mut self, conn: Conn) -> Step {
        match conn.state {
            State::Reading if conn.idle_kept_alive() => Step::Gone,
            State::Reading => {
                let resp = timeout(&self.shared.limits);
                self.answer_here(conn, &resp, After::Drain)
            }
            State::Writing { .. } | State::Draining { .. } => Step::Gone,
        }
    }

    /// Read what has arrived, up to what a request may hold.
    fn read(&self, conn: &mut Conn) -> io::Result<()> {
        let most = MAX_HEAD + MAX_BODY as usize;
        let mut chunk = [0u8; 16 * 1024];
        while conn.buf.len() < most && !conn.eof {
            let room = chunk.len().min(most - conn.buf.len());
            match (&conn.stream).read(&mut chunk[..room]) {
                Ok(0) => conn.eof = true,
                Ok(n) => {
                    conn.buf.extend_from_slice(&chunk[..n]);
                    conn.last_read = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Look at what a connection has read: hand a complete request to a
    /// worker, refuse a bad one, or wait for more.
    fn advance(&mut self, mut conn: Conn) -> Step {
        let (head, end) = match parse_head(&conn.buf, &mut conn.seen) {
            Err(resp) => return self.answer_here(conn, &resp, After::Drain),
            Ok(Some(parsed)) => parsed,
            Ok(None) if conn.eof && conn.no_request_read() => return Step::Gone,
            Ok(None) if conn.eof => {
                let resp = bad("the request ended before its head was complete");
                return self.answer_here(conn, &resp, After::Close);
            }
            Ok(None) => return Step::Keep(conn),
        };
        let want = end + head.content_length.unwrap_or(0) as usize;
        if conn.buf.len() < want {
            if conn.eof {
                let resp = bad("the request ended before its body was complete");
                return self.answer_here(conn, &resp, After::Close);
            }
            if head.expects_continue() && !conn.continued {
                conn.continued = true;
                let _ = write_some(&conn.stream, b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            return Step::Keep(conn);
        }
        let body = conn.buf[end..want].to_vec();
        conn.buf.drain(..want);
        self.hand_off(conn, Request { head, body })
    }

    /// Give a complete request to the workers (a quick one is handled
    /// here); when their queue is full, a short 503.
    fn hand_off(&mut self, conn: Conn, request: Request) -> Step {
        // A client that closed its side after its requests is still owed
        // an answer to each it pipelined: close after the last.
        let keep_alive = request.head.keep_alive && !(conn.eof && conn.no_request_read());
        self.shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let reply = Reply {
            conn: Some(conn),
            shared: self.shared.clone(),
            keep_alive,
        };
        if self.handler.quick(&request.head) {
            run_job(&*self.handler, Job { request, reply });
            return Step::Gone;
        }
        match self.jobs.try_send(Job { request, reply }) {
            Ok(()) => Step::Gone,
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                let mut reply = job.reply;
                let conn = reply.conn.take().expect("an unanswered reply");
                self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                let resp = Response::error(503, "busy", "the shim is busy; try again")
                    .with_note("every worker is busy and their queue is full");
                self.answer_here(conn, &resp, After::Close)
            }
        }
    }

    /// The poller's own answer (a refused or late request, a busy shim):
    /// logged, written as far as the socket takes it, finished by events.
    fn answer_here(&mut self, mut conn: Conn, resp: &Response, then: After) -> Step {
        self.shared.log(&conn, resp);
        conn.state = State::Writing {
            out: resp.bytes(false),
            at: 0,
            then,
            until: Instant::now() + self.shared.limits.write,
        };
        self.progress(conn)
    }

    /// An answer is written.
    fn written(&mut self, mut conn: Conn, then: After) -> Step {
        match then {
            After::Next => {
                conn.next_request();
                if conn.buf.is_empty() {
                    Step::Keep(conn)
                } else {
                    self.advance(conn)
                }
            }
            After::Close => {
                let _ = conn.stream.shutdown(Shutdown::Write);
                Step::Gone
            }
            After::Drain => {
                let _ = conn.stream.shutdown(Shutdown::Write);
                conn.state = State::Draining {
                    until: Instant::now() + DRAIN,
                    drained: 0,
                };
                Step::Keep(conn)
            }
        }
    }
}

/// What poll(2) reported.
struct Ready {
    listener: bool,
    /// Per connection, in order.
    conns: Vec<PollFlags>,
}

impl Poller {
    /// Wait for an event or the next deadline.
    fn wait(&mut self) -> Ready {
        let limits = self.shared.limits;
        let next = self.conns.iter().map(|c| c.due(&limits)).min();
        let timeout = next.map(|due| {
            let left = due.saturating_duration_since(Instant::now());
            rustix::event::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            }
        });
        let mut fds = Vec::with_capacity(self.conns.len() + 2);
        fds.push(PollFd::new(&self.wake_rx, PollFlags::IN));
        if let Some(l) = &self.listener {
            fds.push(PollFd::new(l, PollFlags::IN));
        }
        for c in &self.conns {
            fds.push(PollFd::new(&c.stream, c.events()));
        }
        if let Err(e) = poll(&mut fds, timeout.as_ref())
            && e != rustix::io::Errno::INTR
        {
            let _ = err_line(&format!("{}: poll failed: {e}", self.shared.name));
            std::thread::sleep(Duration::from_millis(50));
        }
        let revents: Vec<PollFlags> = fds.iter().map(PollFd::revents).collect();
        drop(fds);
        if !revents[0].is_empty() {
            let mut sink = [0u8; 64];
            while matches!((&self.wake_rx).read(&mut sink), Ok(n) if n > 0) {}
        }
        let skip = 1 + usize::from(self.listener.is_some());
        Ready {
            listener: self.listener.is_some() && !revents[1].is_empty(),
            conns: revents[skip..].to_vec(),
        }
    }
}
