//! The routes, status by status as in `shared/forgejo/README.md`.

mod branches;
mod ctl;
mod read;
mod repos;
mod write;

use branches::*;
use ctl::*;
use read::*;
pub(crate) use repos::create_repo_on_disk;
use repos::*;
use write::*;

use crate::git::{Change, Entry, Git, Person};
use crate::http::{Outcome, Request, Response, percent_decode};
use crate::{Fault, FaultAction, LoggedRequest, State};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::time::Duration;

type Res = Result<Response, Response>;

const SCOPE_REPO: &str = "write:repository";
const SCOPE_ORG: &str = "write:organization";

enum Auth {
    None,
    Bad,
    Full,
    ReadOnly,
}

pub(crate) fn handle(st: &State, req: Request) -> Outcome {
    let prefix = st.opts.prefix.clone();
    let full_path = req.path().to_string();
    if req.body_too_large {
        // The proxy in front refuses it: Forgejo never sees it.
        st.stats.lock().unwrap().too_large += 1;
        log(st, &req, &redact_query(&req.target), 413, None);
        return Outcome::Reply(Response::nginx_413());
    }
    let Some(path) = strip_prefix(&full_path, &prefix) else {
        let r = error(st, 404, "not found");
        log(st, &req, &full_path, r.status, None);
        return Outcome::Reply(r);
    };
    let path = path.to_string();
    let logged_path = redact_query(&req.target[prefix.len().min(req.target.len())..]);
    let auth = authenticate(st, &req);

    if let Some(rest) = path.strip_prefix("/_testforge/") {
        let r = match auth {
            // Counters hold no secret: readable without a token.
            _ if req.method == "GET" && rest == "stats" => stats_json(st),
            Auth::Full => control(st, &req, rest),
            Auth::None => error(st, 401, "token is required"),
            _ => error(st, 401, "invalid username, password or token"),
        };
        return Outcome::Reply(r);
    }

    let fault = take_fault(st, &req.method, &path);
    let mut fault_name = None;
    let mut drop_after = None;
    let mut fail_after = None;
    if let Some(f) = fault {
        match f.action {
            FaultAction::Fail { status, message } => {
                let r = error(st, status, &message);
                log(st, &req, &logged_path, status, Some("fail"));
                return Outcome::Reply(r);
            }
            FaultAction::Delay(d) => {
                std::thread::sleep(d);
                fault_name = Some("delay");
            }
            FaultAction::DropBefore => {
                log(st, &req, &logged_path, 0, Some("drop_before"));
                return Outcome::Drop;
            }
            FaultAction::DropAfter => {
                drop_after = Some(Outcome::Drop);
                fault_name = Some("drop_after");
            }
            FaultAction::ResetAfter => {
                drop_after = Some(Outcome::Reset);
                fault_name = Some("reset_after");
            }
            FaultAction::FailAfter { status, message } => {
                fail_after = Some(error(st, status, &message));
                fault_name = Some("fail_after");
            }
            FaultAction::Reply(raw) => {
                log(st, &req, &logged_path, raw.status, Some("reply"));
                return Outcome::Reply(raw_response(raw));
            }
            FaultAction::ReplyAfter(raw) => {
                fail_after = Some(raw_response(raw));
                fault_name = Some("reply_after");
            }
            FaultAction::ConcurrentCommit {
                path: file,
                content,
            } => {
                concurrent_commit(st, &req, &path, &file, &content);
                fault_name = Some("concurrent_commit");
            }
        }
    }

    let mut resp = route(st, &req, &path, &auth).unwrap_or_else(|e| e);
    if let Some(instead) = fail_after {
        resp = instead;
    }
    if let Some(end) = drop_after {
        log(st, &req, &logged_path, 0, fault_name);
        return end;
    }
    log(st, &req, &logged_path, resp.status, fault_name);
    Outcome::Reply(resp)
}

fn raw_response(raw: crate::RawReply) -> Response {
    Response {
        status: raw.status,
        content_type: raw.content_type,
        body: raw.body,
        headers: raw.headers,
    }
}

fn strip_prefix<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    if prefix.is_empty() {
        return Some(path);
    }
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

fn redact_query(target: &str) -> String {
    let Some((p, q)) = target.split_once('?') else {
        return target.to_string();
    };
    let q: Vec<String> = q
        .split('&')
        .map(|kv| {
            let k = kv.split('=').next().unwrap_or("");
            if ["token", "access_token"].contains(&k.to_ascii_lowercase().as_str()) {
                format!("{k}=<redacted>")
            } else {
                kv.to_string()
            }
        })
        .collect();
    format!("{p}?{}", q.join("&"))
}

fn log(st: &State, req: &Request, path: &str, status: u16, fault: Option<&str>) {
    {
        let mut stats = st.stats.lock().unwrap();
        stats.requests += 1;
        *stats.by_status.entry(status).or_default() += 1;
    }
    st.log.lock().unwrap().push(LoggedRequest {
        method: req.method.clone(),
        path: path.to_string(),
        status,
        fault: fault.map(str::to_string),
    });
}

fn take_fault(st: &State, method: &str, path: &str) -> Option<Fault> {
    let mut faults = st.faults.lock().unwrap();
    let i = faults.iter().position(|f| {
        f.times > 0
            && f.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && path.contains(&f.path_contains)
    })?;
    faults[i].times -= 1;
    let f = faults[i].clone();
    if faults[i].times == 0 {
        faults.remove(i);
    }
    Some(f)
}

fn authenticate(st: &State, req: &Request) -> Auth {
    let Some(h) = req.header("authorization") else {
        return Auth::None;
    };
    let (scheme, value) = h.split_once(' ').unwrap_or((h, ""));
    let value = value.trim();
    let candidates: Vec<String> = match scheme.to_ascii_lowercase().as_str() {
        "token" | "bearer" => vec![value.to_string()],
        "basic" => match B64.decode(value) {
            Ok(raw) => {
                let s = String::from_utf8_lossy(&raw).into_owned();
                let (u, p) = s.split_once(':').unwrap_or((&s, ""));
                vec![u.to_string(), p.to_string()]
            }
            Err(_) => vec![],
        },
        _ => vec![],
    };
    if candidates.iter().any(|c| ct_eq(c, &st.token)) {
        return Auth::Full;
    }
    if let Some(ro) = &st.opts.read_only_token
        && candidates.iter().any(|c| ct_eq(c, ro))
    {
        return Auth::ReadOnly;
    }
    Auth::Bad
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && !a.is_empty()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn swagger(st: &State) -> String {
    format!("{}/api/swagger", st.base())
}

fn error(st: &State, status: u16, message: &str) -> Response {
    let mut body = json!({"message": message, "url": swagger(st)});
    if status == 404 {
        body["errors"] = json!([message]);
    }
    Response::json(status, &body)
}

/// A 500 as Forgejo answers it to a non-admin: the message is blanked.
fn internal(st: &State) -> Response {
    error(st, 500, "")
}

fn require_scope(st: &State, auth: &Auth, scope: &str) -> Result<(), Response> {
    match auth {
        Auth::Full => Ok(()),
        Auth::ReadOnly => Err(error(
            st,
            403,
            &format!("token does not have at least one of required scope(s): [{scope}]"),
        )),
        Auth::None => Err(error(st, 401, "token is required")),
        Auth::Bad => Err(error(st, 401, "invalid username, password or token")),
    }
}

fn require_auth(st: &State, auth: &Auth) -> Result<(), Response> {
    match auth {
        Auth::Full | Auth::ReadOnly => Ok(()),
        Auth::None => Err(error(st, 401, "token is required")),
        Auth::Bad => Err(error(st, 401, "invalid username, password or token")),
    }
}

fn route(st: &State, req: &Request, path: &str, auth: &Auth) -> Res {
    let Some(api) = path.strip_prefix("/api/v1/") else {
        return Err(error(st, 404, "not found"));
    };
    let segs: Vec<String> = api.split('/').map(percent_decode).collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = req.method.as_str();
    // A bad token is refused everywhere, even where none is needed.
    if let Auth::Bad = auth {
        return Err(error(st, 401, "invalid username, password or token"));
    }
    match (m, s.as_slice()) {
        // Forgejo answers its version to anyone (`hero_usage_push --check` probes it).
        ("GET", ["version"]) => Ok(Response::json(200, &json!({"version": "12.0.0+testforge"}))),
        ("GET", ["user"]) => {
            require_auth(st, auth)?;
            Ok(Response::json(200, &user_json(st)))
        }
        ("POST", ["user", "repos"]) => {
            require_scope(st, auth, SCOPE_REPO)?;
            create_repo(st, req, &st.opts.user.clone())
        }
        ("POST", ["orgs", org, "repos"]) => {
            require_scope(st, auth, SCOPE_ORG)?;
            if !st.opts.orgs.iter().any(|o| o == org) {
                return Err(error(st, 404, &format!("org does not exist [name: {org}]")));
            }
            create_repo(st, req, org)
        }
        (_, ["user"] | ["user", "repos"] | ["orgs", _, "repos"]) => {
            Err(error(st, 405, "method not allowed"))
        }
        (_, ["repos", owner, name, rest @ ..]) => {
            if m != "GET" {
                require_auth(st, auth)?;
            }
            let g = open_repo(st, auth, owner, name)?;
            repo_route(st, req, auth, &g, owner, name, rest)
        }
        _ => Err(error(st, 404, "not found")),
    }
}

/// The repository, or 404 (also for a private one the caller cannot see).
fn open_repo(st: &State, auth: &Auth, owner: &str, name: &str) -> Result<Git, Response> {
    let dir = st.repo_dir(owner, name);
    if !valid_name(owner) || !valid_name(name) || !dir.join("HEAD").exists() {
        return Err(error(st, 404, "The target couldn't be found."));
    }
    if let Auth::None = auth
        && is_private(&Git::new(&dir))
    {
        return Err(error(st, 404, "The target couldn't be found."));
    }
    Ok(Git::new(&dir))
}

/// Set by [`crate::TestForge::make_read_only`]: `testforge-archived` or
/// `testforge-mirror` in the bare repository.
pub(crate) fn has_flag(g: &Git, flag: &str) -> bool {
    g.dir.join(format!("testforge-{flag}")).exists()
}

/// As Forgejo refuses a write to a read-only repository: an archived one
/// with 423 (`mustNotBeArchived`, before anything else), a mirror with 403
/// (`canWriteFiles`).
fn writable(st: &State, g: &Git) -> Result<(), Response> {
    if has_flag(g, "archived") {
        return Err(error(st, 423, "repo is archived"));
    }
    if has_flag(g, "mirror") {
        return Err(error(st, 403, "user does not have access to repo"));
    }
    Ok(())
}

fn is_private(g: &Git) -> bool {
    std::fs::read_to_string(g.dir.join("testforge-private"))
        .map(|s| s.trim() != "false")
        .unwrap_or(true)
}

fn repo_route(
    st: &State,
    req: &Request,
    auth: &Auth,
    g: &Git,
    owner: &str,
    name: &str,
    rest: &[&str],
) -> Res {
    let m = req.method.as_str();
    let file_path = |from: usize| rest[from..].join("/");
    match (m, rest) {
        ("GET", []) => Ok(Response::json(200, &repo_json(st, g, owner, name))),
        ("DELETE", []) => {
            require_scope(st, auth, SCOPE_REPO)?;
            delete_repo(st, owner, name)
        }
        ("GET", ["branches"]) => list_branches(st, req, g, owner, name),
        ("GET", ["branches", _, ..]) => get_branch(st, g, owner, name, &file_path(1)),
        ("GET", ["contents", ..]) => get_contents(st, req, g, owner, name, &file_path(1)),
        ("GET", ["raw", ..]) => get_raw(st, req, g, &file_path(1)),
        ("GET", ["commits"]) => list_commits(st, req, g),
        ("GET", ["git", "commits", sha]) => get_commit(st, g, owner, name, sha),
        ("POST", ["contents"]) | ("POST", ["contents", ""]) => {
            require_scope(st, auth, SCOPE_REPO)?;
            writable(st, g)?;
            let seen = st
                .multi_file_requests
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if st.opts.no_multi_file && seen >= st.opts.no_multi_file_after {
                let status = st.opts.no_multi_file_status;
                let message = if status == 405 {
                    "method not allowed"
                } else {
                    "not found"
                };
                return Err(error(st, status, message));
            }
            change_files(st, req, g, owner, name)
        }
        ("POST", ["contents", ..]) => {
            require_scope(st, auth, SCOPE_REPO)?;
            writable(st, g)?;
            write_one(st, req, g, owner, name, &file_path(1), false)
        }
        ("PUT", ["contents", _, ..]) => {
            require_scope(st, auth, SCOPE_REPO)?;
            writable(st, g)?;
            write_one(st, req, g, owner, name, &file_path(1), true)
        }
        (_, [] | ["contents", ..] | ["raw", ..] | ["branches", ..]) => {
            Err(error(st, 405, "method not allowed"))
        }
        _ => Err(error(st, 404, "not found")),
    }
}
