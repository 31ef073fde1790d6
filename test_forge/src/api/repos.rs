//! Repositories: create, describe, delete; users and owners.

use super::*;

pub(crate) fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 100
        && n != "."
        && n != ".."
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

pub(super) fn create_repo(st: &State, req: &Request, owner: &str) -> Res {
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

/// `DELETE /repos/{owner}/{repo}`: 204. As Forgejo's `reqOwner`: only the
/// owner (the token's user, or an organisation it owns) may; otherwise 403.
pub(super) fn delete_repo(st: &State, owner: &str, name: &str) -> Res {
    if owner != st.opts.user && !st.opts.orgs.iter().any(|o| o == owner) {
        return Err(error(st, 403, "user should be the owner of the repo"));
    }
    let _lock = st.git_lock.lock().unwrap();
    let dir = st.repo_dir(owner, name);
    if !dir.join("HEAD").exists() {
        return Err(error(st, 404, "The target couldn't be found."));
    }
    std::fs::remove_dir_all(&dir).map_err(|_| internal(st))?;
    Ok(Response::bytes(204, Vec::new()))
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

pub(super) fn bot(st: &State) -> Person {
    Person {
        name: st.opts.user.clone(),
        email: format!("{}@noreply.localhost", st.opts.user),
    }
}

pub(super) fn user_json(st: &State) -> Value {
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

pub(super) fn owner_json(st: &State, owner: &str) -> Value {
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

pub(super) fn repo_json(st: &State, g: &Git, owner: &str, name: &str) -> Value {
    let base = st.base();
    let id: u64 = std::fs::read_to_string(g.dir.join("testforge-id"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let full = format!("{owner}/{name}");
    json!({
        "id": id, "owner": owner_json(st, owner), "name": name, "full_name": full,
        "description": "", "empty": g.is_empty(), "private": is_private(g),
        "fork": false, "template": false, "parent": null, "mirror": has_flag(g, "mirror"), "size": 0,
        "language": "", "languages_url": format!("{base}/api/v1/repos/{full}/languages"),
        "html_url": format!("{base}/{full}"), "url": format!("{base}/api/v1/repos/{full}"),
        "link": "", "ssh_url": format!("git@127.0.0.1:{full}.git"),
        "clone_url": format!("{base}/{full}.git"), "original_url": "", "website": "",
        "stars_count": 0, "forks_count": 0, "watchers_count": 1, "open_issues_count": 0,
        "open_pr_counter": 0, "release_counter": 0, "default_branch": g.head_branch(),
        "archived": has_flag(g, "archived"), "created_at": "2026-01-01T00:00:00Z",
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
