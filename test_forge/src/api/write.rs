//! Writing: one file (POST/PUT) or many in one commit, with `new_branch`
//! and the race of Forgejo's lock-free commits.

use super::*;
use std::sync::MutexGuard;

/// A tree path Forgejo would accept: no empty, `.`, `..` or `.git` segment.
pub(super) fn clean_path(p: &str) -> Option<String> {
    let p = p.trim_matches('/');
    if p.is_empty() || p.contains('\0') || p.contains('\n') {
        return None;
    }
    p.split('/')
        .all(|s| !s.is_empty() && s != "." && s != ".." && !s.eq_ignore_ascii_case(".git"))
        .then(|| p.to_string())
}

pub(super) struct Common {
    branch: Option<String>,
    new_branch: Option<String>,
    message: Option<String>,
    author: Person,
    committer: Person,
}

pub(super) fn person(v: &Value) -> Option<Person> {
    let name = v["name"].as_str().unwrap_or("");
    let email = v["email"].as_str().unwrap_or("");
    (!name.is_empty() || !email.is_empty()).then(|| Person {
        name: name.to_string(),
        email: email.to_string(),
    })
}

pub(super) fn common(st: &State, body: &Value) -> Common {
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

pub(super) fn parse_body(st: &State, req: &Request) -> Result<Value, Response> {
    let v: Value = serde_json::from_slice(&req.body)
        .map_err(|e| error(st, 422, &format!("[Body]: invalid JSON: {e}")))?;
    if !v.is_object() {
        return Err(error(st, 422, "[Body]: must be an object"));
    }
    Ok(v)
}

pub(super) fn decode(st: &State, v: &Value) -> Result<Vec<u8>, Response> {
    B64.decode(v.as_str().unwrap_or("").as_bytes())
        .map_err(|e| error(st, 422, &format!("illegal base64 data: {e}")))
}

pub(super) fn stale(st: &State, given: &str, expected: &str) -> Response {
    let status = if st.opts.legacy_422 { 422 } else { 409 };
    error(
        st,
        status,
        &format!("sha does not match [given: {given}, expected: {expected}]"),
    )
}

/// Where a write lands.
pub(super) struct Target {
    /// The branch the commit moves (or creates).
    branch: String,
    /// The commit the new one is built on; `None` in an empty repository.
    parent: Option<String>,
    /// What `branch` must still point at when the commit lands (`None`: it
    /// must not exist): a push without force.
    old: Option<String>,
    /// The repository had no commit when the write began: as Forgejo does,
    /// the branch of its first commit becomes the default branch.
    was_empty: bool,
}

/// The target of a write from `branch` (default: the repository's default
/// branch) and `new_branch`. As Forgejo: an unknown `branch` is 404 (unless
/// the repository is empty), an existing `new_branch` is 422.
pub(super) fn target(st: &State, g: &Git, c: &Common) -> Result<Target, Response> {
    let base = c.branch.clone().unwrap_or_else(|| g.head_branch());
    if g.is_empty() {
        return Ok(Target {
            branch: c.new_branch.clone().unwrap_or(base),
            parent: None,
            old: None,
            was_empty: true,
        });
    }
    let Some(parent) = g.branch_commit(&base) else {
        return Err(error(
            st,
            404,
            &format!("branch does not exist [name: {base}]"),
        ));
    };
    let (branch, old) = match &c.new_branch {
        Some(nb) if *nb != base => {
            if g.branch_commit(nb).is_some() {
                return Err(error(
                    st,
                    422,
                    &format!("branch already exists [name: {nb}]"),
                ));
            }
            (nb.clone(), None)
        }
        _ => (base, Some(parent.clone())),
    };
    Ok(Target {
        branch,
        parent: Some(parent),
        old,
        was_empty: false,
    })
}

/// Build the commit and move the branch; `lock` is the repository lock
/// held since the checks. With `commit_ms` 0 everything happens under it.
/// Otherwise as Forgejo, which clones, commits and pushes without a lock:
/// `commit_ms` pass outside the lock, then the push loses (nothing applied)
/// when the branch moved meanwhile. Only a winner builds its commit (under
/// the lock, so its window is `commit_ms` plus that): a loser's objects
/// would be thrown away, a client cannot tell, and with a fleet racing that
/// git work was most of what the test suite spent.
pub(super) fn commit<'a>(
    st: &'a State,
    g: &Git,
    mut lock: MutexGuard<'a, ()>,
    t: &Target,
    changes: &[Change],
    message: &str,
    c: &Common,
) -> Result<String, Response> {
    if st.opts.commit_ms > 0 {
        drop(lock);
        std::thread::sleep(Duration::from_millis(st.opts.commit_ms));
        lock = st.git_lock.lock().unwrap();
        still_ahead(st, g, t)?;
    }
    let sha = g
        .write_commit(
            t.parent.as_deref(),
            changes,
            message,
            &c.author,
            &c.committer,
        )
        .map_err(|_| internal(st))?;
    g.move_branch(&t.branch, &sha, t.old.as_deref())
        .map_err(|_| internal(st))?;
    if t.was_empty && g.head_branch() != t.branch {
        let _ = g.set_head_branch(&t.branch);
    }
    st.stats.lock().unwrap().commits += 1;
    drop(lock);
    Ok(sha)
}

/// Lost when the branch moved since the checks (the racing forge).
fn still_ahead(st: &State, g: &Git, t: &Target) -> Result<(), Response> {
    if g.branch_commit(&t.branch) == t.old {
        return Ok(());
    }
    st.stats.lock().unwrap().lost_races += 1;
    Err(lost_race(st, &t.branch))
}

/// The answer to the loser of two commits on one branch: Forgejo's push is
/// non-fast-forward, answered 500 with the message hidden from non-admins,
/// or (newer versions, `race_403`) 403 `PushRejected`.
fn lost_race(st: &State, branch: &str) -> Response {
    if !st.opts.race_403 {
        return internal(st);
    }
    error(
        st,
        403,
        &format!(
            "PushRejected Error: ! [rejected] {branch} -> {branch} (fetch first): \
             the branch moved while this commit was made; retry"
        ),
    )
}

pub(super) fn write_one(
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
    let lock = st.git_lock.lock().unwrap();
    if update && g.is_empty() {
        return Err(error(st, 422, "repo is empty"));
    }
    let t = target(st, g, &c)?;
    let existing = t.parent.as_deref().and_then(|p| g.entry(p, &path));
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
    let change = Change {
        path: path.clone(),
        content: Some(content),
    };
    let commit = commit(st, g, lock, &t, &[change], &message, &c)?;
    let ctx = Ctx::after_commit(st, g, owner, name, &t.branch, &commit);
    let e = g.entry(&commit, &path).ok_or_else(|| internal(st))?;
    let resp = json!({
        "content": ctx.contents(&path, &e, true),
        "commit": ctx.commit_json(&commit),
        "verification": verification(),
    });
    Ok(Response::json(if update { 200 } else { 201 }, &resp))
}

pub(super) fn change_files(st: &State, req: &Request, g: &Git, owner: &str, name: &str) -> Res {
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
    let lock = st.git_lock.lock().unwrap();
    let t = target(st, g, &c)?;
    let paths: Vec<&str> = ops.iter().map(|o| o.path.as_str()).collect();
    let mut before = match t.parent.as_deref() {
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
    let commit = commit(st, g, lock, &t, &changes, &message, &c)?;
    let ctx = Ctx::after_commit(st, g, owner, name, &t.branch, &commit);
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
