//! `commit_ms`: writes race as on Forgejo, which clones, commits and pushes
//! without a lock; the loser of two commits on one branch gets 500 (or 403
//! `PushRejected`) and nothing of it is applied.

mod common;
use common::*;
use std::sync::{Arc, Barrier};

/// Send `bodies` at the same instant (one thread each); the answers in order.
fn at_once(
    forge: &Arc<hero_usage_test_forge::TestForge>,
    reqs: Vec<(&'static str, String, String)>,
) -> Vec<Answer> {
    let barrier = Arc::new(Barrier::new(reqs.len()));
    let threads: Vec<_> = reqs
        .into_iter()
        .map(|(m, path, body)| {
            let (f, b) = (forge.clone(), barrier.clone());
            std::thread::spawn(move || {
                b.wait();
                call(&f, m, &path, &body)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn racing(race_403: bool) -> Arc<hero_usage_test_forge::TestForge> {
    let f = forge(|o| {
        o.commit_ms = 150;
        o.race_403 = race_403;
    });
    f.create_repo(ORG, "r", false);
    Arc::new(f)
}

fn two_writers_on_different_files(
    race_403: bool,
) -> (Arc<hero_usage_test_forge::TestForge>, Vec<Answer>) {
    let f = racing(race_403);
    let answers = at_once(
        &f,
        vec![
            (
                "POST",
                contents("r"),
                creates(&[("nodes/a/x", "from a\n")], ""),
            ),
            (
                "POST",
                contents("r"),
                creates(&[("nodes/b/x", "from b\n")], ""),
            ),
        ],
    );
    (f, answers)
}

#[test]
fn two_concurrent_writers_of_different_files_one_wins_the_other_gets_a_blank_500() {
    let (f, a) = two_writers_on_different_files(false);
    let mut statuses: Vec<u16> = a.iter().map(|x| x.status).collect();
    statuses.sort();
    assert_eq!(
        statuses,
        vec![201, 500],
        "{:?}",
        a.iter().map(|x| &x.body).collect::<Vec<_>>()
    );
    let loser = a.iter().find(|x| x.status == 500).unwrap();
    assert_eq!(
        loser.json()["message"],
        "",
        "a 500 hides its message from non-admins"
    );
    let winner = if a[0].status == 201 { "a" } else { "b" };
    let lost = if winner == "a" { "b" } else { "a" };
    assert!(
        f.file(ORG, "r", "main", &format!("nodes/{winner}/x"))
            .is_some()
    );
    assert!(
        f.file(ORG, "r", "main", &format!("nodes/{lost}/x"))
            .is_none(),
        "the loser's change is not applied"
    );
    assert_eq!(commit_count(&f, "r", "main"), 2, "README plus one commit");
    let s = f.stats();
    assert_eq!((s.commits, s.lost_races), (1, 1));
}

#[test]
fn with_race_403_the_loser_gets_403_push_rejected() {
    let (f, a) = two_writers_on_different_files(true);
    let mut statuses: Vec<u16> = a.iter().map(|x| x.status).collect();
    statuses.sort();
    assert_eq!(statuses, vec![201, 403]);
    let loser = a.iter().find(|x| x.status == 403).unwrap();
    assert!(
        loser.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("PushRejected"),
        "{}",
        loser.body
    );
    assert_eq!(commit_count(&f, "r", "main"), 2);
}

#[test]
fn single_file_writes_race_too_and_a_passed_sha_check_does_not_save_the_loser() {
    let f = racing(false);
    let sha = call(&f, "GET", &format!("{}/README.md", contents("r")), "").json()["sha"]
        .as_str()
        .unwrap()
        .to_string();
    let put = |c: &str| {
        (
            "PUT",
            format!("{}/README.md", contents("r")),
            format!(r#"{{"content":"{}","sha":"{sha}"}}"#, b64(c)),
        )
    };
    let a = at_once(&f, vec![put("one\n"), put("two\n")]);
    let mut statuses: Vec<u16> = a.iter().map(|x| x.status).collect();
    statuses.sort();
    // Both passed the sha check before either landed: the loser is a lost
    // push (500), not a stale sha (409).
    assert_eq!(statuses, vec![200, 500]);
    let won = if a[0].status == 200 { "one\n" } else { "two\n" };
    assert_eq!(
        f.file(ORG, "r", "main", "README.md").unwrap(),
        won.as_bytes()
    );
    // A POST of a new file races as well.
    let post = |p: &str| {
        (
            "POST",
            format!("{}/{p}", contents("r")),
            format!(r#"{{"content":"{}"}}"#, b64(p)),
        )
    };
    let a = at_once(&f, vec![post("p1"), post("p2")]);
    let mut statuses: Vec<u16> = a.iter().map(|x| x.status).collect();
    statuses.sort();
    assert_eq!(statuses, vec![201, 500]);
}

#[test]
fn writes_one_after_another_never_lose_and_commit_ms_zero_never_races() {
    let f = racing(false);
    for i in 0..3 {
        let r = call(
            &f,
            "POST",
            &contents("r"),
            &creates(&[(&format!("f{i}"), "x")], ""),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    assert_eq!(f.stats().lost_races, 0);

    let f = Arc::new(forge(|_| {}));
    f.create_repo(ORG, "r", false);
    let reqs = (0..4)
        .map(|i| {
            (
                "POST",
                contents("r"),
                creates(&[(&format!("f{i}"), "x")], ""),
            )
        })
        .collect();
    let a = at_once(&f, reqs);
    assert!(
        a.iter().all(|x| x.status == 201),
        "commit_ms 0: writers queue on the lock"
    );
    assert_eq!(commit_count(&f, "r", "main"), 5);
}

#[test]
fn writers_on_different_branches_do_not_race() {
    let f = racing(false);
    let reqs = (0..3)
        .map(|i| {
            let extra = format!(r#","branch":"main","new_branch":"usage/n{i}""#);
            (
                "POST",
                contents("r"),
                creates(&[(&format!("nodes/n{i}/x"), "x")], &extra),
            )
        })
        .collect();
    let a = at_once(&f, reqs);
    assert!(
        a.iter().all(|x| x.status == 201),
        "{:?}",
        a.iter().map(|x| &x.body).collect::<Vec<_>>()
    );
    assert_eq!(f.stats().lost_races, 0);
    for i in 0..3 {
        assert!(
            f.file(ORG, "r", &format!("usage/n{i}"), &format!("nodes/n{i}/x"))
                .is_some()
        );
    }
}

#[test]
fn first_commits_racing_in_an_empty_repository() {
    let f = Arc::new(forge(|o| o.commit_ms = 150));
    f.create_repo(ORG, "e", true);
    // Two first commits on one branch: one creates it, the other loses.
    let main = |p: &str| {
        (
            "POST",
            contents("e"),
            creates(&[(p, "x")], r#","branch":"main""#),
        )
    };
    let a = at_once(&f, vec![main("a"), main("b")]);
    let mut statuses: Vec<u16> = a.iter().map(|x| x.status).collect();
    statuses.sort();
    assert_eq!(statuses, vec![201, 500]);
    assert_eq!(commit_count(&f, "e", "main"), 1);
    // First commits on two branches of an empty repository both land; as
    // on Forgejo, each makes its branch the default, the last one wins.
    f.create_repo(ORG, "e2", true);
    let node = |n: &str| {
        let extra = format!(r#","branch":"main","new_branch":"usage/{n}""#);
        ("POST", contents("e2"), creates(&[("x", n)], &extra))
    };
    let a = at_once(&f, vec![node("n1"), node("n2")]);
    assert!(a.iter().all(|x| x.status == 201));
    let repo = call(&f, "GET", &format!("/api/v1/repos/{ORG}/e2"), "").json();
    let default = repo["default_branch"].as_str().unwrap();
    assert!(default == "usage/n1" || default == "usage/n2", "{default}");
}
