//! Branches: `GET /repos/{owner}/{repo}/branches` (paged as Forgejo: `page`
//! from 1, `limit` default 30, at most 50, `X-Total-Count`) and
//! `GET .../branches/{name}` (the name may hold slashes).

use super::*;

const DEFAULT_LIMIT: usize = 30;
const MAX_LIMIT: usize = 50;

pub(super) fn list_branches(st: &State, req: &Request, g: &Git, owner: &str, name: &str) -> Res {
    let all = g.branches();
    let num = |k: &str| req.query(k).and_then(|v| v.parse::<usize>().ok());
    let page = num("page").unwrap_or(1).max(1);
    let limit = num("limit")
        .filter(|l| *l > 0)
        .unwrap_or(DEFAULT_LIMIT)
        .min(MAX_LIMIT);
    let list: Vec<Value> = all
        .iter()
        .skip((page - 1).saturating_mul(limit))
        .take(limit)
        .map(|(b, c)| branch_json(st, g, owner, name, b, c))
        .collect();
    let mut r = Response::json(200, &Value::Array(list));
    r.headers
        .push(("X-Total-Count".into(), all.len().to_string()));
    Ok(r)
}

pub(super) fn get_branch(st: &State, g: &Git, owner: &str, name: &str, branch: &str) -> Res {
    match g.branch_commit(branch) {
        Some(c) => Ok(Response::json(
            200,
            &branch_json(st, g, owner, name, branch, &c),
        )),
        None => {
            let mut r = error(st, 404, "The target couldn't be found.");
            let body = json!({
                "message": "The target couldn't be found.",
                "url": swagger(st),
                "errors": [format!("branch does not exist [name: {branch}]")],
            });
            r.body = serde_json::to_vec(&body).expect("json");
            Err(r)
        }
    }
}

/// A `Branch`: unprotected, the token's user may push and merge.
fn branch_json(st: &State, g: &Git, owner: &str, name: &str, branch: &str, commit: &str) -> Value {
    let base = st.base();
    let i = g.commit_info(commit).ok();
    let who = |p: Option<&(String, String, String)>| {
        p.map(|(n, e, _)| json!({"name": n, "email": e, "username": ""}))
            .unwrap_or(Value::Null)
    };
    json!({
        "name": branch,
        "commit": {
            "id": commit,
            "message": i.as_ref().map(|i| i.message.clone()).unwrap_or_default(),
            "url": format!("{base}/{owner}/{name}/commit/{commit}"),
            "author": who(i.as_ref().map(|i| &i.author)),
            "committer": who(i.as_ref().map(|i| &i.committer)),
            "verification": null,
            "timestamp": i.as_ref().map(|i| i.committer.2.clone()).unwrap_or_default(),
            "added": null, "removed": null, "modified": null,
        },
        "protected": false, "required_approvals": 0, "enable_status_check": false,
        "status_check_contexts": [], "user_can_push": true, "user_can_merge": true,
        "effective_branch_protection_name": "",
    })
}
