//! Forgejo REST client (ureq 3, rustls): the calls the push job needs, with
//! typed errors it can branch on. It knows nothing of the spool.
//!
//! Behaviour follows `shared/forgejo/README.md`: `Authorization: token ...`;
//! a stale sha is 409 (v12+) or 422 `sha does not match` (older); the
//! many-files endpoint may be missing (404/405 → [`ForgeError::Unsupported`]);
//! an empty repository answers `[]` for any path; blobs over the server's
//! max blob size come back with `content: ""` and are read from `/raw/`.
//!
//! The token never appears in an error, a Debug output or a panic message:
//! it lives in a [`Secret`], and every message taken from a server is
//! scrubbed of it before it is kept.

use crate::config::Secret;
use crate::error::Kind;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::fmt;
use std::time::Duration;

/// Largest JSON answer read (a file's content is echoed in the reply).
const MAX_JSON: u64 = 512 * 1024 * 1024;
/// Largest raw file read.
const MAX_RAW: u64 = 512 * 1024 * 1024;

/// How to reach a forge.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// e.g. `https://forge.example.org` or `http://127.0.0.1:3000/forgejo/`.
    pub base_url: String,
    pub token: Secret,
    /// Allow plain `http://` to a host that is not loopback.
    pub insecure_http: bool,
    pub connect_timeout: Duration,
    /// Whole-request deadline (connect, send, receive).
    pub timeout: Duration,
}

impl ClientConfig {
    /// Defaults: 10 s to connect, 120 s per request.
    pub fn new(base_url: &str, token: Secret) -> ClientConfig {
        ClientConfig {
            base_url: base_url.to_string(),
            token,
            insecure_http: false,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(120),
        }
    }
}

/// A repository as the client needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub name: String,
    pub full_name: String,
    pub default_branch: String,
    pub empty: bool,
    pub private: bool,
    pub owner_login: String,
}

/// A file read from the forge: its blob sha (for updates) and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub sha: String,
    pub content: Vec<u8>,
}

/// Common options of a commit.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `None`: the repository's default branch.
    pub branch: Option<String>,
    pub message: String,
    pub author_name: String,
    pub author_email: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOp {
    Create,
    Update,
    Delete,
}

impl FileOp {
    fn as_str(self) -> &'static str {
        match self {
            FileOp::Create => "create",
            FileOp::Update => "update",
            FileOp::Delete => "delete",
        }
    }
}

/// One operation of a many-files commit. `sha` is required for update and delete.
#[derive(Debug, Clone)]
pub struct FileChange {
    pub operation: FileOp,
    pub path: String,
    pub content: Vec<u8>,
    pub sha: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitResult {
    pub commit_sha: String,
}

/// What went wrong talking to the forge. Every message is the server's
/// (scrubbed of the token) or ours, with the call it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForgeError {
    /// 404: repository, branch, org or path missing (or invisible to the token).
    NotFound(String),
    /// 409 on repository create; 422 `repository file already exists` on file create.
    AlreadyExists(String),
    /// 409, or 422 `sha does not match`: re-read and retry.
    StaleSha(String),
    /// 401.
    Unauthorized(String),
    /// 403 for a missing permission or scope.
    Forbidden(String),
    /// 403 `PushRejected` (Forgejo 16+): another writer won a race; retry.
    PushRejected(String),
    /// 404/405 on the many-files call: an old server; fall back to one file at a time.
    Unsupported(String),
    /// 5xx.
    Server { status: u16, message: String },
    /// Could not connect, connection reset, reply lost, TLS failure.
    Network(String),
    /// Connect or request deadline passed.
    Timeout(String),
    /// Any other answer (400, other 4xx, malformed body).
    Invalid { status: u16, message: String },
    /// Bad client configuration (URL).
    Config(String),
    /// The path holds something other than a file (a directory, a symlink,
    /// a submodule): it cannot be read or rewritten as one.
    NotAFile(String),
}

impl ForgeError {
    /// The exit-code kind: 75 for what the next run may cure, 77 for a
    /// refused token, 78 for configuration.
    pub fn kind(&self) -> Kind {
        match self {
            ForgeError::Server { .. }
            | ForgeError::Network(_)
            | ForgeError::Timeout(_)
            | ForgeError::StaleSha(_)
            | ForgeError::PushRejected(_)
            | ForgeError::AlreadyExists(_) => Kind::TempFail,
            ForgeError::Unauthorized(_) | ForgeError::Forbidden(_) => Kind::NoPerm,
            ForgeError::Config(_) | ForgeError::NotFound(_) => Kind::Config,
            ForgeError::Invalid {
                status: 408 | 413 | 429,
                ..
            } => Kind::TempFail,
            ForgeError::NotAFile(_) => Kind::Data,
            ForgeError::Unsupported(_) | ForgeError::Invalid { .. } => Kind::Internal,
        }
    }

    /// Worth re-reading and retrying within the same run. `AlreadyExists`
    /// counts: on a file create it means another writer created it first.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ForgeError::Server { .. }
                | ForgeError::Network(_)
                | ForgeError::Timeout(_)
                | ForgeError::StaleSha(_)
                | ForgeError::PushRejected(_)
                | ForgeError::AlreadyExists(_)
        )
    }

    /// The message kept with the error.
    pub fn message(&self) -> &str {
        match self {
            ForgeError::NotFound(m)
            | ForgeError::AlreadyExists(m)
            | ForgeError::StaleSha(m)
            | ForgeError::Unauthorized(m)
            | ForgeError::Forbidden(m)
            | ForgeError::PushRejected(m)
            | ForgeError::Unsupported(m)
            | ForgeError::Network(m)
            | ForgeError::Timeout(m)
            | ForgeError::Config(m)
            | ForgeError::NotAFile(m) => m,
            ForgeError::Server { message, .. } | ForgeError::Invalid { message, .. } => message,
        }
    }
}

impl fmt::Display for ForgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForgeError::NotFound(m) => write!(f, "forge: not found: {m}"),
            ForgeError::AlreadyExists(m) => write!(f, "forge: already exists: {m}"),
            ForgeError::StaleSha(m) => {
                write!(f, "forge: the file changed meanwhile (stale sha): {m}")
            }
            ForgeError::Unauthorized(m) => {
                write!(
                    f,
                    "forge refused the token (401): {m}; check the token file"
                )
            }
            ForgeError::Forbidden(m) => write!(
                f,
                "forge: permission denied (403): {m}; the token needs write:repository (and write:organization to create an org repository)"
            ),
            ForgeError::PushRejected(m) => {
                write!(f, "forge: push rejected (another writer won a race): {m}")
            }
            ForgeError::Unsupported(m) => {
                write!(f, "forge: endpoint not supported by this server: {m}")
            }
            ForgeError::Server { status, message } => {
                write!(f, "forge: server error {status}: {message}")
            }
            ForgeError::Network(m) => write!(f, "forge unreachable: {m}"),
            ForgeError::Timeout(m) => write!(f, "forge timed out: {m}"),
            ForgeError::Invalid { status, message } => {
                write!(f, "forge: unexpected answer {status}: {message}")
            }
            ForgeError::Config(m) => write!(f, "forge URL: {m}"),
            ForgeError::NotAFile(m) => write!(f, "forge: {m}"),
        }
    }
}

impl std::error::Error for ForgeError {}

impl From<ForgeError> for crate::error::Error {
    fn from(e: ForgeError) -> Self {
        crate::error::Error::new(e.kind(), e.to_string())
    }
}

/// Which call an answer belongs to (some statuses mean different things).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    Other,
    CreateRepo,
    CreateFile,
    ManyFiles,
}

/// The client. Cheap to share by reference; holds one connection pool.
pub struct ForgejoClient {
    agent: ureq::Agent,
    /// Base URL without a trailing slash, e.g. `https://h/forgejo`.
    base: String,
    token: Secret,
}

impl fmt::Debug for ForgejoClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForgejoClient")
            .field("base", &self.base)
            .field("token", &self.token)
            .finish()
    }
}

/// Parse and check a base URL: `(scheme, host, rest)`. https is required
/// unless the host is loopback or `insecure_http`.
pub fn check_base_url(url: &str, insecure_http: bool) -> Result<String, ForgeError> {
    if url.contains('@') {
        // Never echo credentials back, whatever the scheme: no URL in this
        // message.
        return Err(ForgeError::Config(
            "the Forgejo URL may not contain user information (user:password@); put the token in the token file".into(),
        ));
    }
    let bad = |m: &str| ForgeError::Config(format!("{m}: {url:?}"));
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("not a URL (expected https://host[:port][/path])"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Err(bad("the scheme must be https (or http for loopback)"));
    }
    if rest.contains(['?', '#']) {
        return Err(bad("the URL may not carry a query or fragment"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = host_of(authority).ok_or_else(|| bad("no host in URL"))?;
    if scheme == "http" && !insecure_http && !is_loopback(&host) {
        return Err(bad(
            "https:// is required for a forge that is not on loopback (or pass --insecure-http)",
        ));
    }
    if path.contains(char::is_whitespace) {
        return Err(bad("white space in URL path"));
    }
    let path = path.trim_end_matches('/');
    Ok(format!("{scheme}://{authority}{path}"))
}

fn host_of(authority: &str) -> Option<String> {
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?.to_string()
    } else {
        authority.split(':').next()?.to_string()
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// 127.0.0.0/8, ::1, localhost.
pub fn is_loopback(host: &str) -> bool {
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

/// Percent-encode each segment of a path (keeps `/` between segments).
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl ForgejoClient {
    pub fn new(cfg: ClientConfig) -> Result<ForgejoClient, ForgeError> {
        let token = cfg.token.expose();
        let base = check_base_url(cfg.base_url.trim(), cfg.insecure_http).map_err(|e| {
            ForgeError::Config(if token.is_empty() {
                e.message().to_string()
            } else {
                e.message().replace(token, "<redacted>")
            })
        })?;
        if cfg.token.expose().is_empty() {
            return Err(ForgeError::Config("the token is empty".into()));
        }
        if cfg.token.expose().contains(['\r', '\n']) {
            return Err(ForgeError::Config(
                "the token contains a line break; check the token file".into(),
            ));
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(cfg.connect_timeout))
            .timeout_global(Some(cfg.timeout))
            .user_agent(concat!("hero_usage/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(ForgejoClient {
            agent: ureq::Agent::new_with_config(config),
            base,
            token: cfg.token,
        })
    }

    /// The checked base URL (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, api_path: &str) -> String {
        format!("{}/api/v1{api_path}", self.base)
    }

    fn repo_path(owner: &str, repo: &str) -> String {
        format!("/repos/{}/{}", encode_segment(owner), encode_segment(repo))
    }

    /// `/repos/{owner}/{repo}/{route}/{path}`, each path segment encoded
    /// (`route` is `contents` or `raw`).
    fn file_path(route: &str, owner: &str, repo: &str, path: &str) -> String {
        format!(
            "{}/{route}/{}",
            Self::repo_path(owner, repo),
            encode_path(path)
        )
    }

    /// Remove the token from any text that came from elsewhere.
    fn scrub(&self, s: &str) -> String {
        let t = self.token.expose();
        if t.is_empty() {
            s.to_string()
        } else {
            s.replace(t, "<redacted>")
        }
    }

    /// Send one request; answer (status, body bytes).
    /// Send one request; the answer's body is left for the caller to read.
    fn request(
        &self,
        method: &str,
        api_path: &str,
        body: Option<&[u8]>,
    ) -> Result<ureq::http::Response<ureq::Body>, ForgeError> {
        let url = self.url(api_path);
        let auth = format!("token {}", self.token.expose());
        let what = format!("{method} {api_path}");
        let result = match (method, body) {
            ("GET", _) => self
                .agent
                .get(&url)
                .header("Authorization", &auth)
                .header("Accept", "application/json")
                .call(),
            (m, b) => {
                let req = match m {
                    "POST" => self.agent.post(&url),
                    "PUT" => self.agent.put(&url),
                    _ => self.agent.patch(&url),
                };
                req.header("Authorization", &auth)
                    .header("Accept", "application/json")
                    .header("Content-Type", "application/json")
                    .send(b.unwrap_or(b"null"))
            }
        };
        result.map_err(|e| self.transport_error(&what, e))
    }

    /// Send one request and read the whole answer (at most `limit` bytes).
    fn send(
        &self,
        method: &str,
        api_path: &str,
        body: Option<&[u8]>,
        limit: u64,
    ) -> Result<(u16, Vec<u8>), ForgeError> {
        let what = format!("{method} {api_path}");
        let mut resp = self.request(method, api_path, body)?;
        let status = resp.status().as_u16();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| self.transport_error(&what, e))?;
        Ok((status, bytes))
    }

    fn transport_error(&self, what: &str, e: ureq::Error) -> ForgeError {
        let msg = self.scrub(&format!("{what}: {e}"));
        match &e {
            ureq::Error::Timeout(_) => ForgeError::Timeout(msg),
            ureq::Error::Io(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                ) =>
            {
                ForgeError::Timeout(msg)
            }
            ureq::Error::BodyExceedsLimit(_) => ForgeError::Invalid {
                status: 200,
                message: msg,
            },
            _ => ForgeError::Network(msg),
        }
    }

    /// Turn a non-2xx answer into a typed error.
    fn classify(&self, call: Call, what: &str, status: u16, body: &[u8]) -> ForgeError {
        let server = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| {
                let t = String::from_utf8_lossy(body);
                t.chars().take(300).collect::<String>().trim().to_string()
            });
        let server = self.scrub(&server);
        let msg = if server.is_empty() {
            format!("{what}: {status}")
        } else {
            format!("{what}: {status} {server}")
        };
        let msg = self.scrub(&msg);
        let lower = server.to_ascii_lowercase();
        match status {
            401 => ForgeError::Unauthorized(msg),
            403 if lower.contains("pushrejected") || lower.contains("push rejected") => {
                ForgeError::PushRejected(msg)
            }
            403 => ForgeError::Forbidden(msg),
            404 | 405 if call == Call::ManyFiles => ForgeError::Unsupported(msg),
            404 => ForgeError::NotFound(msg),
            409 | 422 if lower.contains("sha does not match") => ForgeError::StaleSha(msg),
            409 if call == Call::CreateRepo => ForgeError::AlreadyExists(msg),
            409 => ForgeError::StaleSha(msg),
            422 if lower.contains("already exists") && call != Call::Other => {
                ForgeError::AlreadyExists(msg)
            }
            500..=599 => ForgeError::Server {
                status,
                message: msg,
            },
            _ => ForgeError::Invalid {
                status,
                message: msg,
            },
        }
    }

    /// A JSON call: 2xx → parsed body; else a typed error.
    fn call_json(
        &self,
        call: Call,
        method: &str,
        api_path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ForgeError> {
        let what = format!("{method} {api_path}");
        let data = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ForgeError::Config(format!("cannot encode request: {e}")))?;
        let (status, bytes) = self.send(method, api_path, data.as_deref(), MAX_JSON)?;
        if !(200..300).contains(&status) {
            return Err(self.classify(call, &what, status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ForgeError::Invalid {
            status,
            message: format!("{what}: the answer is not JSON: {e}"),
        })
    }

    pub fn get_repo(&self, owner: &str, repo: &str) -> Result<Repository, ForgeError> {
        let v = self.call_json(Call::Other, "GET", &Self::repo_path(owner, repo), None)?;
        parse_repo(&v)
    }

    /// The token's user login.
    pub fn current_user(&self) -> Result<String, ForgeError> {
        let v = self.call_json(Call::Other, "GET", "/user", None)?;
        str_field(&v, "login", "GET /user")
    }

    /// Create a private repository without auto_init (so it starts empty):
    /// under the token's user when `owner` is its login, else under the org.
    pub fn create_repo(&self, owner: &str, repo: &str) -> Result<Repository, ForgeError> {
        let me = self.current_user()?;
        let path = if me.eq_ignore_ascii_case(owner) {
            "/user/repos".to_string()
        } else {
            format!("/orgs/{}/repos", encode_segment(owner))
        };
        let body = json!({"name": repo, "private": true, "auto_init": false});
        let v = self.call_json(Call::CreateRepo, "POST", &path, Some(&body))?;
        parse_repo(&v)
    }

    /// A file's blob sha and bytes; `None` when it does not exist (404) or
    /// the repository is empty (`[]`).
    pub fn read_file(
        &self,
        owner: &str,
        repo: &str,
        path: &str,
        git_ref: Option<&str>,
    ) -> Result<Option<RemoteFile>, ForgeError> {
        let query = git_ref
            .map(|r| format!("?ref={}", encode_segment(r)))
            .unwrap_or_default();
        let api = format!("{}{query}", Self::file_path("contents", owner, repo, path));
        let v = match self.call_json(Call::Other, "GET", &api, None) {
            Ok(v) => v,
            Err(ForgeError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let what = format!("GET {api}");
        if let Some(list) = v.as_array() {
            if list.is_empty() {
                return Ok(None); // an empty repository answers [] for any path
            }
            return Err(ForgeError::NotAFile(format!(
                "{path} is a directory, not a file"
            )));
        }
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("file");
        if kind != "file" {
            return Err(ForgeError::NotAFile(format!(
                "{path} is a {kind}, not a file"
            )));
        }
        let sha = str_field(&v, "sha", &what)?;
        let size = v.get("size").and_then(Value::as_u64).unwrap_or(0);
        let encoded = v.get("content").and_then(Value::as_str).unwrap_or("");
        if encoded.is_empty() && size > 0 {
            let raw = format!("{}{query}", Self::file_path("raw", owner, repo, path));
            let (status, bytes) = self.send("GET", &raw, None, MAX_RAW)?;
            if status == 404 {
                return Ok(None);
            }
            if !(200..300).contains(&status) {
                return Err(self.classify(Call::Other, &format!("GET {raw}"), status, &bytes));
            }
            return Ok(Some(RemoteFile {
                sha,
                content: bytes,
            }));
        }
        let clean: String = encoded.chars().filter(|c| !c.is_whitespace()).collect();
        let content = B64
            .decode(clean.as_bytes())
            .map_err(|e| ForgeError::Invalid {
                status: 200,
                message: format!("{what}: content is not base64: {e}"),
            })?;
        Ok(Some(RemoteFile { sha, content }))
    }

    fn common_body(opts: &CommitOptions) -> Value {
        let mut b = json!({"message": opts.message});
        if !opts.author_name.is_empty() || !opts.author_email.is_empty() {
            let who = json!({"name": opts.author_name, "email": opts.author_email});
            b["author"] = who.clone();
            b["committer"] = who;
        }
        if let Some(br) = &opts.branch {
            b["branch"] = json!(br);
        }
        b
    }

    /// Create one file (POST); fails with `AlreadyExists` if it exists.
    pub fn create_file(
        &self,
        owner: &str,
        repo: &str,
        path: &str,
        content: &[u8],
        opts: &CommitOptions,
    ) -> Result<CommitResult, ForgeError> {
        self.write_file(owner, repo, path, content, None, opts)
    }

    /// Update one file (PUT) whose current blob sha is `sha`.
    pub fn update_file(
        &self,
        owner: &str,
        repo: &str,
        path: &str,
        content: &[u8],
        sha: &str,
        opts: &CommitOptions,
    ) -> Result<CommitResult, ForgeError> {
        self.write_file(owner, repo, path, content, Some(sha), opts)
    }

    /// Create (POST, no `sha`) or update (PUT with `sha`) one file.
    fn write_file(
        &self,
        owner: &str,
        repo: &str,
        path: &str,
        content: &[u8],
        sha: Option<&str>,
        opts: &CommitOptions,
    ) -> Result<CommitResult, ForgeError> {
        let mut body = Self::common_body(opts);
        body["content"] = json!(B64.encode(content));
        let (call, method) = match sha {
            Some(sha) => {
                body["sha"] = json!(sha);
                (Call::Other, "PUT")
            }
            None => (Call::CreateFile, "POST"),
        };
        let api = Self::file_path("contents", owner, repo, path);
        let v = self.call_json(call, method, &api, Some(&body))?;
        commit_sha(&v, &api)
    }

    /// Several changes in one commit (POST /contents, Forgejo 1.20+).
    /// `Unsupported` means an older server: fall back to one file at a time.
    pub fn change_files(
        &self,
        owner: &str,
        repo: &str,
        changes: &[FileChange],
        opts: &CommitOptions,
    ) -> Result<CommitResult, ForgeError> {
        let api = format!("{}/contents", Self::repo_path(owner, repo));
        let what = format!("POST {api}");
        let body = Self::many_files_body(changes, opts)?;
        let mut resp = self.request("POST", &api, Some(&body))?;
        drop(body);
        let status = resp.status().as_u16();
        let reader = resp.body_mut().with_config().limit(MAX_JSON).reader();
        if !(200..300).contains(&status) {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(reader, 64 * 1024), &mut bytes)
                .map_err(|e| ForgeError::Network(self.scrub(&format!("{what}: {e}"))))?;
            return Err(self.classify(Call::ManyFiles, &what, status, &bytes));
        }
        // The answer echoes every file's content: stream it and keep only
        // the commit sha, instead of holding it (and a tree of it) in memory.
        #[derive(serde::Deserialize)]
        struct Reply {
            commit: Option<CommitRef>,
        }
        #[derive(serde::Deserialize)]
        struct CommitRef {
            sha: Option<String>,
        }
        let reply: Reply =
            serde_json::from_reader(std::io::BufReader::new(reader)).map_err(|e| {
                if e.is_io() {
                    // The connection broke while the answer was coming: a lost reply.
                    ForgeError::Network(self.scrub(&format!("{what}: {e}")))
                } else {
                    ForgeError::Invalid {
                        status,
                        message: format!("{what}: the answer is not JSON: {e}"),
                    }
                }
            })?;
        match reply.commit.and_then(|c| c.sha).filter(|s| !s.is_empty()) {
            Some(sha) => Ok(CommitResult { commit_sha: sha }),
            None => Err(ForgeError::Invalid {
                status,
                message: format!("{api}: the answer has no commit.sha"),
            }),
        }
    }

    /// The `ChangeFilesOptions` JSON, written straight into one buffer: the
    /// base64 of every file goes in place, with no intermediate JSON tree
    /// (a backlog of 100,000 records is some 30 MB of it).
    fn many_files_body(
        changes: &[FileChange],
        opts: &CommitOptions,
    ) -> Result<Vec<u8>, ForgeError> {
        let enc = |e: serde_json::Error| ForgeError::Config(format!("cannot encode request: {e}"));
        let size: usize = changes
            .iter()
            .map(|c| base64::encoded_len(c.content.len(), true).unwrap_or(0) + c.path.len() + 128)
            .sum();
        let mut out = serde_json::to_vec(&Self::common_body(opts)).map_err(enc)?;
        out.reserve(size + 16);
        out.pop(); // the common options' closing brace
        out.extend_from_slice(b",\"files\":[");
        for (i, c) in changes.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"operation\":");
            serde_json::to_writer(&mut out, c.operation.as_str()).map_err(enc)?;
            out.extend_from_slice(b",\"path\":");
            serde_json::to_writer(&mut out, &c.path).map_err(enc)?;
            if c.operation != FileOp::Delete {
                out.extend_from_slice(b",\"content\":\"");
                let start = out.len();
                let len = base64::encoded_len(c.content.len(), true).unwrap_or(0);
                out.resize(start + len, 0);
                B64.encode_slice(&c.content, &mut out[start..])
                    .map_err(|e| ForgeError::Config(format!("cannot encode request: {e}")))?;
                out.push(b'"');
            }
            if let Some(sha) = &c.sha {
                out.extend_from_slice(b",\"sha\":");
                serde_json::to_writer(&mut out, sha).map_err(enc)?;
            }
            out.push(b'}');
        }
        out.extend_from_slice(b"]}");
        Ok(out)
    }
}

fn str_field(v: &Value, key: &str, what: &str) -> Result<String, ForgeError> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ForgeError::Invalid {
            status: 200,
            message: format!("{what}: the answer has no {key:?}"),
        })
}

fn parse_repo(v: &Value) -> Result<Repository, ForgeError> {
    let what = "repository";
    Ok(Repository {
        name: str_field(v, "name", what)?,
        full_name: str_field(v, "full_name", what)?,
        default_branch: v
            .get("default_branch")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("main")
            .to_string(),
        empty: v.get("empty").and_then(Value::as_bool).unwrap_or(false),
        private: v.get("private").and_then(Value::as_bool).unwrap_or(false),
        owner_login: v
            .get("owner")
            .and_then(|o| o.get("login"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    })
}

fn commit_sha(v: &Value, api: &str) -> Result<CommitResult, ForgeError> {
    let sha = v
        .get("commit")
        .and_then(|c| c.get("sha"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ForgeError::Invalid {
            status: 200,
            message: format!("{api}: the answer has no commit.sha"),
        })?;
    Ok(CommitResult {
        commit_sha: sha.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_rules() {
        let ok = |u: &str| check_base_url(u, false).unwrap();
        assert_eq!(
            ok("https://forge.example.org/"),
            "https://forge.example.org"
        );
        assert_eq!(
            ok("http://127.0.0.1:3000/forgejo/"),
            "http://127.0.0.1:3000/forgejo"
        );
        assert_eq!(ok("http://127.1.2.3"), "http://127.1.2.3");
        assert_eq!(ok("http://[::1]:8080"), "http://[::1]:8080");
        assert_eq!(ok("http://localhost:3000"), "http://localhost:3000");
        for bad in [
            "http://forge.example.org",
            "http://10.0.0.1",
            "ftp://x",
            "forge.example.org",
            "https://u:p@forge.example.org",
            "https://forge.example.org/?a=b",
            "http://127.0.0.1.evil.org",
        ] {
            assert!(
                matches!(check_base_url(bad, false), Err(ForgeError::Config(_))),
                "{bad}"
            );
        }
        assert!(check_base_url("http://forge.example.org", true).is_ok());
        // Credentials are never echoed, whatever else is wrong.
        for with_secret in ["ftp://user:s3cret@host", "https://u:s3cret@h/x", "s3cret@h"] {
            let e = check_base_url(with_secret, false).unwrap_err().to_string();
            assert!(!e.contains("s3cret"), "{e}");
        }
    }

    #[test]
    fn paths_are_encoded_per_segment() {
        assert_eq!(
            encode_path("nodes/a b/usage#1.otoml"),
            "nodes/a%20b/usage%231.otoml"
        );
        assert_eq!(encode_path("x/%/?"), "x/%25/%3F");
    }

    #[test]
    fn kinds() {
        assert_eq!(ForgeError::Network("x".into()).kind(), Kind::TempFail);
        assert_eq!(ForgeError::Forbidden("x".into()).kind(), Kind::NoPerm);
        assert_eq!(ForgeError::Unauthorized("x".into()).kind(), Kind::NoPerm);
        assert_eq!(ForgeError::PushRejected("x".into()).kind(), Kind::TempFail);
        assert_eq!(ForgeError::Config("x".into()).kind(), Kind::Config);
        assert!(ForgeError::StaleSha("x".into()).is_retryable());
        assert!(!ForgeError::Forbidden("x".into()).is_retryable());
    }
}
