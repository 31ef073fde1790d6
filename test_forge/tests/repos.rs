//! `DELETE /repos/{owner}/{repo}` as Forgejo, and the stats route.

mod common;
use common::*;

#[test]
fn delete_repo_is_204_then_404_and_needs_the_owner_and_the_scope() {
    let f = forge(|o| o.read_only_token = Some("ro-token-0123456789".into()));
    f.create_repo(ORG, "gone", false);
    let path = format!("/api/v1/repos/{ORG}/gone");
    assert_eq!(call_as(&f, "DELETE", &path, "", None).status, 401);
    let r = call_as(&f, "DELETE", &path, "", Some("ro-token-0123456789"));
    assert_eq!(r.status, 403);
    assert!(r.body.contains("write:repository"), "{}", r.body);
    assert_eq!(call(&f, "DELETE", &path, "").status, 204);
    assert!(!f.bare_repo(ORG, "gone").exists());
    assert_eq!(call(&f, "GET", &path, "").status, 404);
    assert_eq!(call(&f, "DELETE", &path, "").status, 404);
    // The token's own repositories too; someone else's: 403.
    let user = f.user();
    f.create_repo(&user, "mine", true);
    assert_eq!(
        call(&f, "DELETE", &format!("/api/v1/repos/{user}/mine"), "").status,
        204
    );
    f.create_repo("someone-else", "theirs", false);
    let r = call(&f, "DELETE", "/api/v1/repos/someone-else/theirs", "");
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["message"], "user should be the owner of the repo");
    assert!(f.bare_repo("someone-else", "theirs").exists());
    // The name is free again.
    let r = call(
        &f,
        "POST",
        &format!("/api/v1/orgs/{ORG}/repos"),
        r#"{"name":"gone"}"#,
    );
    assert_eq!(r.status, 201);
}

#[test]
fn stats_count_requests_and_commits_and_need_no_token() {
    let f = forge(|_| {});
    f.create_repo(ORG, "r", false);
    call(&f, "GET", "/api/v1/user", "");
    call(&f, "POST", &contents("r"), &creates(&[("a", "a")], ""));
    call(&f, "POST", &contents("r"), &creates(&[("a", "a")], ""));
    let r = call_as(&f, "GET", "/_testforge/stats", "", None);
    assert_eq!(r.status, 200);
    let s = r.json();
    assert_eq!(s["requests"], 3, "{s}");
    assert_eq!(s["commits"], 1);
    assert_eq!(s["lost_races"], 0);
    assert_eq!(s["by_status"]["422"], 1);
    assert_eq!(
        call_as(&f, "DELETE", "/_testforge/stats", "", None).status,
        401
    );
    assert_eq!(call(&f, "DELETE", "/_testforge/stats", "").status, 200);
    assert_eq!(f.stats().requests, 0);
}
