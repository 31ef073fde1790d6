//! `new_branch` in writes, the default branch of an empty repository, and
//! the branch routes, as Forgejo answers them.

mod common;
use common::*;

fn repo_default_branch(f: &hero_usage_test_forge::TestForge, repo: &str) -> String {
    let r = call(f, "GET", &format!("/api/v1/repos/{ORG}/{repo}"), "");
    r.json()["default_branch"].as_str().unwrap().to_string()
}

#[test]
fn new_branch_commits_on_top_of_branch_and_leaves_it_alone() {
    let f = forge(|_| {});
    f.create_repo(ORG, "r", false);
    let main_before = f.head(ORG, "r", "main").unwrap();
    let body = creates(
        &[("nodes/n1/a", "a\n")],
        r#","branch":"main","new_branch":"usage/n1""#,
    );
    let r = call(&f, "POST", &contents("r"), &body);
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        f.head(ORG, "r", "main").unwrap(),
        main_before,
        "main unchanged"
    );
    let parents = &r.json()["commit"]["parents"];
    assert_eq!(parents[0]["sha"], main_before.as_str());
    assert!(f.file(ORG, "r", "usage/n1", "nodes/n1/a").is_some());
    assert!(f.file(ORG, "r", "usage/n1", "README.md").is_some());
    assert!(f.file(ORG, "r", "main", "nodes/n1/a").is_none());
    // Later commits go to the branch itself; reads name it with ref.
    let body = creates(&[("nodes/n1/b", "b\n")], r#","branch":"usage/n1""#);
    assert_eq!(call(&f, "POST", &contents("r"), &body).status, 201);
    let r = call(
        &f,
        "GET",
        &format!("{}/nodes/n1/b?ref=usage/n1", contents("r")),
        "",
    );
    assert_eq!(r.status, 200);
    // Single-file writes take new_branch too.
    let r = call(
        &f,
        "POST",
        &format!("{}/x", contents("r")),
        &format!(r#"{{"content":"{}","new_branch":"usage/n2"}}"#, b64("x")),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(f.file(ORG, "r", "usage/n2", "x").is_some());
}

#[test]
fn an_existing_new_branch_is_422_and_nothing_is_applied() {
    let f = forge(|_| {});
    f.create_repo(ORG, "r", false);
    let body = creates(&[("a", "a")], r#","new_branch":"usage/n1""#);
    assert_eq!(call(&f, "POST", &contents("r"), &body).status, 201);
    let head = f.head(ORG, "r", "usage/n1");
    let body = creates(&[("b", "b")], r#","new_branch":"usage/n1""#);
    let r = call(&f, "POST", &contents("r"), &body);
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        "branch already exists [name: usage/n1]"
    );
    assert_eq!(f.head(ORG, "r", "usage/n1"), head);
    // An unknown base branch is 404.
    let body = creates(&[("c", "c")], r#","branch":"nope","new_branch":"usage/n3""#);
    assert_eq!(call(&f, "POST", &contents("r"), &body).status, 404);
}

#[test]
fn in_an_empty_repository_the_first_commits_branch_becomes_the_default_branch() {
    let f = forge(|_| {});
    // First commit to a node's branch: it becomes the default (Forgejo sets
    // default_branch to the new branch of the first commit).
    f.create_repo(ORG, "e1", true);
    assert_eq!(repo_default_branch(&f, "e1"), "main");
    let body = creates(
        &[("nodes/n1/a", "a")],
        r#","branch":"main","new_branch":"usage/n1""#,
    );
    assert_eq!(call(&f, "POST", &contents("e1"), &body).status, 201);
    assert_eq!(repo_default_branch(&f, "e1"), "usage/n1");
    assert!(
        f.head(ORG, "e1", "main").is_none(),
        "main was never created"
    );
    // Same with `branch` alone.
    f.create_repo(ORG, "e2", true);
    let body = creates(&[("a", "a")], r#","branch":"usage/n2""#);
    assert_eq!(call(&f, "POST", &contents("e2"), &body).status, 201);
    assert_eq!(repo_default_branch(&f, "e2"), "usage/n2");
    // The client's remedy: a first commit on main, then node branches.
    f.create_repo(ORG, "e3", true);
    let body = creates(&[("README.md", "billing\n")], r#","branch":"main""#);
    assert_eq!(call(&f, "POST", &contents("e3"), &body).status, 201);
    let body = creates(
        &[("nodes/n1/a", "a")],
        r#","branch":"main","new_branch":"usage/n1""#,
    );
    assert_eq!(call(&f, "POST", &contents("e3"), &body).status, 201);
    assert_eq!(repo_default_branch(&f, "e3"), "main");
}

#[test]
fn branches_are_listed_paged_and_read_one_by_one() {
    let f = forge(|_| {});
    f.create_repo(ORG, "e", true);
    let r = call(&f, "GET", &format!("/api/v1/repos/{ORG}/e/branches"), "");
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "[]"),
        "an empty repo has none"
    );
    f.create_repo(ORG, "r", false);
    for i in 0..3 {
        let body = creates(&[("a", "a")], &format!(r#","new_branch":"usage/n{i}""#));
        assert_eq!(call(&f, "POST", &contents("r"), &body).status, 201);
    }
    let r = call(&f, "GET", &format!("/api/v1/repos/{ORG}/r/branches"), "");
    let names: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["main", "usage/n0", "usage/n1", "usage/n2"]);
    assert!(r.head.contains("X-Total-Count: 4"), "{}", r.head);
    let r = call(
        &f,
        "GET",
        &format!("/api/v1/repos/{ORG}/r/branches?page=2&limit=3"),
        "",
    );
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    let r = call(
        &f,
        "GET",
        &format!("/api/v1/repos/{ORG}/r/branches/usage/n1"),
        "",
    );
    assert_eq!(r.status, 200);
    let b = r.json();
    assert_eq!(b["name"], "usage/n1");
    assert_eq!(
        b["commit"]["id"],
        f.head(ORG, "r", "usage/n1").unwrap().as_str()
    );
    let r = call(
        &f,
        "GET",
        &format!("/api/v1/repos/{ORG}/r/branches/usage%2Fn2"),
        "",
    );
    assert_eq!(r.status, 200, "an encoded slash works too");
    let r = call(
        &f,
        "GET",
        &format!("/api/v1/repos/{ORG}/r/branches/usage/nope"),
        "",
    );
    assert_eq!(r.status, 404);
    assert!(r.body.contains("branch does not exist [name: usage/nope]"));
}
