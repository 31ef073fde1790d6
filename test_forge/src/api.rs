//! The routes, status by status as in `shared/forgejo/README.md`.

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
            Auth::Full => control(st, &req, rest),
            Auth::None => error(st, 401, "token is required"),
            _ => error(st, 401, "invalid username, password or token"),
        };
        return Outcome::Reply(r);
    }

    let fault = take_fault(st, &req.method, &path);
    let mut fault_name = None;
    let mut drop_after = false;
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
                drop_after = true;
                fault_name = Some("drop_after");
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

    let resp = route(st, &req, &path, &auth).unwrap_or_else(|e| e);
    if drop_after {
        log(st, &req, &logged_path, 0, fault_name);
        return Outcome::Drop;
    }
    log(st, &req, &logged_path, resp.status, fault_name);
    Outcome::Reply(resp)
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
        ("GET", ["contents", ..]) => get_contents(st, req, g, owner, name, &file_path(1)),
        ("GET", ["raw", ..]) => get_raw(st, req, g, &file_path(1)),
        ("GET", ["commits"]) => list_commits(st, req, g),
        ("POST", ["contents"]) | ("POST", ["contents", ""]) => {
            require_scope(st, auth, SCOPE_REPO)?;
            if st.opts.no_multi_file {
                return Err(error(st, 405, "method not allowed"));
            }
            change_files(st, req, g, owner, name)
        }
        ("POST", ["contents", ..]) => {
            require_scope(st, auth, SCOPE_REPO)?;
            write_one(st, req, g, owner, name, &file_path(1), false)
        }
        ("PUT", ["contents", _, ..]) => {
            require_scope(st, auth, SCOPE_REPO)?;
            write_one(st, req, g, owner, name, &file_path(1), true)
        }
        (_, [] | ["contents", ..] | ["raw", ..]) => Err(error(st, 405, "method not allowed")),
        _ => Err(error(st, 404, "not found")),
    }
}

/// `GET /repos/{o}/{r}/commits?sha=BRANCH&limit=N`: the newest commits
/// (default 30, at most 50 a page, as Forgejo pages); 409 on an empty repo.
fn list_commits(st: &State, req: &Request, g: &Git) -> Res {
    if g.is_empty() {
        return Err(error(st, 409, "Git Repository is empty."));
    }
    let r = req.query("sha").unwrap_or_else(|| g.head_branch());
    let Some(head) = resolve_ref(g, &r) else {
        return Err(error(st, 404, &format!("sha not found [sha: {r}]")));
    };
    let limit = req
        .query("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 50);
    let list: Vec<Value> = g
        .log(&head, limit)
        .into_iter()
        .map(|sha| json!({"sha": sha, "url": format!("{}/api/v1/git/commits/{sha}", st.base())}))
        .collect();
    Ok(Response::json(200, &Value::Array(list)))
}

// ---------------------------------------------------------------- repositories

pub(crate) fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 100
        && n != "."
        && n != ".."
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn create_repo(st: &State, req: &Request, owner: &str) -> Res {
    let body: Value = serde_json::from_slice(&req.body)
        .map_err(|e| error(st, 422, &format!("invalid JSON: {e}")))?;
    let name = body["name"].as_str().unwrap_or("");
    if name.is_empty() {
        return Err(error(st, 422, "[Name]: Required"));
    }
    if !valid_name(name) || name.ends_with(".git") || name.ends_with(".wiki") {
        return Err(error(st, 422, "[Name]: AlphaDashDot"));
    }
    let private = body["private"].as_bool().unwrap_or(false);
    let branch = body["default_branch"]
        .as_str()
        .filter(|b| !b.is_empty())
        .unwrap_or("main");
    let auto_init = body["auto_init"].as_bool().unwrap_or(false);
    let _g = st.git_lock.lock().unwrap();
    if st.repo_dir(owner, name).exists() {
        return Err(error(
            st,
            409,
            "The repository with the same name already exists.",
        ));
    }
    create_repo_on_disk(st, owner, name, private, branch, auto_init).map_err(|_| internal(st))?;
    let g = Git::new(&st.repo_dir(owner, name));
    Ok(Response::json(201, &repo_json(st, &g, owner, name)))
}

pub(crate) fn create_repo_on_disk(
    st: &State,
    owner: &str,
    name: &str,
    private: bool,
    branch: &str,
    auto_init: bool,
) -> Result<(), String> {
    let dir = st.repo_dir(owner, name);
    let g = Git::new(&dir);
    g.init(branch)?;
    std::fs::write(dir.join("testforge-private"), private.to_string())
        .map_err(|e| e.to_string())?;
    let id = st.next_id();
    std::fs::write(dir.join("testforge-id"), id.to_string()).map_err(|e| e.to_string())?;
    if auto_init {
        let who = bot(st);
        g.commit(
            branch,
            None,
            &[Change {
                path: "README.md".into(),
                content: Some(format!("# {name}\n").into_bytes()),
            }],
            "Initial commit",
            &who,
            &who,
        )?;
    }
    Ok(())
}

fn bot(st: &State) -> Person {
    Person {
        name: st.opts.user.clone(),
        email: format!("{}@noreply.localhost", st.opts.user),
    }
}

fn user_json(st: &State) -> Value {
    let login = &st.opts.user;
    json!({
        "id": 1, "login": login, "login_name": "", "source_id": 0,
        "full_name": login, "email": format!("{login}@noreply.localhost"),
        "avatar_url": format!("{}/avatars/{login}", st.base()),
        "html_url": format!("{}/{login}", st.base()),
        "language": "en-US", "is_admin": false,
        "last_login": "2026-01-01T00:00:00Z", "created": "2026-01-01T00:00:00Z",
        "restricted": false, "active": true, "prohibit_login": false,
        "location": "", "pronouns": "", "website": "", "description": "",
        "visibility": "public", "followers_count": 0, "following_count": 0,
        "starred_repos_count": 0,
    })
}

fn owner_json(st: &State, owner: &str) -> Value {
    if owner == st.opts.user {
        return user_json(st);
    }
    let mut u = user_json(st);
    u["id"] = json!(2 + st.opts.orgs.iter().position(|o| o == owner).unwrap_or(0));
    u["login"] = json!(owner);
    u["full_name"] = json!(owner);
    u["email"] = json!("");
    u["html_url"] = json!(format!("{}/{owner}", st.base()));
    u
}

fn repo_json(st: &State, g: &Git, owner: &str, name: &str) -> Value {
    let base = st.base();
    let id: u64 = std::fs::read_to_string(g.dir.join("testforge-id"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let full = format!("{owner}/{name}");
    json!({
        "id": id, "owner": owner_json(st, owner), "name": name, "full_name": full,
        "description": "", "empty": g.is_empty(), "private": is_private(g),
        "fork": false, "template": false, "parent": null, "mirror": false, "size": 0,
        "language": "", "languages_url": format!("{base}/api/v1/repos/{full}/languages"),
        "html_url": format!("{base}/{full}"), "url": format!("{base}/api/v1/repos/{full}"),
        "link": "", "ssh_url": format!("git@127.0.0.1:{full}.git"),
        "clone_url": format!("{base}/{full}.git"), "original_url": "", "website": "",
        "stars_count": 0, "forks_count": 0, "watchers_count": 1, "open_issues_count": 0,
        "open_pr_counter": 0, "release_counter": 0, "default_branch": g.head_branch(),
        "archived": false, "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z", "archived_at": "1970-01-01T00:00:00Z",
        "permissions": {"admin": true, "push": true, "pull": true},
        "has_issues": true, "internal_tracker": {}, "has_wiki": true,
        "wiki_branch": g.head_branch(), "globally_editable_wiki": false,
        "has_pull_requests": true, "has_projects": true, "has_releases": true,
        "has_packages": true, "has_actions": true, "ignore_whitespace_conflicts": false,
        "allow_merge_commits": true, "allow_rebase": true, "allow_rebase_explicit": true,
        "allow_squash_merge": true, "allow_fast_forward_only_merge": true,
        "allow_rebase_update": true, "default_delete_branch_after_merge": false,
        "default_merge_style": "merge", "default_update_style": "merge",
        "default_allow_maintainer_edit": false, "avatar_url": "", "internal": false,
        "mirror_interval": "", "object_format_name": "sha1", "mirror_updated": "0001-01-01T00:00:00Z",
        "repo_transfer": null, "topics": [], "has_wiki_contents": false,
    })
}

// ---------------------------------------------------------------- reading

/// The commit a `ref` names: a branch, else a full commit sha.
fn resolve_ref(g: &Git, r: &str) -> Option<String> {
    if let Some(c) = g.branch_commit(r) {
        return Some(c);
    }
    if r.len() == 40 && r.chars().all(|c| c.is_ascii_hexdigit()) {
        return g.commit_info(r).ok().map(|i| i.sha);
    }
    None
}

fn get_contents(st: &State, req: &Request, g: &Git, owner: &str, name: &str, path: &str) -> Res {
    if g.is_empty() {
        return Ok(Response::json(200, &json!([])));
    }
    let r = req.query("ref").unwrap_or_else(|| g.head_branch());
    let Some(commit) = resolve_ref(g, &r) else {
        return Err(error(
            st,
            404,
            &format!("object does not exist [id: {r}, rel_path: ]"),
        ));
    };
    let path = path.trim_matches('/');
    let ctx = Ctx {
        st,
        g,
        owner,
        name,
        r: &r,
        commit: &commit,
        when: String::new(),
    };
    if path.is_empty() {
        let list: Vec<Value> = g
            .list_dir(&commit, "")
            .iter()
            .map(|e| ctx.contents(&e.name, e, false))
            .collect();
        return Ok(Response::json(200, &Value::Array(list)));
    }
    let Some(e) = g.entry(&commit, path) else {
        return Err(error(
            st,
            404,
            &format!("object does not exist [id: , rel_path: {path}]"),
        ));
    };
    if e.kind == "tree" {
        let list: Vec<Value> = g
            .list_dir(&commit, path)
            .iter()
            .map(|c| ctx.contents(&format!("{path}/{}", c.name), c, false))
            .collect();
        return Ok(Response::json(200, &Value::Array(list)));
    }
    Ok(Response::json(200, &ctx.contents(path, &e, true)))
}

fn get_raw(st: &State, req: &Request, g: &Git, path: &str) -> Res {
    let nf = || error(st, 404, "The target couldn't be found.");
    if g.is_empty() {
        return Err(nf());
    }
    let r = req.query("ref").unwrap_or_else(|| g.head_branch());
    let commit = resolve_ref(g, &r).ok_or_else(nf)?;
    let e = g.entry(&commit, path.trim_matches('/')).ok_or_else(nf)?;
    if e.kind != "blob" {
        return Err(nf());
    }
    let data = g.blob(&e.sha).map_err(|_| internal(st))?;
    Ok(Response {
        status: 200,
        content_type: "application/octet-stream",
        body: data,
    })
}

struct Ctx<'a> {
    st: &'a State,
    g: &'a Git,
    owner: &'a str,
    name: &'a str,
    r: &'a str,
    commit: &'a str,
    /// The commit's date, when known.
    when: String,
}

impl<'a> Ctx<'a> {
    /// The context of a commit just made on `r`, dated as the commit is.
    fn after_commit(
        st: &'a State,
        g: &'a Git,
        owner: &'a str,
        name: &'a str,
        r: &'a str,
        commit: &'a str,
    ) -> Ctx<'a> {
        let when = g
            .commit_info(commit)
            .map(|i| i.committer.2)
            .unwrap_or_default();
        Ctx {
            st,
            g,
            owner,
            name,
            r,
            commit,
            when,
        }
    }

    /// A `ContentsResponse` for `path` (`with_content` for a single file).
    fn contents(&self, path: &str, e: &Entry, with_content: bool) -> Value {
        self.contents_known(path, e, with_content, None, None)
    }

    /// As [`Ctx::contents`], with the content and last commit already known
    /// (a file just written), which saves two git calls per file.
    fn contents_known(
        &self,
        path: &str,
        e: &Entry,
        with_content: bool,
        known: Option<&[u8]>,
        last_commit: Option<&str>,
    ) -> Value {
        let base = self.st.base();
        let full = format!("{}/{}", self.owner, self.name);
        let kind = match e.kind.as_str() {
            "tree" => "dir",
            "commit" => "submodule",
            _ if e.mode == "120000" => "symlink",
            _ => "file",
        };
        let (last, when) = match last_commit {
            Some(c) => (c.to_string(), self.when.clone()),
            None => self.g.last_commit(self.commit, path),
        };
        let enc = encode_path(path);
        let self_url = format!("{base}/api/v1/repos/{full}/contents/{enc}?ref={}", self.r);
        let git_url = format!(
            "{base}/api/v1/repos/{full}/git/{}/{}",
            if kind == "dir" { "trees" } else { "blobs" },
            e.sha
        );
        let html_url = format!("{base}/{full}/src/branch/{}/{enc}", self.r);
        let mut v = json!({
            "name": path.rsplit('/').next().unwrap_or(path), "path": path,
            "sha": e.sha, "last_commit_sha": last, "last_commit_when": when,
            "type": kind, "size": if kind == "file" { e.size } else { 0 },
            "encoding": null, "content": null, "target": null,
            "url": self_url, "html_url": html_url, "git_url": git_url,
            "download_url": if kind == "file" {
                json!(format!("{base}/{full}/raw/branch/{}/{enc}", self.r))
            } else { Value::Null },
            "submodule_git_url": null,
            "_links": {"self": self_url, "git": git_url, "html": html_url},
        });
        if with_content && kind == "file" {
            v["encoding"] = json!("base64");
            if e.size > self.st.opts.max_blob_size {
                v["content"] = json!("");
            } else {
                let data = match known {
                    Some(d) => d.to_vec(),
                    None => self.g.blob(&e.sha).unwrap_or_default(),
                };
                v["content"] = json!(B64.encode(data));
            }
        }
        v
    }

    fn commit_json(&self, sha: &str) -> Value {
        let base = self.st.base();
        let full = format!("{}/{}", self.owner, self.name);
        let Ok(i) = self.g.commit_info(sha) else {
            return Value::Null;
        };
        let meta = |s: &str, kind: &str| json!({"url": format!("{base}/api/v1/repos/{full}/git/{kind}/{s}"), "sha": s, "created": i.committer.2});
        json!({
            "url": format!("{base}/api/v1/repos/{full}/git/commits/{sha}"),
            "sha": sha, "created": i.committer.2,
            "html_url": format!("{base}/{full}/commit/{sha}"),
            "author": {"name": i.author.0, "email": i.author.1, "date": i.author.2},
            "committer": {"name": i.committer.0, "email": i.committer.1, "date": i.committer.2},
            "parents": i.parents.iter().map(|p| meta(p, "commits")).collect::<Vec<_>>(),
            "message": i.message,
            "tree": meta(&i.tree, "trees"),
        })
    }
}

fn verification() -> Value {
    json!({"verified": false, "reason": "gpg.error.not_signed_commit", "signature": "", "signer": null, "payload": ""})
}

fn encode_path(p: &str) -> String {
    p.split('/')
        .map(|s| {
            s.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}

// ---------------------------------------------------------------- writing

/// A tree path Forgejo would accept: no empty, `.`, `..` or `.git` segment.
fn clean_path(p: &str) -> Option<String> {
    let p = p.trim_matches('/');
    if p.is_empty() || p.contains('\0') || p.contains('\n') {
        return None;
    }
    p.split('/')
        .all(|s| !s.is_empty() && s != "." && s != ".." && !s.eq_ignore_ascii_case(".git"))
        .then(|| p.to_string())
}

struct Common {
    branch: Option<String>,
    new_branch: Option<String>,
    message: Option<String>,
    author: Person,
    committer: Person,
}

fn person(v: &Value) -> Option<Person> {
    let name = v["name"].as_str().unwrap_or("");
    let email = v["email"].as_str().unwrap_or("");
    (!name.is_empty() || !email.is_empty()).then(|| Person {
        name: name.to_string(),
        email: email.to_string(),
    })
}

fn common(st: &State, body: &Value) -> Common {
    let a = person(&body["author"]);
    let c = person(&body["committer"]);
    let (author, committer) = match (a, c) {
        (Some(a), Some(c)) => (a, c),
        (Some(a), None) => (a.clone(), a),
        (None, Some(c)) => (c.clone(), c),
        (None, None) => (bot(st), bot(st)),
    };
    let s = |k: &str| {
        body[k]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    Common {
        branch: s("branch"),
        new_branch: s("new_branch"),
        message: s("message"),
        author,
        committer,
    }
}

fn parse_body(st: &State, req: &Request) -> Result<Value, Response> {
    let v: Value = serde_json::from_slice(&req.body)
        .map_err(|e| error(st, 422, &format!("[Body]: invalid JSON: {e}")))?;
    if !v.is_object() {
        return Err(error(st, 422, "[Body]: must be an object"));
    }
    Ok(v)
}

fn decode(st: &State, v: &Value) -> Result<Vec<u8>, Response> {
    B64.decode(v.as_str().unwrap_or("").as_bytes())
        .map_err(|e| error(st, 422, &format!("illegal base64 data: {e}")))
}

fn stale(st: &State, given: &str, expected: &str) -> Response {
    let status = if st.opts.legacy_422 { 422 } else { 409 };
    error(
        st,
        status,
        &format!("sha does not match [given: {given}, expected: {expected}]"),
    )
}

/// Where a write lands: (branch to commit to, its current commit or None
/// for a new branch in an empty repo).
fn target(st: &State, g: &Git, c: &Common) -> Result<(String, Option<String>), Response> {
    let base = c.branch.clone().unwrap_or_else(|| g.head_branch());
    if g.is_empty() {
        let b = c.new_branch.clone().unwrap_or(base);
        return Ok((b, None));
    }
    let Some(parent) = g.branch_commit(&base) else {
        return Err(error(
            st,
            404,
            &format!("branch does not exist [name: {base}]"),
        ));
    };
    match &c.new_branch {
        Some(nb) if *nb != base => {
            if g.branch_commit(nb).is_some() {
                return Err(error(
                    st,
                    422,
                    &format!("branch already exists [name: {nb}]"),
                ));
            }
            Ok((nb.clone(), Some(parent)))
        }
        _ => Ok((base, Some(parent))),
    }
}

fn finish_commit(
    st: &State,
    g: &Git,
    branch: &str,
    parent: Option<&str>,
    changes: &[Change],
    message: &str,
    c: &Common,
) -> Result<String, Response> {
    let was_empty = g.is_empty();
    let sha = g
        .commit(branch, parent, changes, message, &c.author, &c.committer)
        .map_err(|_| internal(st))?;
    if was_empty && g.head_branch() != branch {
        let _ = g.set_head_branch(branch);
    }
    Ok(sha)
}

fn write_one(
    st: &State,
    req: &Request,
    g: &Git,
    owner: &str,
    name: &str,
    raw_path: &str,
    update: bool,
) -> Res {
    let body = parse_body(st, req)?;
    let sha = body["sha"].as_str().filter(|s| !s.is_empty());
    if update && sha.is_none() {
        return Err(error(st, 422, "[SHA]: Required"));
    }
    let content = decode(st, &body["content"])?;
    let Some(path) = clean_path(raw_path) else {
        return Err(error(
            st,
            422,
            &format!("path contains a malformed path component [path: {raw_path}]"),
        ));
    };
    let c = common(st, &body);
    let _lock = st.git_lock.lock().unwrap();
    if update && g.is_empty() {
        return Err(error(st, 422, "repo is empty"));
    }
    let (branch, parent) = target(st, g, &c)?;
    let existing = parent.as_deref().and_then(|p| g.entry(p, &path));
    if update {
        let Some(e) = existing else {
            return Err(internal(st));
        };
        let given = sha.unwrap_or("");
        if e.sha != given {
            return Err(stale(st, given, &e.sha));
        }
    } else if existing.is_some() {
        return Err(error(
            st,
            422,
            &format!("repository file already exists [path: {path}]"),
        ));
    }
    let message = c
        .message
        .clone()
        .unwrap_or_else(|| format!("{} {path}", if update { "Update" } else { "Add" }));
    let commit = finish_commit(
        st,
        g,
        &branch,
        parent.as_deref(),
        &[Change {
            path: path.clone(),
            content: Some(content),
        }],
        &message,
        &c,
    )?;
    let ctx = Ctx::after_commit(st, g, owner, name, &branch, &commit);
    let e = g.entry(&commit, &path).ok_or_else(|| internal(st))?;
    let resp = json!({
        "content": ctx.contents(&path, &e, true),
        "commit": ctx.commit_json(&commit),
        "verification": verification(),
    });
    Ok(Response::json(if update { 200 } else { 201 }, &resp))
}

fn change_files(st: &State, req: &Request, g: &Git, owner: &str, name: &str) -> Res {
    let body = parse_body(st, req)?;
    let files = body["files"].as_array().cloned().unwrap_or_default();
    if files.is_empty() {
        return Err(error(st, 422, "[Files]: Required"));
    }
    let c = common(st, &body);
    // Decode and check the shape of every operation before touching git.
    struct Op {
        op: String,
        path: String,
        content: Option<Vec<u8>>,
        sha: Option<String>,
    }
    let mut ops = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for f in &files {
        let op = f["operation"].as_str().unwrap_or("").to_string();
        let raw = f["path"].as_str().unwrap_or("");
        if op.is_empty() {
            return Err(error(st, 422, "[Files[0].Operation]: Required"));
        }
        if raw.is_empty() {
            return Err(error(st, 422, "[Files[0].Path]: Required"));
        }
        let Some(path) = clean_path(raw) else {
            return Err(error(
                st,
                422,
                &format!("path contains a malformed path component [path: {raw}]"),
            ));
        };
        if !seen.insert(path.clone()) {
            return Err(error(
                st,
                422,
                &format!("duplicate file path in request [path: {path}]"),
            ));
        }
        let content = match op.as_str() {
            "create" | "update" => Some(decode(st, &f["content"])?),
            _ => None,
        };
        let sha = f["sha"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        ops.push(Op {
            op,
            path,
            content,
            sha,
        });
    }
    let _lock = st.git_lock.lock().unwrap();
    let (branch, parent) = target(st, g, &c)?;
    let paths: Vec<&str> = ops.iter().map(|o| o.path.as_str()).collect();
    let mut before = match parent.as_deref() {
        Some(p) => g.entries(p, &paths),
        None => Default::default(),
    };
    let mut changes = Vec::new();
    for o in &ops {
        let existing = before.remove(&o.path);
        match o.op.as_str() {
            "create" => {
                if existing.is_some() {
                    return Err(error(
                        st,
                        422,
                        &format!("repository file already exists [path: {}]", o.path),
                    ));
                }
            }
            "update" | "delete" => {
                let Some(e) = existing else {
                    return Err(internal(st));
                };
                match &o.sha {
                    None if st.opts.legacy_422 => {}
                    None => {
                        return Err(error(
                            st,
                            422,
                            &format!("sha is required to {} a file [path: {}]", o.op, o.path),
                        ));
                    }
                    Some(s) if *s != e.sha => return Err(stale(st, s, &e.sha)),
                    Some(_) => {}
                }
            }
            _ => return Err(internal(st)),
        }
        changes.push(Change {
            path: o.path.clone(),
            content: o.content.clone(),
        });
    }
    let message = c
        .message
        .clone()
        .unwrap_or_else(|| format!("Change {} files", ops.len()));
    let commit = finish_commit(st, g, &branch, parent.as_deref(), &changes, &message, &c)?;
    let ctx = Ctx::after_commit(st, g, owner, name, &branch, &commit);
    let after = g.entries(&commit, &paths);
    let files: Vec<Value> = ops
        .iter()
        .map(|o| match after.get(&o.path) {
            Some(e) if o.op != "delete" => {
                ctx.contents_known(&o.path, e, true, o.content.as_deref(), Some(&commit))
            }
            _ => Value::Null,
        })
        .collect();
    let resp = json!({
        "files": files,
        "commit": ctx.commit_json(&commit),
        "verification": verification(),
    });
    Ok(Response::json(201, &resp))
}

// ---------------------------------------------------------------- faults and control

/// Commit `content` at `file` on the branch `req` targets, as another writer.
fn concurrent_commit(st: &State, req: &Request, path: &str, file: &str, content: &[u8]) {
    let segs: Vec<String> = path.split('/').map(percent_decode).collect();
    // /api/v1/repos/{owner}/{name}/...
    let (Some(owner), Some(name)) = (segs.get(4), segs.get(5)) else {
        return;
    };
    let g = Git::new(&st.repo_dir(owner, name));
    let branch = serde_json::from_slice::<Value>(&req.body)
        .ok()
        .and_then(|b| b["branch"].as_str().map(str::to_string))
        .filter(|b| !b.is_empty())
        .or_else(|| req.query("ref"))
        .unwrap_or_else(|| g.head_branch());
    let _lock = st.git_lock.lock().unwrap();
    let parent = g.branch_commit(&branch);
    let who = Person {
        name: "concurrent-writer".into(),
        email: "concurrent-writer@example.org".into(),
    };
    let _ = g.commit(
        &branch,
        parent.as_deref(),
        &[Change {
            path: file.to_string(),
            content: Some(content.to_vec()),
        }],
        "Concurrent change",
        &who,
        &who,
    );
}

fn control(st: &State, req: &Request, rest: &str) -> Response {
    match (req.method.as_str(), rest) {
        ("GET", "log") => {
            let log: Vec<Value> = st
                .log
                .lock()
                .unwrap()
                .iter()
                .map(|l| json!({"method": l.method, "path": l.path, "status": l.status, "fault": l.fault}))
                .collect();
            Response::json(200, &Value::Array(log))
        }
        ("DELETE", "log") => {
            st.log.lock().unwrap().clear();
            Response::json(200, &json!({"ok": true}))
        }
        ("DELETE", "faults") => {
            st.faults.lock().unwrap().clear();
            Response::json(200, &json!({"ok": true}))
        }
        ("POST", "faults") => match parse_fault(&req.body) {
            Ok(f) => {
                st.faults.lock().unwrap().push(f);
                Response::json(201, &json!({"ok": true}))
            }
            Err(m) => error(st, 422, &m),
        },
        ("POST", "repos") => {
            let Ok(v) = serde_json::from_slice::<Value>(&req.body) else {
                return error(st, 422, "invalid JSON");
            };
            let owner = v["owner"].as_str().unwrap_or("");
            let name = v["name"].as_str().unwrap_or("");
            if !valid_name(owner) || !valid_name(name) {
                return error(st, 422, "owner and name are required");
            }
            if st.repo_dir(owner, name).exists() {
                return error(st, 409, "The repository with the same name already exists.");
            }
            let empty = v["empty"].as_bool().unwrap_or(true);
            match create_repo_on_disk(st, owner, name, true, "main", !empty) {
                Ok(()) => Response::json(201, &json!({"ok": true})),
                Err(e) => error(st, 500, &e),
            }
        }
        _ => error(st, 404, "not found"),
    }
}

/// `{"method": "PUT"|null, "path_contains": "...", "times": 1, "action":
/// "fail"|"delay"|"drop_before"|"drop_after"|"concurrent_commit", "status",
/// "message", "delay_ms", "file", "content" (base64)}`
fn parse_fault(body: &[u8]) -> Result<Fault, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let action = match v["action"].as_str().unwrap_or("") {
        "fail" => FaultAction::Fail {
            status: v["status"].as_u64().unwrap_or(500) as u16,
            message: v["message"].as_str().unwrap_or("").to_string(),
        },
        "delay" => FaultAction::Delay(Duration::from_millis(
            v["delay_ms"].as_u64().unwrap_or(1000),
        )),
        "drop_before" => FaultAction::DropBefore,
        "drop_after" => FaultAction::DropAfter,
        "concurrent_commit" => FaultAction::ConcurrentCommit {
            path: v["file"]
                .as_str()
                .ok_or("concurrent_commit needs file")?
                .to_string(),
            content: B64
                .decode(v["content"].as_str().unwrap_or(""))
                .map_err(|e| format!("content: {e}"))?,
        },
        other => return Err(format!("unknown action {other:?}")),
    };
    Ok(Fault {
        method: v["method"].as_str().map(str::to_string),
        path_contains: v["path_contains"].as_str().unwrap_or("").to_string(),
        times: v["times"].as_u64().unwrap_or(1) as usize,
        action,
    })
}
