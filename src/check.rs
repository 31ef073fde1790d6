//! `hero_usage_push --check`: the effective settings and where each came
//! from (never the token), then a probe of the forge that changes nothing:
//! `/api/v1/version` (is this the Forgejo base URL?), `/user` (is the token
//! accepted?), the repository, and whether the token may write it or create
//! it. Exits with the code a push would get.
//!
//! The write and create probes send requests that Forgejo refuses before
//! doing anything: a token without the scope gets 403, one with it gets 422
//! for the empty body. They need the raw status, which the push client maps
//! away, so the probes make their own small requests here.

use crate::error::{Exit, Kind, kind_of};
use crate::forgejo::{check_base_url, encode_path};
use crate::secret::scrub_token;
use crate::settings::{Common, ForgeSettings, Resolver, Setting};
use crate::text::one_line;
use anyhow::Result;
use std::fmt::Write;
use std::time::Duration;

/// Longest remote text kept in a message.
const BODY_CHARS: usize = 160;

/// Run the check; print it; return the exit a push would get.
pub fn run(settings: &Resolver, common: &Common) -> Result<Exit> {
    let settings_in = settings;
    let mut report = settings_text(&settings.table());
    if let Some(w) = settings.token_file_warning() {
        let _ = writeln!(report, "warning {w}");
    }
    let exit = match settings.forge() {
        Err(e) => {
            let _ = writeln!(report, "FAIL settings: {}", one_line(&format!("{e:#}")));
            Exit::Failed(kind_of(&e))
        }
        Ok(settings) => {
            // A push opens the spool before it reaches the forge: its
            // failure is the code a push would get, the probe still runs.
            let spool_kind = spool_step(common, &mut report);
            let key_kind = signing_step(settings_in, common, &mut report);
            let (lines, kind) = probe(&settings);
            report.push_str(&lines);
            Exit::of(spool_kind.or(key_kind).or(kind))
        }
    };
    let _ = writeln!(report, "check: a push would exit {}", exit.code());
    crate::console::out(&report)?;
    Ok(exit)
}

/// The spool as a push would find it: usable, and bound to this node name
/// (or to none yet). Read-only: a missing spool is fine (the first record
/// creates it), and nothing is created or bound.
fn spool_step(common: &Common, report: &mut String) -> Option<Kind> {
    let shown = crate::text::escape_controls(&common.spool.display().to_string());
    if std::fs::symlink_metadata(&common.spool)
        .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    {
        let _ = writeln!(
            report,
            "ok   spool {shown} does not exist yet (the first record creates it)"
        );
        return None;
    }
    let checked = crate::spool::Spool::open_read_only(&common.spool)
        .and_then(|spool| spool.check_node(&common.node));
    match checked {
        Ok(bound) => {
            let how = if bound {
                "belongs to"
            } else {
                "is not bound yet; the first push binds it to"
            };
            let _ = writeln!(report, "ok   spool {shown} {how} node {}", common.node);
            None
        }
        Err(e) => {
            let _ = writeln!(report, "FAIL spool: {}", one_line(&format!("{e:#}")));
            Some(kind_of(&e))
        }
    }
}

/// The signing key as a push would load it: hour files signed (with the
/// node's allowed_signers line), unsigned without a key, or a key that
/// cannot be used (78).
fn signing_step(settings: &Resolver, common: &Common, report: &mut String) -> Option<Kind> {
    match settings.signer() {
        Ok(None) => {
            let _ = writeln!(
                report,
                "note hour files go unsigned: no signing key (hero_usage_push --init-signing-key makes one)"
            );
            None
        }
        Ok(Some(signer)) => {
            let _ = writeln!(
                report,
                "ok   signing key {}: hour files are signed; allowed_signers line: {}",
                crate::text::escape_controls(&signer.path().display().to_string()),
                signer.allowed_signers_line(&common.node)
            );
            None
        }
        Err(e) => {
            let _ = writeln!(report, "FAIL signing key: {}", one_line(&format!("{e:#}")));
            Some(kind_of(&e))
        }
    }
}

fn settings_text(settings: &[Setting]) -> String {
    let mut s = String::from("settings (flag > env > config > default):\n");
    for st in settings {
        let value = st.value.as_deref().unwrap_or(match st.name {
            "branch" => "(the repository's default branch)",
            "signing_key_file" => "(none: hour files go unsigned)",
            _ => "(not set)",
        });
        let _ = writeln!(
            s,
            "  {:<14} {:<9} {}",
            st.name,
            st.source.as_str(),
            one_line(value)
        );
    }
    s
}

/// One answer: status and body (one line, cut), or why there was none.
struct Answer {
    status: u16,
    /// The whole body, for parsing.
    raw: String,
    /// The body on one line, cut, for messages.
    body: String,
}

/// A probe step's failure: the kind a push would exit with and why.
type Failed = (Kind, String);

struct Prober {
    agent: ureq::Agent,
    base: String,
    token: String,
}

impl Prober {
    fn request(&self, method: &str, path: &str, auth: bool) -> Result<Answer, Failed> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if auth {
            req = req.header("Authorization", format!("token {}", self.token));
        }
        let body = if method == "GET" {
            Vec::new()
        } else {
            b"{}".to_vec()
        };
        let req = req
            .header("Content-Type", "application/json")
            .body(body)
            .map_err(|e| (Kind::Config, format!("{method} {url}: {e}")))?;
        let mut resp = self.agent.run(req).map_err(|e| {
            (
                Kind::TempFail,
                format!(
                    "{method} {url}: forge unreachable: {}",
                    self.cut(&e.to_string())
                ),
            )
        })?;
        let text = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .unwrap_or_default();
        Ok(Answer {
            status: resp.status().as_u16(),
            body: self.cut(&text),
            raw: text,
        })
    }

    /// Remote text on one line, cut, and never the token.
    fn cut(&self, text: &str) -> String {
        let line = scrub_token(&one_line(text), &self.token);
        match line.char_indices().nth(BODY_CHARS) {
            Some((i, _)) => format!("{}...", &line[..i]),
            None => line,
        }
    }
}

/// The base URL hint every "this is not the Forgejo API" message carries.
fn not_forgejo(base: &str, what: &str) -> Failed {
    (
        Kind::Config,
        format!(
            "{what}: this is not a Forgejo API; is --forgejo-url the base URL? \
             (the server's address without /api/v1, e.g. https://forge.example.org; now {base})"
        ),
    )
}

/// The kind a push would exit with for an unexpected status.
fn status_kind(status: u16) -> Kind {
    match status {
        401 | 403 => Kind::NoPerm,
        500..=599 | 408 | 429 => Kind::TempFail,
        _ => Kind::Config,
    }
}

fn probe(settings: &ForgeSettings) -> (String, Option<Kind>) {
    let mut lines = String::new();
    let result = probe_steps(settings, &mut lines);
    let kind = match result {
        Ok(()) => None,
        Err((kind, why)) => {
            let _ = writeln!(lines, "FAIL {}", one_line(&why));
            Some(kind)
        }
    };
    (lines, kind)
}

fn probe_steps(settings: &ForgeSettings, lines: &mut String) -> Result<(), Failed> {
    let base = check_base_url(settings.url.trim(), settings.insecure_http)
        .map_err(|e| (Kind::Config, e.to_string()))?;
    let path = base.splitn(4, '/').nth(3).unwrap_or("");
    if path.ends_with("api/v1") || path.ends_with("api") {
        return Err(not_forgejo(&base, "the URL ends in /api/v1"));
    }
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_global(Some(Duration::from_secs(30)))
        .build();
    let p = Prober {
        agent: ureq::Agent::new_with_config(config),
        base: base.clone(),
        token: settings.token.expose().to_string(),
    };
    // What the server says is shown escaped: never raw bytes to a terminal.
    let version = probe_version(&p)?;
    let _ = writeln!(
        lines,
        "ok   forge at {base}: Forgejo API version {}",
        one_line(&version)
    );
    let login = probe_user(&p)?;
    let _ = writeln!(
        lines,
        "ok   the token is accepted: user {}",
        one_line(&login)
    );
    let line = probe_repo(&p, settings, &login)?;
    let _ = writeln!(lines, "ok   {}", one_line(&line));
    Ok(())
}

fn json_field(body: &str, key: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v.get(key)?.as_str().map(str::to_string)
}

fn probe_version(p: &Prober) -> Result<String, Failed> {
    let a = p.request("GET", "/version", false)?;
    match (a.status, json_field(&a.raw, "version")) {
        (200, Some(v)) => Ok(v),
        (500..=599, _) => Err((
            Kind::TempFail,
            format!("GET /api/v1/version: server error {}: {}", a.status, a.body),
        )),
        (status, _) => Err(not_forgejo(
            &p.base,
            &format!("GET /api/v1/version answered {status}: {}", a.body),
        )),
    }
}

fn probe_user(p: &Prober) -> Result<String, Failed> {
    let a = p.request("GET", "/user", true)?;
    match (a.status, json_field(&a.raw, "login")) {
        (200, Some(login)) => Ok(login),
        (401, _) => Err((
            Kind::NoPerm,
            format!(
                "GET /api/v1/user: the forge refused the token (401): {}; check the token file",
                a.body
            ),
        )),
        (200 | 404, _) => Err(not_forgejo(
            &p.base,
            &format!("GET /api/v1/user answered {}: {}", a.status, a.body),
        )),
        (status, _) => Err((
            status_kind(status),
            format!("GET /api/v1/user answered {status}: {}", a.body),
        )),
    }
}

/// The repository exists and the token may write it, or it is missing
/// and the token may create it.
fn probe_repo(p: &Prober, s: &ForgeSettings, login: &str) -> Result<String, Failed> {
    let full = format!("{}/{}", s.owner, s.repo);
    let repo_path = format!("/repos/{}", encode_path(&full));
    let a = p.request("GET", &repo_path, true)?;
    match a.status {
        200 => probe_write(p, &full, &repo_path, &a.raw),
        404 => probe_create(p, s, login),
        status => Err((
            status_kind(status),
            format!("GET /api/v1{repo_path} answered {status}: {}", a.body),
        )),
    }
}

fn probe_write(p: &Prober, full: &str, repo_path: &str, repo_json: &str) -> Result<String, Failed> {
    let may_push = serde_json::from_str::<serde_json::Value>(repo_json)
        .ok()
        .and_then(|v| v["permissions"]["push"].as_bool());
    if may_push == Some(false) {
        return Err((
            Kind::NoPerm,
            format!("repository {full}: user may read but not write it; grant write access"),
        ));
    }
    // An empty change list: 422 when the token may write, 403 when not.
    let a = p.request("POST", &format!("{repo_path}/contents"), true)?;
    match a.status {
        422 => Ok(format!("repository {full} exists; the token may write it")),
        404 | 405 => Ok(format!(
            "repository {full} exists; write access: this server has no many-files endpoint to probe (the push falls back to one file per request)"
        )),
        403 => Err((
            Kind::NoPerm,
            format!(
                "repository {full}: the token may not write it (403): {}; it needs the write:repository scope",
                a.body
            ),
        )),
        status => Err((
            status_kind(status),
            format!(
                "POST /api/v1{repo_path}/contents (empty, a probe) answered {status}: {}",
                a.body
            ),
        )),
    }
}

fn probe_create(p: &Prober, s: &ForgeSettings, login: &str) -> Result<String, Failed> {
    let full = format!("{}/{}", s.owner, s.repo);
    let mine = s.owner.eq_ignore_ascii_case(login);
    let path = if mine {
        "/user/repos".to_string()
    } else {
        format!("/orgs/{}/repos", encode_path(&s.owner))
    };
    // A create without a name: 422 when the token may create, 403 when not.
    let a = p.request("POST", &path, true)?;
    let under = if mine {
        format!("user {login}")
    } else {
        format!("organisation {}", s.owner)
    };
    match a.status {
        422 => Ok(format!(
            "repository {full} does not exist yet; the token may create it under {under} (the first push does)"
        )),
        404 if !mine => Err((
            Kind::Config,
            format!(
                "repository {full} does not exist, and {} is neither an organisation nor the token's user ({login}): fix --repo",
                s.owner
            ),
        )),
        403 => Err((
            Kind::NoPerm,
            format!(
                "repository {full} does not exist, and the token may not create it under {under} (403): {}; {}",
                a.body,
                if mine {
                    "it needs the write:repository scope"
                } else {
                    "it needs write:organization and the right to create repositories in the organisation"
                }
            ),
        )),
        status => Err((
            status_kind(status),
            format!(
                "POST /api/v1{path} (no name, a probe) answered {status}: {}",
                a.body
            ),
        )),
    }
}
