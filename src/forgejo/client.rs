//! The agent, one request, and the answer turned into a typed error.

use super::transport::{Cause, cause};
use super::url::{check_base_url, encode_path, encode_segment};
use super::{ClientConfig, ForgeError, Method, RepoRef, Repository};
use crate::secret::{Secret, scrub_token};
use serde_json::{Value, json};
use std::fmt;

/// Largest JSON answer read (a file's content is echoed in the reply).
pub(super) const MAX_JSON: u64 = 512 * 1024 * 1024;
/// Largest raw file read.
pub(super) const MAX_RAW: u64 = 512 * 1024 * 1024;

/// Which call an answer belongs to (some statuses mean different things).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Call {
    Other,
    CreateRepo,
    CreateFile,
    /// A PUT of one file: 422 `already exists` is the branch its
    /// `new_branch` asked for, made by a commit whose reply was lost.
    UpdateFile,
    ManyFiles,
}

/// Whether a request carries the token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Auth {
    Token,
    /// `GET /version` needs none: a server that is not the forge should
    /// not see the token before it has said what it is.
    Anonymous,
}

/// The client. Cheap to share by reference; holds one connection pool.
pub struct ForgejoClient {
    agent: ureq::Agent,
    /// Base URL without a trailing slash, e.g. `https://h/forgejo`.
    base: String,
    token: Secret,
    /// The CA file trusted instead of the system's store, for messages.
    ca_file: Option<std::path::PathBuf>,
}

impl fmt::Debug for ForgejoClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForgejoClient")
            .field("base", &self.base)
            .field("token", &self.token)
            .finish()
    }
}

/// A request that failed, and whether before its whole body was handed to
/// the connection (see [`ForgejoClient::request_sent`]).
pub(super) struct Failed {
    pub error: ForgeError,
    pub while_sending: bool,
}

/// A request body that counts what the connection has taken of it.
struct Handed<'a> {
    data: &'a [u8],
    pos: usize,
}

impl std::io::Read for Handed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl ForgejoClient {
    pub fn new(cfg: ClientConfig) -> Result<ForgejoClient, ForgeError> {
        let token = cfg.token.expose();
        let base = check_base_url(cfg.base_url.trim(), cfg.insecure_http)
            .map_err(|e| ForgeError::Config(scrub_token(e.message(), token)))?;
        if token.is_empty() {
            return Err(ForgeError::Config("the token is empty".into()));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ForgeError::Config(
                "the token holds a control character, a space or a non-ASCII character; check the token file".into(),
            ));
        }
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(root_certs(cfg.ca_file.as_deref())?)
            .build();
        let config = ureq::Agent::config_builder()
            .tls_config(tls)
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
            ca_file: cfg.ca_file,
        })
    }

    /// The checked base URL (no trailing slash): the audit builds its own
    /// listing URLs on it.
    pub(crate) fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, api_path: &str) -> String {
        format!("{}/api/v1{api_path}", self.base)
    }

    pub(super) fn repo_path(repo: &RepoRef) -> String {
        format!(
            "/repos/{}/{}",
            encode_segment(&repo.owner),
            encode_segment(&repo.name)
        )
    }

    /// Remove the token from any text that came from elsewhere.
    pub(super) fn scrub(&self, s: &str) -> String {
        scrub_token(s, self.token.expose())
    }

    /// Send one request, with the token or without; the answer's body is
    /// left for the caller to read.
    fn request_as(
        &self,
        auth: Auth,
        method: Method,
        api_path: &str,
        body: Option<&[u8]>,
    ) -> Result<ureq::http::Response<ureq::Body>, ForgeError> {
        self.request_sent_as(auth, method, api_path, body)
            .map_err(|failed| failed.error)
    }

    /// As [`Self::request_as`] with the token; a failure tells whether it came before the
    /// whole body was handed to the connection. Only such a failure can be
    /// a proxy refusing the body: after it, the server may have the whole
    /// request and applied it (a lost reply).
    pub(super) fn request_sent(
        &self,
        method: Method,
        api_path: &str,
        body: Option<&[u8]>,
    ) -> Result<ureq::http::Response<ureq::Body>, Failed> {
        self.request_sent_as(Auth::Token, method, api_path, body)
    }

    fn request_sent_as(
        &self,
        auth: Auth,
        method: Method,
        api_path: &str,
        body: Option<&[u8]>,
    ) -> Result<ureq::http::Response<ureq::Body>, Failed> {
        let url = self.url(api_path);
        let mut req = ureq::http::Request::builder()
            .method(method.to_string().as_str())
            .uri(&url)
            .header("Accept", "application/json");
        if auth == Auth::Token {
            req = req.header("Authorization", format!("token {}", self.token.expose()));
        }
        let mut handed = Handed {
            data: body.unwrap_or(b"null"),
            pos: 0,
        };
        let encode = |e: ureq::http::Error| Failed {
            error: ForgeError::Encode(self.scrub(&format!("{method} {api_path}: {e}"))),
            while_sending: false,
        };
        let result = match method {
            Method::Get => self.agent.run(req.body(()).map_err(encode)?),
            Method::Post | Method::Put => {
                let req = req
                    .header("Content-Type", "application/json")
                    .header("Content-Length", handed.data.len().to_string())
                    .body(ureq::SendBody::from_reader(&mut handed))
                    .map_err(encode)?;
                self.agent.run(req)
            }
        };
        result.map_err(|e| Failed {
            error: self.transport_error(&format!("{method} {api_path}"), e),
            while_sending: method != Method::Get && handed.pos < handed.data.len(),
        })
    }

    /// Send one request and read the whole answer (at most `limit` bytes).
    pub(super) fn send(
        &self,
        method: Method,
        api_path: &str,
        body: Option<&[u8]>,
        limit: u64,
    ) -> Result<(u16, Vec<u8>), ForgeError> {
        self.send_as(Auth::Token, method, api_path, body, limit)
    }

    /// [`ForgejoClient::send`], with the token or without.
    pub(super) fn send_as(
        &self,
        auth: Auth,
        method: Method,
        api_path: &str,
        body: Option<&[u8]>,
        limit: u64,
    ) -> Result<(u16, Vec<u8>), ForgeError> {
        let mut resp = self.request_as(auth, method, api_path, body)?;
        if let Some(e) = self.told_by_headers(&format!("{method} {api_path}"), &resp) {
            return Err(e);
        }
        let status = resp.status().as_u16();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| self.transport_error(&format!("{method} {api_path}"), e))?;
        Ok((status, bytes))
    }

    /// The answers told by their headers, not their bodies: a 429 (or a 503
    /// with a `Retry-After`) with the wait it asks for, and a redirect (3xx) as
    /// configuration: redirects are never followed (the token would go
    /// along to wherever they lead, another host included), so every run
    /// would meet it until the base URL is the one the API answers at.
    pub(super) fn told_by_headers(
        &self,
        what: &str,
        resp: &ureq::http::Response<ureq::Body>,
    ) -> Option<ForgeError> {
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        if status == 429 {
            return Some(ForgeError::RateLimited {
                message: format!("{what}: 429 Too Many Requests"),
                retry_after,
            });
        }
        if status == 503 && retry_after.is_some() {
            // A proxy or the forge in maintenance, saying for how long.
            return Some(ForgeError::Server {
                status,
                message: self.scrub(&format!("{what}: 503 Service Unavailable")),
                retry_after,
            });
        }
        if !(300..400).contains(&status) {
            return None;
        }
        let to = resp
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(|l| l.split(['?', '#']).next().unwrap_or(""))
            .map_or("(no Location)".to_string(), crate::text::escape_controls);
        Some(ForgeError::Config(self.scrub(&format!(
            "{what}: answered {status}, a redirect to {to}; redirects are never followed (the \
             token would go along): set --forgejo-url to the address the API answers at (now {})",
            self.base
        ))))
    }

    /// A request without an answer, its cause named with the likely fix:
    /// refused and an unknown host may pass (75), TLS that cannot work as
    /// configured will not (78).
    pub(super) fn transport_error(&self, what: &str, e: ureq::Error) -> ForgeError {
        let msg = self.scrub(&format!("{what}: {e}"));
        let base = &self.base;
        match cause(&e) {
            Cause::Timeout => ForgeError::Timeout(msg),
            Cause::TooLarge => ForgeError::Invalid {
                status: 200,
                message: msg,
            },
            Cause::Refused => ForgeError::Network(format!(
                "{msg}: connection refused at {base}: is the forge running, and is the port in \
                 --forgejo-url right?"
            )),
            Cause::UnknownHost => ForgeError::Network(format!(
                "{msg}: the host name in {base} does not resolve: check its spelling in \
                 --forgejo-url and this machine's DNS"
            )),
            Cause::Certificate(why) => ForgeError::Tls(format!(
                "{msg}: the forge's certificate cannot be verified ({why}){}",
                self.trust_hint()
            )),
            Cause::NotTls => ForgeError::Tls(format!(
                "{msg}: {base} does not speak TLS on that port (a plain-HTTP port?): use http:// \
                 for a forge on loopback, or the port where the forge serves https"
            )),
            Cause::Tls(why) => ForgeError::Tls(format!(
                "{msg}: TLS with {base} failed ({why}){}",
                self.trust_hint()
            )),
            Cause::Other => ForgeError::Network(msg),
        }
    }

    /// What to do about a certificate: which store was used, and --ca-file.
    fn trust_hint(&self) -> String {
        match &self.ca_file {
            Some(f) => format!(
                "; the CA certificates in --ca-file {} do not verify it: give the file with the \
                 CA that issued the forge's certificate",
                f.display()
            ),
            None => "; the operating system's trust store does not verify it: if the forge's \
                     certificate comes from a private CA, give that CA's certificate with \
                     --ca-file FILE (or HERO_USAGE_CA_FILE, or ca_file in the config file), or \
                     add it to the system's store (update-ca-certificates)"
                .to_string(),
        }
    }

    /// Turn a non-2xx answer into a typed error; the message is scrubbed
    /// once, whole.
    pub(super) fn classify(&self, call: Call, what: &str, status: u16, body: &[u8]) -> ForgeError {
        let forgejos = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string));
        let from_forgejo = forgejos.is_some();
        let server = forgejos.unwrap_or_else(|| snippet(body));
        let lower = server.to_ascii_lowercase();
        let msg = self.scrub(&if server.is_empty() {
            format!("{what}: {status}")
        } else {
            format!("{what}: {status} {server}")
        });
        match status {
            // Forgejo's 401 is JSON; another one is a proxy's, which never
            // passed the token on.
            401 if !from_forgejo => ForgeError::Unauthorized(format!(
                "{msg} (not Forgejo's answer: a proxy in front of the forge refused the request, \
                 perhaps asking for credentials of its own; the token was not checked)"
            )),
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
            // Forgejo's own 413 (JSON) is its quota; a proxy's body limit
            // answers HTML.
            413 if lower.contains("quota") => ForgeError::QuotaExceeded(msg),
            413 => ForgeError::TooLarge(msg),
            422 if lower.contains("already exists") && call != Call::Other => {
                ForgeError::AlreadyExists(msg)
            }
            500..=599 => ForgeError::Server {
                status,
                message: msg,
                retry_after: None,
            },
            _ => ForgeError::Invalid {
                status,
                message: msg,
            },
        }
    }

    /// A JSON call: 2xx → parsed body; else a typed error.
    pub(super) fn call_json(
        &self,
        call: Call,
        method: Method,
        api_path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ForgeError> {
        let what = format!("{method} {api_path}");
        let data = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ForgeError::Encode(e.to_string()))?;
        let (status, bytes) = self.send(method, api_path, data.as_deref(), MAX_JSON)?;
        if !(200..300).contains(&status) {
            return Err(self.classify(call, &what, status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ForgeError::Invalid {
            status,
            message: format!("{what}: the answer is not JSON: {e}"),
        })
    }

    /// GET a JSON answer of at most `limit` bytes (folder and branch
    /// listings) as `T` (a typed shape keeps memory near the answer's size:
    /// a `Value` takes many times it); a non-2xx status as a typed error, a
    /// 2xx answer of another shape as `Invalid`.
    pub(super) fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        api_path: &str,
        limit: u64,
    ) -> Result<T, ForgeError> {
        let what = format!("{} {api_path}", Method::Get);
        let (status, bytes) = self.send(Method::Get, api_path, None, limit)?;
        if !(200..300).contains(&status) {
            return Err(self.classify(Call::Other, &what, status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ForgeError::Invalid {
            status,
            message: format!("{what}: the answer is not the JSON expected: {e}"),
        })
    }

    pub fn get_repo(&self, repo: &RepoRef) -> Result<Repository, ForgeError> {
        let v = self.call_json(Call::Other, Method::Get, &Self::repo_path(repo), None)?;
        parse_repo(&v)
    }

    /// Whether `branch` exists (`GET /repos/{owner}/{repo}/branches/{branch}`).
    pub(crate) fn branch_exists(&self, repo: &RepoRef, branch: &str) -> Result<bool, ForgeError> {
        let api = format!("{}/branches/{}", Self::repo_path(repo), encode_path(branch));
        match self.call_json(Call::Other, Method::Get, &api, None) {
            Ok(_) => Ok(true),
            Err(ForgeError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The token's user login.
    pub fn current_user(&self) -> Result<String, ForgeError> {
        match self.call_json(Call::Other, Method::Get, "/user", None) {
            Ok(v) => match v.get("login").and_then(Value::as_str) {
                Some(login) => Ok(login.to_string()),
                None => Err(self.not_the_api("GET /user answered 200 without a login")),
            },
            // A Forgejo answers /user with the login or a 401, never a 404
            // nor something that is not JSON: the base URL does not lead to
            // its API (`/api/v1` appended, or another web server), not a
            // missing owner.
            Err(
                ForgeError::NotFound(m)
                | ForgeError::Invalid {
                    status: 200,
                    message: m,
                },
            ) => Err(self.not_the_api(&m)),
            Err(e) => Err(e),
        }
    }

    /// The base URL hint, as `--check` gives it.
    pub(crate) fn not_the_api(&self, what: &str) -> ForgeError {
        ForgeError::Config(format!(
            "{what}: this is not a Forgejo API; is --forgejo-url the base URL? \
             (the server's address without /api/v1, e.g. https://forge.example.org; now {})",
            self.base
        ))
    }

    /// Create a private repository without auto_init (so it starts empty):
    /// under the token's user when the owner is its login, else under the org.
    pub fn create_repo(&self, repo: &RepoRef) -> Result<Repository, ForgeError> {
        let me = self.current_user()?;
        let path = if me.eq_ignore_ascii_case(&repo.owner) {
            "/user/repos".to_string()
        } else {
            format!("/orgs/{}/repos", encode_segment(&repo.owner))
        };
        let body = json!({"name": repo.name, "private": true, "auto_init": false});
        let v = self.call_json(Call::CreateRepo, Method::Post, &path, Some(&body))?;
        parse_repo(&v)
    }
}

/// The certificates a server's must chain to: the CA file's, or the
/// operating system's trust store (its platform verifier).
fn root_certs(ca_file: Option<&std::path::Path>) -> Result<ureq::tls::RootCerts, ForgeError> {
    use ureq::tls::{PemItem, RootCerts, parse_pem};
    let Some(path) = ca_file else {
        return Ok(RootCerts::PlatformVerifier);
    };
    let bad = |why: String| {
        ForgeError::Tls(format!(
            "--ca-file {}: {why}; give a file of PEM CA certificates (-----BEGIN CERTIFICATE-----)",
            path.display()
        ))
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut certs = Vec::new();
    for item in parse_pem(&pem) {
        if let PemItem::Certificate(c) = item.map_err(|e| bad(e.to_string()))? {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err(bad("it holds no certificate".into()));
    }
    Ok(RootCerts::new_with_certs(&certs))
}

/// `Retry-After`: seconds, or an HTTP date (a wait from now; none if past).
fn parse_retry_after(v: &str) -> Option<std::time::Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(std::time::Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

/// The start of a body that is not the JSON expected, for a message.
pub(super) fn snippet(body: &[u8]) -> String {
    let t = String::from_utf8_lossy(body);
    t.chars().take(300).collect::<String>().trim().to_string()
}

pub(super) fn str_field(v: &Value, key: &str, what: &str) -> Result<String, ForgeError> {
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
    let flag = |key: &str| v.get(key).and_then(Value::as_bool).unwrap_or(false);
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
        may_push: v.pointer("/permissions/push").and_then(Value::as_bool),
        read_only: if flag("archived") {
            Some("archived")
        } else if flag("mirror") {
            Some("a mirror")
        } else {
            None
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(100)).to_rfc2822();
        let wait = parse_retry_after(&soon).unwrap();
        assert!(wait <= Duration::from_secs(100) && wait >= Duration::from_secs(90));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
