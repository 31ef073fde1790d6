//! Reading: contents, raw files, and the JSON shapes of what was read.

use super::*;

/// The commit a `ref` names: a branch, else a full commit sha.
pub(super) fn resolve_ref(g: &Git, r: &str) -> Option<String> {
    if let Some(c) = g.branch_commit(r) {
        return Some(c);
    }
    if r.len() == 40 && r.chars().all(|c| c.is_ascii_hexdigit()) {
        return g.commit_info(r).ok().map(|i| i.sha);
    }
    None
}

pub(super) fn get_contents(
    st: &State,
    req: &Request,
    g: &Git,
    owner: &str,
    name: &str,
    path: &str,
) -> Res {
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

pub(super) fn get_raw(st: &State, req: &Request, g: &Git, path: &str) -> Res {
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
        content_type: "application/octet-stream".into(),
        body: data,
        headers: Vec::new(),
    })
}

pub(super) struct Ctx<'a> {
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
    pub(super) fn after_commit(
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
    pub(super) fn contents(&self, path: &str, e: &Entry, with_content: bool) -> Value {
        self.contents_known(path, e, with_content, None, None)
    }

    /// As [`Ctx::contents`], with the content and last commit already known
    /// (a file just written), which saves two git calls per file.
    pub(super) fn contents_known(
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

    pub(super) fn commit_json(&self, sha: &str) -> Value {
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

pub(super) fn verification() -> Value {
    json!({"verified": false, "reason": "gpg.error.not_signed_commit", "signature": "", "signer": null, "payload": ""})
}

pub(super) fn encode_path(p: &str) -> String {
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

/// `GET /repos/{o}/{r}/commits?sha=BRANCH&limit=N`: the newest commits
/// (default 30, at most 50 a page, as Forgejo pages); 409 on an empty repo.
pub(super) fn list_commits(st: &State, req: &Request, g: &Git) -> Res {
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

/// `GET /repos/{o}/{r}/git/commits/{sha}` (a commit sha or a branch): a
/// `Commit`, its message in `commit.message`; 404 when there is none.
/// `stat`, `verification` and `files` are accepted; files and stats are
/// always left empty.
pub(super) fn get_commit(st: &State, g: &Git, owner: &str, name: &str, r: &str) -> Res {
    let Some(sha) = resolve_ref(g, r) else {
        return Err(error(st, 404, &format!("sha not found [sha: {r}]")));
    };
    let ctx = Ctx::after_commit(st, g, owner, name, r, &sha);
    let rc = ctx.commit_json(&sha);
    if rc.is_null() {
        return Err(error(st, 404, &format!("sha not found [sha: {r}]")));
    }
    Ok(Response::json(
        200,
        &json!({
            "url": rc["url"], "sha": sha, "created": rc["created"], "html_url": rc["html_url"],
            "commit": {
                "url": rc["url"], "author": rc["author"], "committer": rc["committer"],
                "message": rc["message"], "tree": rc["tree"], "verification": verification(),
            },
            "author": null, "committer": null, "parents": rc["parents"],
            "files": [], "stats": {"total": 0, "additions": 0, "deletions": 0},
        }),
    ))
}
