#![recursion_limit = "256"]
//! A Forgejo-compatible test forge for hero_usage's tests, scripts and demo.
//!
//! It serves the part of Forgejo's `/api/v1` that the push job uses and
//! follows the behaviours in `shared/forgejo/README.md` status by status:
//! auth and scopes, JSON error bodies, empty repositories, sha checks (409, or
//! 422 with `legacy_422`), atomic many-files commits (405 or 404 with
//! `no_multi_file`, from the start or after some requests), repository creation and deletion, `new_branch` and the
//! branch routes. With `commit_ms` writes race as on Forgejo, which commits
//! without a lock: the loser of two commits on one branch gets 500 or 403
//! `PushRejected`. `max_body_bytes` plays a proxy's body limit (413 without
//! reading the body). Repositories are real bare git repositories under `root/<owner>/<name>.git`, written with git plumbing,
//! so `git clone` and `git log` show what a real forge would hold.
//!
//! Tests steer it with [`Fault`]s (fail, delay, drop the connection before or
//! after applying, reset it or fail after applying, answer bytes of the
//! test's choosing before or after applying, commit a concurrent change
//! first) and read its request log
//! (never the token). Scripts do the same over HTTP: `POST /_testforge/faults`,
//! `DELETE /_testforge/faults`, `GET /_testforge/log`, `POST /_testforge/repos`,
//! `DELETE /_testforge/stats` (all of them need the token) and
//! `GET /_testforge/stats` (counters: requests, commits, lost races, 413s;
//! no token needed). These routes are test-only: Forgejo has none of them.
//!
//! This crate does not depend on hero_usage, on purpose: a mistake shared by
//! client and forge could otherwise hide itself.

mod api;
pub mod git;
pub mod http;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How to run a forge.
#[derive(Clone, Debug)]
pub struct ForgeOptions {
    /// Where the bare repositories live; `None`: a temporary directory
    /// removed when the forge is dropped.
    pub root: Option<PathBuf>,
    /// The token with every scope; `None`: a random one.
    pub token: Option<String>,
    /// A second, valid token that only has `read:repository`: writes answer
    /// 403 `token does not have at least one of required scope(s)`.
    pub read_only_token: Option<String>,
    /// The token's user (`GET /user` login).
    pub user: String,
    /// Organisations that exist (the user may create repositories in them).
    pub orgs: Vec<String>,
    /// Pre-v12 behaviour: a stale sha answers 422 instead of 409, and
    /// many-files updates without sha silently overwrite.
    pub legacy_422: bool,
    /// Pre-1.20 behaviour: no many-files endpoint (`POST .../contents`
    /// answers `no_multi_file_status`).
    pub no_multi_file: bool,
    /// What the missing many-files endpoint answers: 405 (an old Forgejo's
    /// router) or 404 (an older route table, or a proxy that does not pass
    /// the route on).
    pub no_multi_file_status: u16,
    /// With `no_multi_file`: many-files requests served normally before the
    /// endpoint goes missing (a proxy that starts sending the route to an
    /// old server mid-run); 0: missing from the start.
    pub no_multi_file_after: u64,
    /// `[api] DEFAULT_MAX_BLOB_SIZE`: larger blobs come back with `content: ""`.
    pub max_blob_size: u64,
    /// Listen address; loopback only.
    pub listen: String,
    /// Serve under this sub-path, e.g. `/forgejo` ("" for none).
    pub prefix: String,
    /// Milliseconds a write spends outside the repository lock, as
    /// Forgejo's clone, commit and push do: 0 commits under the lock (no
    /// races); N > 0 lets concurrent writes to one branch race, and the
    /// loser gets 500 (or 403 `PushRejected` with `race_403`), nothing applied.
    pub commit_ms: u64,
    /// A lost race answers 403 `PushRejected` instead of a blanked 500.
    pub race_403: bool,
    /// A proxy's body limit (nginx `client_max_body_size`): a request whose
    /// Content-Length exceeds it gets 413 without its body being read, and
    /// the connection is closed, so a client sees 413 or a broken pipe.
    pub max_body_bytes: Option<u64>,
}

impl Default for ForgeOptions {
    fn default() -> Self {
        ForgeOptions {
            root: None,
            token: None,
            read_only_token: None,
            user: "billing-bot".to_string(),
            orgs: vec!["lhumina_code".to_string()],
            legacy_422: false,
            no_multi_file: false,
            no_multi_file_status: 405,
            no_multi_file_after: 0,
            max_blob_size: 10 * 1024 * 1024,
            listen: "127.0.0.1:0".to_string(),
            prefix: String::new(),
            commit_ms: 0,
            race_403: false,
            max_body_bytes: None,
        }
    }
}

/// Something to do to the next `times` requests whose method matches (any
/// method when `None`) and whose path (after the prefix, without the query)
/// contains `path_contains`. The control routes are never matched.
#[derive(Clone, Debug)]
pub struct Fault {
    pub method: Option<String>,
    pub path_contains: String,
    pub times: usize,
    pub action: FaultAction,
}

#[derive(Clone, Debug)]
pub enum FaultAction {
    /// Answer `status` with `{"message": message, "url": ...}` without applying.
    Fail { status: u16, message: String },
    /// Wait, then handle the request normally.
    Delay(Duration),
    /// Close the connection without applying and without a reply.
    DropBefore,
    /// Apply the request, then close the connection without a reply (a lost reply).
    DropAfter,
    /// Apply the request, then reset the connection (TCP RST) without a
    /// reply: a lost reply that a client sees as "connection reset".
    ResetAfter,
    /// Apply the request, then answer `status` with `{"message": message}`
    /// instead of its reply (a proxy's 502 or 504 after the server
    /// committed, an error after the commit).
    FailAfter { status: u16, message: String },
    /// Answer these bytes as they are, without applying: what no Forgejo
    /// sends but a proxy, a cache or another version may (an HTML page, a
    /// redirect to another host, a 429 with `Retry-After`, a truncated or
    /// foreign JSON answer). `headers` go out besides Content-Type and
    /// Content-Length.
    Reply(RawReply),
    /// Apply the request, then answer [`FaultAction::Reply`]'s bytes instead
    /// of its reply (a proxy rewriting a 201 it passed on).
    ReplyAfter(RawReply),
    /// First commit `content` at `path` (create or update) on the branch the
    /// request targets, as another writer would, then handle the request:
    /// the client's sha is now stale.
    ConcurrentCommit { path: String, content: Vec<u8> },
}

/// An answer given byte for byte (see [`FaultAction::Reply`]).
#[derive(Clone, Debug)]
pub struct RawReply {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawReply {
    /// `status` with `body` as `content_type`, no other header.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> RawReply {
        RawReply {
            status,
            content_type: content_type.to_string(),
            headers: Vec::new(),
            body: body.into(),
        }
    }
    /// The same with one more header.
    pub fn header(mut self, name: &str, value: &str) -> RawReply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

impl Fault {
    /// A fault for the next matching request.
    pub fn new(method: Option<&str>, path_contains: &str, action: FaultAction) -> Fault {
        Fault {
            method: method.map(str::to_string),
            path_contains: path_contains.to_string(),
            times: 1,
            action,
        }
    }
    /// For the next `n` matching requests.
    pub fn times(mut self, n: usize) -> Fault {
        self.times = n;
        self
    }
    /// Shorthand: fail the next matching request with `status` and `message`.
    pub fn fail(method: &str, path_contains: &str, status: u16, message: &str) -> Fault {
        Fault::new(
            Some(method),
            path_contains,
            FaultAction::Fail {
                status,
                message: message.to_string(),
            },
        )
    }
}

/// One line of the request log. The token is never recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRequest {
    pub method: String,
    /// Path after the prefix, with the query (credentials in it are redacted).
    pub path: String,
    /// The status answered; 0 when the connection was dropped without a reply.
    pub status: u16,
    /// The fault applied, if any (`fail`, `delay`, `drop_before`, ...).
    pub fault: Option<String>,
}

/// What the forge did, for benchmarks and tests (`GET /_testforge/stats`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// API requests answered or dropped (control routes not counted).
    pub requests: u64,
    /// Commits that landed (API writes only).
    pub commits: u64,
    /// Writes that lost a race on their branch (see `commit_ms`).
    pub lost_races: u64,
    /// Requests refused with 413 by `max_body_bytes`, body unread.
    pub too_large: u64,
    /// Requests per status answered (0: dropped without a reply).
    pub by_status: std::collections::BTreeMap<u16, u64>,
}

pub(crate) struct State {
    pub opts: ForgeOptions,
    pub root: PathBuf,
    pub token: String,
    pub base_url: OnceLock<String>,
    pub faults: Mutex<Vec<Fault>>,
    pub log: Mutex<Vec<LoggedRequest>>,
    pub stats: Mutex<Stats>,
    /// Held while reading, checking and committing: one writer at a time.
    pub git_lock: Mutex<()>,
    pub ids: AtomicU64,
    /// Many-files requests seen (for `no_multi_file_after`).
    pub multi_file_requests: AtomicU64,
}

impl State {
    pub fn base(&self) -> &str {
        self.base_url.get().map(String::as_str).unwrap_or("")
    }
    pub fn repo_dir(&self, owner: &str, name: &str) -> PathBuf {
        self.root.join(owner).join(format!("{name}.git"))
    }
    pub fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::SeqCst)
    }
}

/// Where the forge makes its temporary repositories and scratch files, and
/// hero_usage's tests their spools: `HERO_USAGE_TEST_TMPDIR` when set, else
/// tmpfs (`/dev/shm`) when it is there with 2 GiB to spare, else the
/// system's temp dir. On a disk, the spool's fsyncs (~10 ms each on the
/// development machine) and the forge's git object files were most of the
/// test suite's time; a test cannot tell page cache from disk (a killed
/// process leaves the page cache intact either way).
pub fn scratch_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        if let Some(dir) = std::env::var_os("HERO_USAGE_TEST_TMPDIR") {
            return PathBuf::from(dir);
        }
        let shm = Path::new("/dev/shm");
        if free_kib(shm).is_some_and(|kib| kib >= 2 << 20) {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        }
    })
}

/// Free space of the file system holding `dir`, in KiB, as `df -Pk` says
/// (None when it cannot tell, or `dir` is not writable).
fn free_kib(dir: &Path) -> Option<u64> {
    tempfile::tempdir_in(dir).ok()?;
    let out = std::process::Command::new("df")
        .arg("-Pk")
        .arg(dir)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()
}

/// A running test forge; stops when dropped.
pub struct TestForge {
    state: Arc<State>,
    server: Option<http::Server>,
    _tmp: Option<tempfile::TempDir>,
}

impl TestForge {
    /// Start a forge; panics if it cannot (tests want that).
    pub fn start(opts: ForgeOptions) -> TestForge {
        Self::try_start(opts).expect("start test forge")
    }

    pub fn try_start(opts: ForgeOptions) -> Result<TestForge, String> {
        let addr: std::net::SocketAddr = opts
            .listen
            .parse()
            .map_err(|e| format!("bad listen address {}: {e}", opts.listen))?;
        if !addr.ip().is_loopback() {
            return Err(format!(
                "the test forge binds loopback only, not {}",
                opts.listen
            ));
        }
        let (root, tmp) = match &opts.root {
            Some(r) => {
                std::fs::create_dir_all(r).map_err(|e| format!("{}: {e}", r.display()))?;
                (r.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("testforge-")
                    .tempdir_in(scratch_root())
                    .map_err(|e| e.to_string())?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let token = opts.token.clone().unwrap_or_else(random_token);
        let mut prefix = opts.prefix.trim_end_matches('/').to_string();
        if !prefix.is_empty() && !prefix.starts_with('/') {
            prefix.insert(0, '/');
        }
        let mut opts = opts;
        opts.prefix = prefix;
        let state = Arc::new(State {
            opts,
            root,
            token,
            base_url: OnceLock::new(),
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            stats: Mutex::new(Stats::default()),
            git_lock: Mutex::new(()),
            ids: AtomicU64::new(1),
            multi_file_requests: AtomicU64::new(0),
        });
        let st = state.clone();
        let handler: http::Handler = Arc::new(move |req| api::handle(&st, req));
        let limits = http::Limits {
            max_body: state.opts.max_body_bytes,
        };
        let server = http::Server::start(&state.opts.listen, handler, limits)
            .map_err(|e| format!("cannot listen on {}: {e}", state.opts.listen))?;
        let base = format!("http://{}{}", server.addr, state.opts.prefix);
        let _ = state.base_url.set(base);
        Ok(TestForge {
            state,
            server: Some(server),
            _tmp: tmp,
        })
    }

    /// `http://127.0.0.1:PORT[/prefix]`, without a trailing slash.
    pub fn base_url(&self) -> String {
        self.state.base().to_string()
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.as_ref().expect("running").addr
    }

    /// The token with every scope.
    pub fn token(&self) -> String {
        self.state.token.clone()
    }

    pub fn user(&self) -> String {
        self.state.opts.user.clone()
    }

    pub fn root(&self) -> &Path {
        &self.state.root
    }

    /// Queue a fault; faults are matched in the order they were queued.
    pub fn inject(&self, fault: Fault) {
        self.state.faults.lock().unwrap().push(fault);
    }

    /// Drop every queued fault.
    pub fn clear_faults(&self) {
        self.state.faults.lock().unwrap().clear();
    }

    /// Faults still queued (with what remains of their `times`).
    pub fn pending_faults(&self) -> Vec<Fault> {
        self.state.faults.lock().unwrap().clone()
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state.log.lock().unwrap().clone()
    }

    pub fn clear_requests(&self) {
        self.state.log.lock().unwrap().clear();
    }

    /// The counters so far (requests, commits, lost races, 413s).
    pub fn stats(&self) -> Stats {
        self.state.stats.lock().unwrap().clone()
    }

    pub fn reset_stats(&self) {
        *self.state.stats.lock().unwrap() = Stats::default();
    }

    /// The bare repository of `owner/name` on disk.
    pub fn bare_repo(&self, owner: &str, name: &str) -> PathBuf {
        self.state.repo_dir(owner, name)
    }

    /// Create `owner/name` (private, default branch `main`); unless `empty`,
    /// with a first commit holding `README.md`.
    pub fn create_repo(&self, owner: &str, name: &str, empty: bool) {
        api::create_repo_on_disk(&self.state, owner, name, true, "main", !empty)
            .expect("create repo");
    }

    /// Make `owner/name` read-only as Forgejo's archived repositories
    /// (`flag` "archived": writes answer 423) or mirrors ("mirror": 403) are;
    /// `GET /repos/{owner}/{name}` says so in `archived` or `mirror`.
    pub fn make_read_only(&self, owner: &str, name: &str, flag: &str) {
        assert!(["archived", "mirror"].contains(&flag), "{flag}");
        std::fs::write(
            self.state
                .repo_dir(owner, name)
                .join(format!("testforge-{flag}")),
            "",
        )
        .expect("flag the repository");
    }

    /// Commit files directly (as another writer would): `(path, Some(content))`
    /// creates or updates, `(path, None)` deletes. Returns the commit sha.
    pub fn commit_files(
        &self,
        owner: &str,
        name: &str,
        branch: &str,
        files: &[(&str, Option<&[u8]>)],
        message: &str,
    ) -> String {
        let _g = self.state.git_lock.lock().unwrap();
        let g = git::Git::new(&self.state.repo_dir(owner, name));
        let parent = g.branch_commit(branch);
        let changes: Vec<git::Change> = files
            .iter()
            .map(|(p, c)| git::Change {
                path: p.to_string(),
                content: c.map(<[u8]>::to_vec),
            })
            .collect();
        let who = git::Person {
            name: "other-writer".into(),
            email: "other-writer@example.org".into(),
        };
        g.commit(branch, parent.as_deref(), &changes, message, &who, &who)
            .expect("commit")
    }

    /// The content of `path` on `branch`, read from git directly.
    pub fn file(&self, owner: &str, name: &str, branch: &str, path: &str) -> Option<Vec<u8>> {
        let g = git::Git::new(&self.state.repo_dir(owner, name));
        let c = g.branch_commit(branch)?;
        let e = g.entry(&c, path)?;
        g.blob(&e.sha).ok()
    }

    /// The commit `branch` points at.
    pub fn head(&self, owner: &str, name: &str, branch: &str) -> Option<String> {
        git::Git::new(&self.state.repo_dir(owner, name)).branch_commit(branch)
    }
}

impl Drop for TestForge {
    fn drop(&mut self) {
        self.server.take();
    }
}

fn random_token() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for i in 0..3u64 {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(40);
    out
}
