//! The Forgejo client against the in-process test forge (real HTTP on
//! loopback), the forge's answers against the field list, and git-level
//! checks of what the bare repositories hold.

use crate::support::{git, git_cmd};
use hero_usage::error::Kind;
use hero_usage::forgejo::{
    ClientConfig, CommitOptions, FileChange, FileOp, ForgeError, ForgejoClient, RepoRef,
};
use hero_usage::secret::Secret;
use hero_usage_test_forge::{Fault, FaultAction, ForgeOptions, TestForge};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

const ORG: &str = "lhumina_code";
const TOKEN: &str = "tok-5ecret-9f8e7d6c5b4a39281706";

fn forge_with(f: impl FnOnce(&mut ForgeOptions)) -> TestForge {
    let mut o = ForgeOptions {
        token: Some(TOKEN.to_string()),
        ..ForgeOptions::default()
    };
    f(&mut o);
    TestForge::start(o)
}

fn forge() -> TestForge {
    forge_with(|_| {})
}

fn client_for(url: &str, token: &str) -> ForgejoClient {
    let mut cfg = ClientConfig::new(url, Secret::new(token.to_string()));
    cfg.connect_timeout = Duration::from_secs(5);
    cfg.timeout = Duration::from_secs(30);
    ForgejoClient::new(cfg).expect("client")
}

fn client(f: &TestForge) -> ForgejoClient {
    client_for(&f.base_url(), &f.token())
}

fn opts(msg: &str) -> CommitOptions {
    CommitOptions {
        branch: None,
        message: msg.to_string(),
        author_name: "node-7".to_string(),
        author_email: "node-7@hero.example".to_string(),
        ..CommitOptions::default()
    }
}

fn head(f: &TestForge, repo: &str) -> Option<String> {
    f.head(ORG, repo, "main")
}

// ------------------------------------------------------------------ field list

fn fields() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/forgejo_fields.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn assert_fields(def: &str, v: &Value) {
    let list = fields();
    let names = list[def]
        .as_array()
        .unwrap_or_else(|| panic!("{def} not in field list"));
    for n in names {
        let n = n.as_str().unwrap();
        assert!(
            v.get(n).is_some(),
            "{def} answer lacks field {n:?}: {}",
            serde_json::to_string(v)
                .unwrap()
                .chars()
                .take(400)
                .collect::<String>()
        );
    }
}

#[test]
fn field_list_exists_in_the_real_swagger() {
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/forgejo/swagger.v1.json");
    let Ok(text) = std::fs::read_to_string(&spec) else {
        eprintln!("{} not present: skipping the swagger check", spec.display());
        return;
    };
    let spec: Value = serde_json::from_str(&text).unwrap();
    let list = fields();
    for (def, names) in list.as_object().unwrap() {
        if def.starts_with('_') {
            continue;
        }
        let props = &spec["definitions"][def]["properties"];
        assert!(props.is_object(), "swagger has no definition {def}");
        for n in names.as_array().unwrap() {
            let n = n.as_str().unwrap();
            assert!(props.get(n).is_some(), "swagger {def} has no field {n}");
        }
    }
}

/// A raw call, to see the forge's answer as it is.
fn raw(f: &TestForge, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}/api/v1{path}", f.base_url());
    let auth = format!("token {}", f.token());
    let resp = match body {
        None => agent.get(&url).header("Authorization", &auth).call(),
        Some(b) => {
            let data = serde_json::to_vec(&b).unwrap();
            let r = match method {
                "POST" => agent.post(&url),
                _ => agent.put(&url),
            };
            r.header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(&data[..])
        }
    };
    let mut resp = resp.expect("request");
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn forge_answers_carry_the_listed_fields() {
    let f = forge();
    f.create_repo(ORG, "fields", false);
    let (s, repo) = raw(&f, "GET", "/repos/lhumina_code/fields", None);
    assert_eq!(s, 200);
    assert_fields("Repository", &repo);
    assert_fields("User", &repo["owner"]);
    let (s, user) = raw(&f, "GET", "/user", None);
    assert_eq!(s, 200);
    assert_fields("User", &user);

    let (s, c) = raw(
        &f,
        "GET",
        "/repos/lhumina_code/fields/contents/README.md",
        None,
    );
    assert_eq!(s, 200);
    assert_fields("ContentsResponse", &c);

    let body = serde_json::json!({"content": "aGk=", "message": "m"});
    let (s, fr) = raw(
        &f,
        "POST",
        "/repos/lhumina_code/fields/contents/a.txt",
        Some(body),
    );
    assert_eq!(s, 201);
    assert_fields("FileResponse", &fr);
    assert_fields("ContentsResponse", &fr["content"]);
    assert_fields("FileCommitResponse", &fr["commit"]);

    let body =
        serde_json::json!({"files": [{"operation": "create", "path": "b.txt", "content": "aGk="}]});
    let (s, fs) = raw(
        &f,
        "POST",
        "/repos/lhumina_code/fields/contents",
        Some(body),
    );
    assert_eq!(s, 201);
    assert_fields("FilesResponse", &fs);
    assert_fields("ContentsResponse", &fs["files"][0]);
    assert_fields("FileCommitResponse", &fs["commit"]);

    let (s, e) = raw(&f, "GET", "/repos/lhumina_code/nope", None);
    assert_eq!(s, 404);
    assert_fields("APIError", &e);
    assert!(e["errors"].is_array(), "404 carries errors");
    let body = serde_json::json!({"content": "aGk=", "sha": "0"});
    let (s, e) = raw(
        &f,
        "PUT",
        "/repos/lhumina_code/fields/contents/a.txt",
        Some(body),
    );
    assert_eq!(s, 409);
    assert_fields("APIError", &e);
}

// ------------------------------------------------------------------ repositories

#[test]
fn user_and_repository_calls() {
    let f = forge();
    let c = client(&f);
    assert_eq!(c.current_user().unwrap(), "billing-bot");

    let r = c.create_repo(&RepoRef::new(ORG, "billing")).unwrap();
    assert_eq!(r.full_name, "lhumina_code/billing");
    assert!(r.empty && r.private);
    assert_eq!(r.default_branch, "main");
    assert_eq!(r.owner_login, ORG);
    assert!(f.bare_repo(ORG, "billing").join("HEAD").exists());
    let again = c.create_repo(&RepoRef::new(ORG, "billing")).unwrap_err();
    assert!(matches!(again, ForgeError::AlreadyExists(_)), "{again:?}");
    assert!(again.to_string().contains("same name already exists"));

    let mine = c.create_repo(&RepoRef::new("billing-bot", "own")).unwrap();
    assert_eq!(mine.owner_login, "billing-bot");
    let got = c.get_repo(&RepoRef::new("billing-bot", "own")).unwrap();
    assert_eq!(got, mine);

    let e = c
        .create_repo(&RepoRef::new("no-such-org", "x"))
        .unwrap_err();
    assert!(matches!(e, ForgeError::NotFound(_)), "{e:?}");
    let e = c.get_repo(&RepoRef::new(ORG, "missing")).unwrap_err();
    assert!(matches!(e, ForgeError::NotFound(_)), "{e:?}");
    assert_eq!(e.kind(), Kind::Config);

    let e = c.create_repo(&RepoRef::new(ORG, "bad name!")).unwrap_err();
    assert!(
        matches!(e, ForgeError::Invalid { status: 422, .. }),
        "{e:?}"
    );

    let log = f.requests();
    assert!(
        log.iter()
            .any(|l| l.method == "POST" && l.path == "/api/v1/user/repos" && l.status == 201)
    );
    assert!(
        log.iter()
            .any(|l| l.path == "/api/v1/orgs/lhumina_code/repos" && l.status == 409)
    );
}

// ------------------------------------------------------------------ reading

#[test]
fn read_file_empty_repo_missing_present_and_large() {
    let f = forge_with(|o| o.max_blob_size = 16);
    let c = client(&f);
    f.create_repo(ORG, "r", true);
    assert!(c.get_repo(&RepoRef::new(ORG, "r")).unwrap().empty);
    assert_eq!(
        c.read_file(&RepoRef::new(ORG, "r"), "nodes/n/usage.otoml", None)
            .unwrap(),
        None
    );
    assert_eq!(
        c.read_file(&RepoRef::new(ORG, "r"), "x", Some("main"))
            .unwrap(),
        None
    );

    c.create_file(
        &RepoRef::new(ORG, "r"),
        "small.txt",
        b"tiny\n",
        &opts("small"),
    )
    .unwrap();
    let big = b"0123456789abcdef0123456789abcdef-more-than-16-bytes\n".to_vec();
    c.create_file(
        &RepoRef::new(ORG, "r"),
        "dir/big file.txt",
        &big,
        &opts("big"),
    )
    .unwrap();
    assert!(!c.get_repo(&RepoRef::new(ORG, "r")).unwrap().empty);

    let small = c
        .read_file(&RepoRef::new(ORG, "r"), "small.txt", None)
        .unwrap()
        .unwrap();
    assert_eq!(small.content, b"tiny\n");
    assert_eq!(
        small.sha,
        git(&f.bare_repo(ORG, "r"), &["rev-parse", "main:small.txt"]).trim()
    );
    let b = c
        .read_file(&RepoRef::new(ORG, "r"), "dir/big file.txt", Some("main"))
        .unwrap()
        .unwrap();
    assert_eq!(b.content, big, "fell back to /raw/");
    assert!(
        f.requests().iter().any(|l| l
            .path
            .starts_with("/api/v1/repos/lhumina_code/r/raw/dir/big%20file.txt")),
        "{:?}",
        f.requests()
    );
    assert_eq!(
        c.read_file(&RepoRef::new(ORG, "r"), "missing.txt", None)
            .unwrap(),
        None
    );
    assert_eq!(
        c.read_file(&RepoRef::new(ORG, "r"), "small.txt", Some("no-branch"))
            .unwrap(),
        None
    );
    let e = c
        .read_file(&RepoRef::new(ORG, "r"), "dir", None)
        .unwrap_err();
    assert!(matches!(e, ForgeError::NotAFile(_)), "{e:?}");
}

// ------------------------------------------------------------------ writing, and git agrees

#[test]
fn commits_through_the_api_are_real_git_commits() {
    let f = forge();
    let c = client(&f);
    f.create_repo(ORG, "g", true);
    let bare = f.bare_repo(ORG, "g");

    let c1 = c
        .create_file(
            &RepoRef::new(ORG, "g"),
            "nodes/n1/usage_2026-11-26-16.otoml",
            b"O:\n",
            &opts("first"),
        )
        .unwrap();
    let sha1 = c
        .read_file(
            &RepoRef::new(ORG, "g"),
            "nodes/n1/usage_2026-11-26-16.otoml",
            None,
        )
        .unwrap()
        .unwrap()
        .sha;
    let c2 = c
        .update_file(
            &RepoRef::new(ORG, "g"),
            "nodes/n1/usage_2026-11-26-16.otoml",
            b"O:\n# two\n",
            &sha1,
            &opts("second"),
        )
        .unwrap();
    let sha2 = c
        .read_file(
            &RepoRef::new(ORG, "g"),
            "nodes/n1/usage_2026-11-26-16.otoml",
            None,
        )
        .unwrap()
        .unwrap()
        .sha;
    let c3 = c
        .change_files(
            &RepoRef::new(ORG, "g"),
            &[
                FileChange {
                    operation: FileOp::Update,
                    path: "nodes/n1/usage_2026-11-26-16.otoml".into(),
                    content: b"O:\n# three\n".to_vec(),
                    sha: Some(sha2),
                },
                FileChange {
                    operation: FileOp::Create,
                    path: "nodes/n1/usage_2026-11-26-17.otoml".into(),
                    content: b"O:\n# new\n".to_vec(),
                    sha: None,
                },
            ],
            &opts("third"),
        )
        .unwrap();

    let log = git(&bare, &["log", "--format=%H %P|%an|%ae|%s", "main"]);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert_eq!(
        lines[0],
        format!(
            "{} {}|node-7|node-7@hero.example|third",
            c3.commit_sha, c2.commit_sha
        )
    );
    assert_eq!(
        lines[1],
        format!(
            "{} {}|node-7|node-7@hero.example|second",
            c2.commit_sha, c1.commit_sha
        )
    );
    assert_eq!(
        lines[2],
        format!("{} |node-7|node-7@hero.example|first", c1.commit_sha)
    );
    assert_eq!(
        git(
            &bare,
            &[
                "show",
                &format!("{}:nodes/n1/usage_2026-11-26-16.otoml", c3.commit_sha)
            ]
        ),
        "O:\n# three\n"
    );
    assert_eq!(
        git(&bare, &["show", "main:nodes/n1/usage_2026-11-26-17.otoml"]),
        "O:\n# new\n"
    );
    assert_eq!(
        git(
            &bare,
            &[
                "show",
                &format!("{}:nodes/n1/usage_2026-11-26-16.otoml", c2.commit_sha)
            ]
        ),
        "O:\n# two\n"
    );
    let changed = git(&bare, &["show", "--name-only", "--format=", &c3.commit_sha]);
    assert_eq!(
        changed.lines().count(),
        2,
        "one commit for both files: {changed}"
    );
    git(&bare, &["fsck", "--strict"]);

    // A clone shows the same history.
    let tmp = crate::support::temp_dir();
    let out = git_cmd(tmp.path())
        .args(["clone", "-q"])
        .arg(&bare)
        .arg(tmp.path().join("w"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text =
        std::fs::read_to_string(tmp.path().join("w/nodes/n1/usage_2026-11-26-17.otoml")).unwrap();
    assert_eq!(text, "O:\n# new\n");

    // Delete in a many-files commit.
    let sha = c
        .read_file(
            &RepoRef::new(ORG, "g"),
            "nodes/n1/usage_2026-11-26-17.otoml",
            None,
        )
        .unwrap()
        .unwrap()
        .sha;
    let c4 = c
        .change_files(
            &RepoRef::new(ORG, "g"),
            &[FileChange {
                operation: FileOp::Delete,
                path: "nodes/n1/usage_2026-11-26-17.otoml".into(),
                content: vec![],
                sha: Some(sha),
            }],
            &opts("delete"),
        )
        .unwrap();
    assert_eq!(f.head(ORG, "g", "main").unwrap(), c4.commit_sha);
    assert_eq!(
        c.read_file(
            &RepoRef::new(ORG, "g"),
            "nodes/n1/usage_2026-11-26-17.otoml",
            None
        )
        .unwrap(),
        None
    );
}

#[test]
fn single_file_errors() {
    let f = forge();
    let c = client(&f);
    f.create_repo(ORG, "s", false);
    let e = c
        .create_file(&RepoRef::new(ORG, "s"), "README.md", b"x", &opts("dup"))
        .unwrap_err();
    assert!(matches!(e, ForgeError::AlreadyExists(_)), "{e:?}");
    assert!(e.is_retryable());
    let readme = c
        .read_file(&RepoRef::new(ORG, "s"), "README.md", None)
        .unwrap()
        .unwrap();
    let e = c
        .update_file(
            &RepoRef::new(ORG, "s"),
            "README.md",
            b"x",
            "0000",
            &opts("stale"),
        )
        .unwrap_err();
    assert!(matches!(e, ForgeError::StaleSha(_)), "{e:?}");
    assert!(e.to_string().contains("sha does not match"), "{e}");
    assert_eq!(e.kind(), Kind::TempFail);
    let e = c
        .update_file(
            &RepoRef::new(ORG, "s"),
            "nope.txt",
            b"x",
            &readme.sha,
            &opts("missing"),
        )
        .unwrap_err();
    assert!(matches!(e, ForgeError::Server { status: 500, .. }), "{e:?}");
    assert!(e.is_retryable());
    let mut o = opts("branch");
    o.branch = Some("no-such-branch".into());
    let e = c
        .create_file(&RepoRef::new(ORG, "s"), "n.txt", b"x", &o)
        .unwrap_err();
    assert!(matches!(e, ForgeError::NotFound(_)), "{e:?}");
    let e = c
        .create_file(&RepoRef::new(ORG, "nope"), "n.txt", b"x", &opts("x"))
        .unwrap_err();
    assert!(matches!(e, ForgeError::NotFound(_)), "{e:?}");
}

#[test]
fn legacy_422_for_a_stale_sha() {
    let f = forge_with(|o| o.legacy_422 = true);
    let c = client(&f);
    f.create_repo(ORG, "l", false);
    let e = c
        .update_file(
            &RepoRef::new(ORG, "l"),
            "README.md",
            b"x",
            "1234",
            &opts("stale"),
        )
        .unwrap_err();
    assert!(matches!(e, ForgeError::StaleSha(_)), "{e:?}");
    assert!(
        f.requests()
            .iter()
            .any(|l| l.method == "PUT" && l.status == 422)
    );
    let e = c
        .change_files(
            &RepoRef::new(ORG, "l"),
            &[FileChange {
                operation: FileOp::Update,
                path: "README.md".into(),
                content: b"y".to_vec(),
                sha: Some("1234".into()),
            }],
            &opts("stale"),
        )
        .unwrap_err();
    assert!(matches!(e, ForgeError::StaleSha(_)), "{e:?}");
}

#[test]
fn many_files_is_atomic_and_checks_every_operation() {
    let f = forge();
    let c = client(&f);
    f.create_repo(ORG, "m", false);
    let before = head(&f, "m").unwrap();
    let readme = c
        .read_file(&RepoRef::new(ORG, "m"), "README.md", None)
        .unwrap()
        .unwrap();
    let create = |p: &str| FileChange {
        operation: FileOp::Create,
        path: p.into(),
        content: b"c".to_vec(),
        sha: None,
    };
    let update = |p: &str, sha: Option<&str>| FileChange {
        operation: FileOp::Update,
        path: p.into(),
        content: b"u".to_vec(),
        sha: sha.map(str::to_string),
    };
    // Create on an existing path: 422, nothing applied.
    let e = c
        .change_files(
            &RepoRef::new(ORG, "m"),
            &[create("new.txt"), create("README.md")],
            &opts("x"),
        )
        .unwrap_err();
    assert!(matches!(e, ForgeError::AlreadyExists(_)), "{e:?}");
    // Stale sha: 409, nothing applied.
    let e = c
        .change_files(
            &RepoRef::new(ORG, "m"),
            &[create("new.txt"), update("README.md", Some("abc"))],
            &opts("x"),
        )
        .unwrap_err();
    assert!(matches!(e, ForgeError::StaleSha(_)), "{e:?}");
    // Missing sha: 422.
    let e = c
        .change_files(
            &RepoRef::new(ORG, "m"),
            &[update("README.md", None)],
            &opts("x"),
        )
        .unwrap_err();
    assert!(
        matches!(e, ForgeError::Invalid { status: 422, .. }),
        "{e:?}"
    );
    // Update of a missing path: 500.
    let e = c
        .change_files(
            &RepoRef::new(ORG, "m"),
            &[create("new.txt"), update("gone.txt", Some(&readme.sha))],
            &opts("x"),
        )
        .unwrap_err();
    assert!(matches!(e, ForgeError::Server { status: 500, .. }), "{e:?}");
    // Empty list: 422.
    let e = c
        .change_files(&RepoRef::new(ORG, "m"), &[], &opts("x"))
        .unwrap_err();
    assert!(
        matches!(e, ForgeError::Invalid { status: 422, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("[Files]: Required"), "{e}");
    assert_eq!(head(&f, "m").unwrap(), before, "nothing applied");
    assert_eq!(
        c.read_file(&RepoRef::new(ORG, "m"), "new.txt", None)
            .unwrap(),
        None
    );
}

#[test]
fn no_multi_file_server_answers_405_unsupported() {
    let f = forge_with(|o| o.no_multi_file = true);
    let c = client(&f);
    f.create_repo(ORG, "old", true);
    let e = c
        .change_files(
            &RepoRef::new(ORG, "old"),
            &[FileChange {
                operation: FileOp::Create,
                path: "a".into(),
                content: b"a".to_vec(),
                sha: None,
            }],
            &opts("x"),
        )
        .unwrap_err();
    assert!(matches!(e, ForgeError::Unsupported(_)), "{e:?}");
    assert!(f.requests().iter().any(|l| l.status == 405));
    // The one-file fallback works.
    c.create_file(&RepoRef::new(ORG, "old"), "a", b"a", &opts("x"))
        .unwrap();
    // A 404 on the many-files call means unsupported too.
    f.inject(Fault::fail("POST", "/contents", 404, "not found"));
    let e = c
        .change_files(&RepoRef::new(ORG, "old"), &[], &opts("x"))
        .unwrap_err();
    assert!(matches!(e, ForgeError::Unsupported(_)), "{e:?}");
}

#[test]
fn empty_repository_behaviours() {
    let f = forge();
    let c = client(&f);
    f.create_repo(ORG, "e", true);
    let e = c
        .update_file(&RepoRef::new(ORG, "e"), "a.txt", b"x", "abc", &opts("x"))
        .unwrap_err();
    assert!(
        matches!(e, ForgeError::Invalid { status: 422, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("repo is empty"), "{e}");
    let (s, v) = raw(&f, "GET", "/repos/lhumina_code/e/contents/any/path", None);
    assert_eq!((s, v), (200, serde_json::json!([])));
    // Only creates: works and makes the first (parentless) commit on main.
    let r = c
        .change_files(
            &RepoRef::new(ORG, "e"),
            &[FileChange {
                operation: FileOp::Create,
                path: "nodes/a/usage.otoml".into(),
                content: b"O:\n".to_vec(),
                sha: None,
            }],
            &opts("first"),
        )
        .unwrap();
    let bare = f.bare_repo(ORG, "e");
    assert_eq!(git(&bare, &["rev-parse", "main"]).trim(), r.commit_sha);
    assert_eq!(git(&bare, &["log", "--format=%P", "main"]).trim(), "");
    assert!(!c.get_repo(&RepoRef::new(ORG, "e")).unwrap().empty);

    // create_file on an empty repo creates the branch too.
    f.create_repo(ORG, "e2", true);
    let r = c
        .create_file(&RepoRef::new(ORG, "e2"), "x.txt", b"x", &opts("first"))
        .unwrap();
    assert_eq!(f.head(ORG, "e2", "main").unwrap(), r.commit_sha);
}

// ------------------------------------------------------------------ auth and faults

#[test]
fn auth_failures() {
    let f = forge_with(|o| o.read_only_token = Some("read-only-token-0123456789".into()));
    f.create_repo(ORG, "a", false);
    let bad = client_for(&f.base_url(), "wrong-token-abcdefghijkl");
    let e = bad.get_repo(&RepoRef::new(ORG, "a")).unwrap_err();
    assert!(matches!(e, ForgeError::Unauthorized(_)), "{e:?}");
    assert_eq!(e.kind(), Kind::NoPerm);
    assert!(!e.is_retryable());

    let ro = client_for(&f.base_url(), "read-only-token-0123456789");
    assert!(
        ro.read_file(&RepoRef::new(ORG, "a"), "README.md", None)
            .unwrap()
            .is_some()
    );
    let e = ro
        .create_file(&RepoRef::new(ORG, "a"), "n.txt", b"x", &opts("x"))
        .unwrap_err();
    assert!(matches!(e, ForgeError::Forbidden(_)), "{e:?}");
    assert!(e.to_string().contains("write:repository"), "{e}");
    assert_eq!(e.kind(), Kind::NoPerm);
    let e = ro.create_repo(&RepoRef::new(ORG, "new")).unwrap_err();
    assert!(matches!(e, ForgeError::Forbidden(_)), "{e:?}");

    // No credentials at all: 401 token is required.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .get(format!("{}/api/v1/user", f.base_url()))
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(
        r.body_mut()
            .read_to_string()
            .unwrap()
            .contains("token is required")
    );

    // 403 PushRejected (v16+) is a race, retried.
    let c = client(&f);
    f.inject(Fault::fail(
        "POST",
        "/contents",
        403,
        "PushRejected: another push won",
    ));
    let e = c
        .create_file(&RepoRef::new(ORG, "a"), "n.txt", b"x", &opts("x"))
        .unwrap_err();
    assert!(matches!(e, ForgeError::PushRejected(_)), "{e:?}");
    assert!(e.is_retryable());
    assert_eq!(e.kind(), Kind::TempFail);
}

#[test]
fn injected_faults() {
    let f = forge();
    f.create_repo(ORG, "fx", false);
    let c = client(&f);
    let readme = c
        .read_file(&RepoRef::new(ORG, "fx"), "README.md", None)
        .unwrap()
        .unwrap();

    // Fail with 503, twice, then normal.
    f.inject(Fault::fail("GET", "/repos/lhumina_code/fx", 503, "maintenance").times(2));
    for _ in 0..2 {
        let e = c.get_repo(&RepoRef::new(ORG, "fx")).unwrap_err();
        assert!(matches!(e, ForgeError::Server { status: 503, .. }), "{e:?}");
        assert!(e.to_string().contains("maintenance"));
    }
    c.get_repo(&RepoRef::new(ORG, "fx")).unwrap();

    // Drop before applying: network error, nothing committed.
    let before = head(&f, "fx").unwrap();
    f.inject(Fault::new(
        Some("PUT"),
        "/contents/README.md",
        FaultAction::DropBefore,
    ));
    let e = c
        .update_file(
            &RepoRef::new(ORG, "fx"),
            "README.md",
            b"v2",
            &readme.sha,
            &opts("x"),
        )
        .unwrap_err();
    assert!(matches!(e, ForgeError::Network(_)), "{e:?}");
    assert!(e.is_retryable());
    assert_eq!(head(&f, "fx").unwrap(), before);

    // Apply, then drop: the reply is lost but the commit is there.
    f.inject(Fault::new(
        Some("PUT"),
        "/contents/README.md",
        FaultAction::DropAfter,
    ));
    let e = c
        .update_file(
            &RepoRef::new(ORG, "fx"),
            "README.md",
            b"v2",
            &readme.sha,
            &opts("x"),
        )
        .unwrap_err();
    assert!(matches!(e, ForgeError::Network(_)), "{e:?}");
    assert_ne!(head(&f, "fx").unwrap(), before);
    assert_eq!(f.file(ORG, "fx", "main", "README.md").unwrap(), b"v2");

    // A concurrent writer commits first: the sha the client read is stale.
    let now = c
        .read_file(&RepoRef::new(ORG, "fx"), "README.md", None)
        .unwrap()
        .unwrap();
    f.inject(Fault::new(
        Some("POST"),
        "/contents",
        FaultAction::ConcurrentCommit {
            path: "README.md".into(),
            content: b"theirs".to_vec(),
        },
    ));
    let change = FileChange {
        operation: FileOp::Update,
        path: "README.md".into(),
        content: b"mine".to_vec(),
        sha: Some(now.sha),
    };
    let e = c
        .change_files(
            &RepoRef::new(ORG, "fx"),
            std::slice::from_ref(&change),
            &opts("x"),
        )
        .unwrap_err();
    assert!(matches!(e, ForgeError::StaleSha(_)), "{e:?}");
    assert_eq!(f.file(ORG, "fx", "main", "README.md").unwrap(), b"theirs");

    // Delay past the client's deadline: timeout.
    let mut cfg = ClientConfig::new(&f.base_url(), Secret::new(f.token()));
    cfg.timeout = Duration::from_millis(300);
    let slow = ForgejoClient::new(cfg).unwrap();
    f.inject(Fault::new(
        Some("GET"),
        "/user",
        FaultAction::Delay(Duration::from_millis(1500)),
    ));
    let e = slow.current_user().unwrap_err();
    assert!(matches!(e, ForgeError::Timeout(_)), "{e:?}");
    assert_eq!(e.kind(), Kind::TempFail);

    // The log saw it all, with statuses, and never the token.
    let log = f.requests();
    assert!(
        log.iter()
            .any(|l| l.fault.as_deref() == Some("drop_before") && l.status == 0)
    );
    assert!(
        log.iter()
            .any(|l| l.fault.as_deref() == Some("drop_after") && l.status == 0)
    );
    assert!(
        log.iter()
            .any(|l| l.fault.as_deref() == Some("concurrent_commit") && l.status == 409)
    );
    assert!(
        log.iter()
            .any(|l| l.fault.as_deref() == Some("fail") && l.status == 503)
    );
    assert!(!format!("{log:?}").contains(TOKEN));
    assert!(f.pending_faults().is_empty());
}

#[test]
fn connection_refused_is_a_network_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = client_for(&format!("http://127.0.0.1:{port}"), TOKEN);
    let e = c.current_user().unwrap_err();
    assert!(matches!(e, ForgeError::Network(_)), "{e:?}");
    assert_eq!(e.kind(), Kind::TempFail);
}

// ------------------------------------------------------------------ URL rules

#[test]
fn url_rules_and_sub_path() {
    let cfg = |url: &str, insecure: bool| {
        let mut c = ClientConfig::new(url, Secret::new(TOKEN.into()));
        c.insecure_http = insecure;
        ForgejoClient::new(c)
    };
    let e = cfg("http://forge.example.org", false).unwrap_err();
    assert!(matches!(e, ForgeError::Config(_)), "{e:?}");
    assert_eq!(e.kind(), Kind::Config);
    assert!(e.to_string().contains("https"), "{e}");
    assert!(cfg("http://forge.example.org", true).is_ok());
    assert!(cfg("https://forge.example.org/sub/", false).is_ok());
    assert!(cfg("http://localhost:3000/", false).is_ok());
    assert!(cfg("http://[::1]:3000", false).is_ok());
    let e = cfg(&format!("https://x:{TOKEN}@forge.example.org"), false).unwrap_err();
    assert!(!format!("{e} {e:?}").contains(TOKEN));

    let f = forge_with(|o| o.prefix = "/forgejo".into());
    assert!(f.base_url().ends_with("/forgejo"));
    f.create_repo(ORG, "p", false);
    for base in [f.base_url(), format!("{}/", f.base_url())] {
        let c = client_for(&base, &f.token());
        assert_eq!(c.get_repo(&RepoRef::new(ORG, "p")).unwrap().name, "p");
        assert!(
            c.read_file(&RepoRef::new(ORG, "p"), "README.md", None)
                .unwrap()
                .is_some()
        );
    }
    // Without the sub-path the forge has nothing there.
    let root = f.base_url().trim_end_matches("/forgejo").to_string();
    let e = client_for(&root, &f.token())
        .get_repo(&RepoRef::new(ORG, "p"))
        .unwrap_err();
    assert!(matches!(e, ForgeError::NotFound(_)), "{e:?}");
}

// ------------------------------------------------------------------ the token never leaks

#[test]
fn token_never_appears_in_any_error() {
    let f = forge();
    f.create_repo(ORG, "t", false);
    let c = client(&f);
    assert!(!format!("{c:?}").contains(TOKEN));
    let mut errors: Vec<ForgeError> = Vec::new();
    // A server that echoes the token back in every kind of answer.
    let echo = format!("you sent token {TOKEN}");
    for (status, path, method) in [
        (401, "/user", "GET"),
        (403, "/user", "GET"),
        (404, "/user", "GET"),
        (409, "/user", "GET"),
        (422, "/user", "GET"),
        (500, "/user", "GET"),
        (502, "/user", "GET"),
        (400, "/user", "GET"),
    ] {
        f.inject(Fault::fail(method, path, status, &echo));
        errors.push(c.current_user().unwrap_err());
    }
    // (A 404 on /user is the wrong base URL, Config; NotFound is a repo's.)
    f.inject(Fault::fail("GET", "/repos", 404, &echo));
    errors.push(c.get_repo(&RepoRef::new(ORG, "t")).unwrap_err());
    f.inject(Fault::fail(
        "POST",
        "/contents",
        403,
        &format!("PushRejected {TOKEN}"),
    ));
    errors.push(
        c.create_file(&RepoRef::new(ORG, "t"), "a", b"a", &opts("x"))
            .unwrap_err(),
    );
    f.inject(Fault::fail("POST", "/contents", 405, &echo));
    errors.push(
        c.change_files(&RepoRef::new(ORG, "t"), &[], &opts("x"))
            .unwrap_err(),
    );
    f.inject(Fault::fail(
        "POST",
        "/contents/a",
        422,
        &format!("repository file already exists {TOKEN}"),
    ));
    errors.push(
        c.create_file(&RepoRef::new(ORG, "t"), "a", b"a", &opts("x"))
            .unwrap_err(),
    );
    f.inject(Fault::fail(
        "PUT",
        "/contents",
        422,
        &format!("sha does not match {TOKEN}"),
    ));
    errors.push(
        c.update_file(&RepoRef::new(ORG, "t"), "README.md", b"a", "x", &opts("x"))
            .unwrap_err(),
    );
    f.inject(Fault::new(Some("GET"), "/user", FaultAction::DropBefore));
    errors.push(c.current_user().unwrap_err());
    let mut cfg = ClientConfig::new(&f.base_url(), Secret::new(TOKEN.into()));
    cfg.timeout = Duration::from_millis(200);
    f.inject(Fault::new(
        Some("GET"),
        "/user",
        FaultAction::Delay(Duration::from_millis(800)),
    ));
    errors.push(ForgejoClient::new(cfg).unwrap().current_user().unwrap_err());
    errors.push(
        client_for("http://127.0.0.1:1", TOKEN)
            .current_user()
            .unwrap_err(),
    );
    errors.push(
        client_for(&f.base_url(), "another-token-zzzzzzzzzz")
            .current_user()
            .unwrap_err(),
    );
    let mut cfg = ClientConfig::new(
        &format!("http://forge.example.org/{TOKEN}"),
        Secret::new(TOKEN.into()),
    );
    cfg.insecure_http = false;
    errors.push(ForgejoClient::new(cfg).unwrap_err());

    let kinds: std::collections::BTreeSet<String> = errors
        .iter()
        .map(|e| {
            format!("{e:?}")
                .split(['(', ' '])
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    for k in [
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "StaleSha",
        "Invalid",
        "Server",
        "PushRejected",
        "Unsupported",
        "AlreadyExists",
        "Network",
        "Timeout",
        "Config",
    ] {
        assert!(kinds.contains(k), "{k} not forced: {kinds:?}");
    }
    for e in &errors {
        let shown = format!(
            "{e} | {e:?} | {:?}",
            hero_usage::error::Error::from(e.clone())
        );
        assert!(!shown.contains(TOKEN), "token leaked: {shown}");
    }
    let log = f.requests();
    assert!(!format!("{log:?}").contains(TOKEN));
}

/// Helper for other tests: the bare repository path is where git expects it.
#[test]
fn bare_repo_layout() {
    let f = forge();
    f.create_repo(ORG, "layout", false);
    let p: PathBuf = f.bare_repo(ORG, "layout");
    assert!(p.ends_with("lhumina_code/layout.git"));
    assert_eq!(
        git(&p, &["rev-parse", "--is-bare-repository"]).trim(),
        "true"
    );
    assert_eq!(
        git(&p, &["log", "--format=%s", "main"]).trim(),
        "Initial commit"
    );
}
