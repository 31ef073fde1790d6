//! Signed hour files (man 1 hero_usage_push, SIGNED HOUR FILES): the key's life
//! (`--init-signing-key`, `--print-public-key`, a key others may read), and
//! every signature a push writes checked by the real `ssh-keygen -Y verify`.

use crate::support::forge::{Node, OWNER, REPO, forge_env, git, rec, start_old};
use crate::support::{Run, run, run_with_stdin, stderr, stdout};
use hero_usage_test_forge::{Fault, ForgeOptions, TestForge};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The default key path in a test's HOME.
pub(crate) fn default_key(node: &Node) -> PathBuf {
    node.env.home.join("hero/cfg/hero_usage_signing_key")
}

/// Make the node's key with `--init-signing-key`; its allowed_signers line.
pub(crate) fn init_key(node: &Node) -> String {
    let out = node.push(&["--init-signing-key"]);
    out.exit(0);
    stdout(&out)
}

/// A node with its key made by `--init-signing-key`, and the billing
/// side's allowed_signers file holding its line (after a comment and a
/// blank line): the node, its line, the file.
fn keyed_node(forge: &TestForge) -> (Node, String, PathBuf) {
    let node = Node::new(forge);
    let line = init_key(&node);
    let allowed = node.env.path("allowed_signers");
    std::fs::write(&allowed, format!("# billing side\n\n{line}")).unwrap();
    (node, line, allowed)
}

/// `ssh-keygen -Y verify` of `sig` over `data` by `principal`: its output
/// when it says good, else `Err` with what it said.
pub(crate) fn ssh_verify(
    allowed: &Path,
    principal: &str,
    data: &[u8],
    sig: &[u8],
) -> Result<String, String> {
    let dir = crate::support::temp_dir();
    let sig_file = dir.path().join("file.sig");
    std::fs::write(&sig_file, sig).unwrap();
    let out = run_with_stdin(
        Command::new("ssh-keygen")
            .args(["-Y", "verify", "-n", "hero-usage", "-I", principal, "-f"])
            .arg(allowed)
            .arg("-s")
            .arg(&sig_file),
        data,
    );
    let said = format!("{}{}", stdout(&out), stderr(&out));
    if out.status.success() {
        Ok(said)
    } else {
        Err(said)
    }
}

/// `ssh-keygen -Y sign -n hero-usage` of `data` with `key`, as a person
/// signs an hour file by hand: the signature file it writes.
fn ssh_sign(key: &Path, data: &[u8]) -> Vec<u8> {
    let dir = crate::support::temp_dir();
    let file = dir.path().join("usage.otoml");
    std::fs::write(&file, data).unwrap();
    let out = run(Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "hero-usage", "-f"])
        .arg(key)
        .arg(&file));
    out.exit(0);
    std::fs::read(dir.path().join("usage.otoml.sig")).unwrap()
}

fn file(forge: &TestForge, branch: &str, path: &str) -> Option<Vec<u8>> {
    forge.file(OWNER, REPO, branch, path)
}

/// Every hour file on `branch` verifies with ssh-keygen against its
/// signature; the number of hour files.
fn all_verify(forge: &TestForge, branch: &str, node: &str, allowed: &Path) -> usize {
    let listing = git(forge, &["ls-tree", "-r", "--name-only", branch]);
    let hours: Vec<&str> = listing
        .lines()
        .filter(|p| p.starts_with(&format!("nodes/{node}/")))
        .collect();
    let sigs = listing
        .lines()
        .filter(|p| p.starts_with("signatures/"))
        .count();
    assert_eq!(sigs, hours.len(), "one signature per hour file: {listing}");
    for path in &hours {
        let sig_path = format!("signatures/{}.sig", path.strip_prefix("nodes/").unwrap());
        let data = file(forge, branch, path).unwrap();
        let sig = file(forge, branch, &sig_path).unwrap_or_else(|| panic!("no {sig_path}"));
        let said = ssh_verify(allowed, node, &data, &sig).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(said.contains("Good \"hero-usage\" signature"), "{said}");
    }
    hours.len()
}

fn forge() -> TestForge {
    TestForge::start(ForgeOptions::default())
}

/// The paths a commit changed.
fn changed(forge: &TestForge, commit: &str) -> Vec<String> {
    let names = git(
        forge,
        &["show", "--name-only", "--format=", "--no-renames", commit],
    );
    names.lines().map(str::to_string).collect()
}

#[test]
fn every_hour_file_a_push_writes_is_signed_in_its_commit_and_ssh_keygen_verifies_it() {
    let forge = forge();
    let (node, line, allowed) = keyed_node(&forge);
    assert!(
        line.starts_with("test-node namespaces=\"hero-usage\" ssh-ed25519 AAAA"),
        "{line}"
    );
    for (k, at) in [
        ("a", "2026-11-20 16:04:05"),
        ("b", "2026-11-20 17:00:00"),
        ("c", "2026-11-20 18:00:00"),
    ] {
        node.record(&rec(k, at, 1));
    }
    let out = node.push(&[]);
    out.exit(0);
    assert_eq!(all_verify(&forge, "main", "test-node", &allowed), 3);
    // Byte for byte what ssh-keygen -Y sign writes (armored SSHSIG, sha512,
    // namespace hero-usage) with the same key.
    let h16 = file(&forge, "main", H16).unwrap();
    assert_eq!(
        String::from_utf8(file(&forge, "main", S16).unwrap()).unwrap(),
        String::from_utf8(ssh_sign(&default_key(&node), &h16)).unwrap()
    );
    let first = changed(&forge, "main");
    assert_eq!(
        first.len(),
        6,
        "three hours and their signatures in one commit: {first:?}"
    );

    // A merged hour is signed again, in the commit that changes it.
    node.record(&rec("a2", "2026-11-20 16:30:00", 2));
    let out = node.push(&[]);
    out.exit(0);
    assert_eq!(
        changed(&forge, "main"),
        [
            "nodes/test-node/usage_2026-11-20-16.otoml",
            "signatures/test-node/usage_2026-11-20-16.otoml.sig"
        ]
    );
    assert_eq!(all_verify(&forge, "main", "test-node", &allowed), 3);
    // The public key printed later is the same line.
    let again = node.push(&["--print-public-key"]);
    assert_eq!(stdout(&again), line);
}

#[test]
fn without_the_many_files_endpoint_each_signature_follows_its_hour_file() {
    let forge = start_old(true);
    let (node, _, allowed) = keyed_node(&forge);
    for (k, at) in [("a", "2026-11-20 16:04:05"), ("b", "2026-11-20 17:00:00")] {
        node.record(&rec(k, at, 1));
    }
    let out = node.push(&[]);
    out.exit(0);
    assert_eq!(all_verify(&forge, "main", "test-node", &allowed), 2);
    // Oldest first: each hour file, then its signature, never another hour between.
    let log = git(&forge, &["log", "--reverse", "--format=%H", "main"]);
    let order: Vec<String> = log.lines().flat_map(|c| changed(&forge, c)).collect();
    assert_eq!(
        order,
        [
            "nodes/test-node/usage_2026-11-20-16.otoml",
            "signatures/test-node/usage_2026-11-20-16.otoml.sig",
            "nodes/test-node/usage_2026-11-20-17.otoml",
            "signatures/test-node/usage_2026-11-20-17.otoml.sig",
        ]
    );
    assert_eq!(node.pending(), 0);
}

/// A shared branch made by the first commit from a signed default branch:
/// its signature files are the default branch's, read there and updated.
/// On a server without the many-files endpoint the signature's request,
/// after the hour file's made the branch, asked to make it again (422) and
/// the run ended 75 with the hour unsigned.
#[test]
fn a_new_shared_branch_carries_the_default_branchs_signatures() {
    for old in [false, true] {
        let forge = start_old(old);
        let (node, _, allowed) = keyed_node(&forge);
        node.record(&rec("a", "2026-11-20 16:04:05", 1));
        node.push(&[]).exit(0);
        node.record(&rec("b", "2026-11-20 16:05:00", 1));
        node.record(&rec("c", "2026-11-20 17:00:00", 1));
        let out = run(node.push_cmd().env("HERO_USAGE_BRANCH", "billing-b"));
        out.exit_for(0, &format!("old server: {old}"));
        assert_eq!(all_verify(&forge, "billing-b", "test-node", &allowed), 2);
        assert_eq!(node.pending(), 0);
    }
}

/// On a server without the many-files endpoint, the signature's own
/// request failing past the retry window ends the run (75) with the hour's
/// records pending, so that the next run signs the hour: not a note that
/// waits for the hour to change again.
#[test]
fn a_signature_request_that_keeps_failing_leaves_its_hour_pending_until_signed() {
    let forge = start_old(true);
    let (node, _, allowed) = keyed_node(&forge);
    node.record(&rec("a", "2026-11-20 16:04:05", 1));
    forge.inject(Fault::fail("POST", "/contents/signatures/", 500, "").times(1000));
    let out = run(node
        .push_cmd()
        .env(hero_usage::push::TEST_WAITS_ENV, "5,50,300"));
    out.exit(75).stderr_has("retries used up");
    assert_eq!(node.pending(), 1);
    forge.clear_faults();
    node.push(&[]).exit(0);
    assert_eq!(all_verify(&forge, "main", "test-node", &allowed), 1);
    assert_eq!(node.pending(), 0);
}

#[test]
fn a_signature_request_that_never_came_is_written_by_the_next_run() {
    // The hour file landed, its records were left pending (a crash before
    // the signature's request, on a server without the many-files
    // endpoint): the next run finds them present and signs the file.
    let forge = forge();
    let (node, _, allowed) = keyed_node(&forge);
    let r = rec("a", "2026-11-20 16:04:05", 1);
    forge.create_repo(OWNER, REPO, true);
    forge.commit_files(
        OWNER,
        REPO,
        "main",
        &[(
            "nodes/test-node/usage_2026-11-20-16.otoml",
            Some(hero_usage::otoml::render_batch(std::slice::from_ref(&r)).as_bytes()),
        )],
        "an unsigned write",
    );
    node.record(&r);
    let out = node.push(&[]);
    out.exit(0);
    assert!(stderr(&out).contains("signing it"), "{}", stderr(&out));
    assert_eq!(all_verify(&forge, "main", "test-node", &allowed), 1);
    assert_eq!(node.pending(), 0);
}

#[test]
fn init_signing_key_makes_a_0600_key_and_never_overwrites_one() {
    let forge = forge();
    let node = Node::new(&forge);
    let line = init_key(&node);
    let key = default_key(&node);
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let before = std::fs::read(&key).unwrap();
    // ssh-keygen reads it too: the public half it derives is ours.
    let derived = run(Command::new("ssh-keygen").arg("-y").arg("-f").arg(&key));
    derived.exit(0);
    let ours = line.trim_end().split(" ").nth(3).unwrap();
    assert!(stdout(&derived).contains(ours), "{}", stdout(&derived));

    let out = node.push(&["--init-signing-key"]);
    out.exit(0);
    assert!(
        stderr(&out).contains("kept the existing"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&out), line);
    assert_eq!(std::fs::read(&key).unwrap(), before);

    // A file that is no key is refused, and kept as it is.
    let other = node.env.path("not-a-key");
    std::fs::write(&other, "hello").unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run(node
        .push_cmd()
        .arg("--init-signing-key")
        .arg("--signing-key-file")
        .arg(&other));
    out.exit(78);
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "hello");
}

#[test]
fn a_key_others_may_read_is_78_and_nothing_is_pushed() {
    let forge = forge();
    let node = Node::new(&forge);
    init_key(&node);
    let key = default_key(&node);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    node.record(&rec("a", "2026-11-20 16:04:05", 1));
    let out = node.push(&[]);
    out.exit(78);
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
    assert_eq!(node.pending(), 1);
    assert!(forge.head(OWNER, REPO, "main").is_none());
    let out = node.push(&["--print-public-key"]);
    out.exit(78);
}

#[test]
fn a_key_from_the_environment_signs_and_a_missing_one_is_78() {
    let forge = forge();
    let node = Node::new(&forge);
    let key = node.env.path("elsewhere/key");
    let out = run(node
        .push_cmd()
        .arg("--init-signing-key")
        .env("HERO_USAGE_SIGNING_KEY_FILE", &key));
    out.exit(0);
    let allowed = node.env.path("allowed_signers");
    std::fs::write(&allowed, stdout(&out)).unwrap();
    assert!(!default_key(&node).exists());
    node.record(&rec("a", "2026-11-20 16:04:05", 1));
    let out = run(node.push_cmd().env("HERO_USAGE_SIGNING_KEY_FILE", &key));
    out.exit(0);
    assert_eq!(all_verify(&forge, "main", "test-node", &allowed), 1);

    let out = run(node
        .push_cmd()
        .env("HERO_USAGE_SIGNING_KEY_FILE", node.env.path("missing")));
    out.exit(78);
}

/// Per-node branches: each signature lies beside its hour file on the
/// node's own branch, written by the commit that creates the branch.
#[test]
fn a_node_branch_carries_its_signatures() {
    let forge = forge();
    let (node, _, allowed) = keyed_node(&forge);
    for h in 16..18 {
        node.record(&rec(&format!("k{h}"), &format!("2026-11-20 {h}:04:05"), 1));
    }
    node.push(&["--branch", "usage/{node}"]).exit(0);
    assert_eq!(
        all_verify(&forge, "usage/test-node", "test-node", &allowed),
        2
    );
    assert_eq!(changed(&forge, "usage/test-node").len(), 4, "one commit");
}

#[test]
fn the_request_size_counts_the_signatures() {
    // A proxy refuses bodies over 4 KiB and the push is told so: with the
    // signatures counted, no request is refused (uncounted, each request
    // would carry twice the bytes the limit allows).
    let forge = TestForge::start(ForgeOptions {
        max_body_bytes: Some(4096),
        ..ForgeOptions::default()
    });
    let (node, _, allowed) = keyed_node(&forge);
    for h in 10..16 {
        node.record(&rec(&format!("k{h}"), &format!("2026-11-20 {h}:04:05"), 1));
    }
    let out = node.push(&["--max-request-bytes", "4096"]);
    out.exit(0);
    assert!(!stderr(&out).contains("413"), "{}", stderr(&out));
    assert_eq!(all_verify(&forge, "main", "test-node", &allowed), 6);
    let commits = git(&forge, &["rev-list", "--count", "main"]);
    assert!(commits.trim().parse::<u32>().unwrap() > 1, "{commits}");
}

#[test]
fn check_tells_whether_hour_files_are_signed() {
    let forge = forge();
    let node = Node::new(&forge);
    let out = node.push(&["--check"]);
    out.exit(0);
    assert!(
        stdout(&out).contains("note hour files go unsigned"),
        "{}",
        stdout(&out)
    );
    // The key named by the config file (relative to it), shown with its line.
    let line = init_key(&node);
    let cfg = node.env.home.join("hero/cfg/hero_usage.toml");
    std::fs::write(&cfg, "signing_key_file = \"hero_usage_signing_key\"\n").unwrap();
    let out = node.push(&["--check"]);
    out.exit(0);
    let text = stdout(&out);
    assert!(text.contains("signing_key_file config"), "{text}");
    assert!(text.contains(line.trim_end()), "{text}");
    std::fs::set_permissions(default_key(&node), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = node.push(&["--check"]);
    out.exit(78);
    assert!(
        stdout(&out).contains("FAIL signing key"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_printed_schedule_signs_with_the_same_key() {
    let forge = forge();
    let node = Node::new(&forge);
    let key = node.env.path("keys/node_key");
    let out = run(node
        .push_cmd()
        .args(["--init-signing-key", "--signing-key-file"])
        .arg(&key));
    out.exit(0);
    let out = run(node
        .push_cmd()
        .args(["--print-schedule", "cron", "--signing-key-file"])
        .arg(&key));
    out.exit(0);
    let want = format!("--signing-key-file {}", key.display());
    assert!(stdout(&out).contains(&want), "{}", stdout(&out));
}

/// `hero_usage_audit --git-dir <the forge's bare repo> --allowed-signers
/// FILE --json`: the exit code and the report.
fn audit(forge: &TestForge, node: &Node, allowed: &Path) -> (Output, serde_json::Value) {
    let mut c = node.env.cmd("hero_usage_audit");
    c.arg("--git-dir").arg(forge.bare_repo(OWNER, REPO));
    audit_report(c, allowed)
}

/// `hero_usage_audit` as `c` says, with `--allowed-signers FILE --json`:
/// the exit code and the report.
fn audit_report(mut c: Command, allowed: &Path) -> (Output, serde_json::Value) {
    let out = run(c.arg("--allowed-signers").arg(allowed).arg("--json"));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(&out), stderr(&out)));
    (out, v)
}

/// Another writer raises a record's amount in hour 16, leaving the
/// node's signature of the old bytes beside it.
fn change_h16_under_its_signature(forge: &TestForge) {
    let text = String::from_utf8(file(forge, "main", H16).unwrap()).unwrap();
    let changed = text.replace("amount_cents = 1", "amount_cents = 1000");
    forge.commit_files(
        OWNER,
        REPO,
        "main",
        &[(H16, Some(changed.as_bytes()))],
        "more",
    );
}

fn count(report: &serde_json::Value, kind: &str) -> u64 {
    report["violation_counts"][kind].as_u64().unwrap_or(0)
}

/// An audit's run and report that found nothing (exit 0): the report.
#[track_caller]
fn clean((ran, report): (Output, serde_json::Value)) -> serde_json::Value {
    ran.exit_for(0, &report.to_string());
    report
}

/// An audit's run and report that found one violation of `kind` (exit
/// 65): the report.
#[track_caller]
fn one_violation((ran, report): (Output, serde_json::Value), kind: &str) -> serde_json::Value {
    ran.exit_for(65, &report.to_string());
    assert_eq!(count(&report, kind), 1, "{report}");
    report
}

/// A node with a key, an allowed_signers file holding its line, and two
/// signed hours pushed.
fn signed_repo() -> (TestForge, Node, PathBuf) {
    let forge = forge();
    let (node, _, allowed) = keyed_node(&forge);
    node.record(&rec("a", "2026-11-20 16:04:05", 1));
    node.record(&rec("b", "2026-11-20 17:00:00", 1));
    let out = node.push(&[]);
    out.exit(0);
    (forge, node, allowed)
}

const H16: &str = "nodes/test-node/usage_2026-11-20-16.otoml";
const S16: &str = "signatures/test-node/usage_2026-11-20-16.otoml.sig";

#[test]
fn audit_a_clean_signed_repository_is_0() {
    let (forge, node, allowed) = signed_repo();
    let report = clean(audit(&forge, &node, &allowed));
    assert_eq!(report["signatures"]["verified"], 2, "{report}");
}

#[test]
fn audit_a_record_changed_by_another_writer_under_the_old_signature_is_65() {
    let (forge, node, allowed) = signed_repo();
    change_h16_under_its_signature(&forge);
    one_violation(audit(&forge, &node, &allowed), "bad-signature");
}

#[test]
fn audit_a_signature_removed_is_65() {
    let (forge, node, allowed) = signed_repo();
    forge.commit_files(OWNER, REPO, "main", &[(S16, None)], "drop it");
    one_violation(audit(&forge, &node, &allowed), "unsigned");
}

#[test]
fn audit_a_file_signed_with_another_nodes_key_is_65() {
    // Node B's key signs what lands in node A's folder.
    let forge = forge();
    let a = Node::new(&forge);
    let b = Node::named(&forge, "node-b", &format!("{OWNER}/{REPO}"));
    let allowed = a.env.path("allowed_signers");
    let a_line = init_key(&a);
    let b_line = init_key(&b);
    std::fs::write(&allowed, format!("{a_line}{b_line}")).unwrap();
    a.record(&rec("a", "2026-11-20 16:04:05", 1));
    let out = run(a.push_cmd().arg("--signing-key-file").arg(default_key(&b)));
    out.exit(0);
    let report = one_violation(audit(&forge, &a, &allowed), "bad-signature");
    let v = &report["violations"][0];
    assert!(v["detail"].as_str().unwrap().contains("node-b"), "{v}");
}

#[test]
fn audit_an_unsigned_write_after_the_nodes_first_signed_one_is_65() {
    let (forge, node, allowed) = signed_repo();
    // The same node's push, its key moved away: hour 18 goes unsigned.
    std::fs::rename(default_key(&node), node.env.path("key.away")).unwrap();
    node.record(&rec("c", "2026-11-20 18:00:00", 1));
    let out = node.push(&[]);
    out.exit(0);
    let report = one_violation(audit(&forge, &node, &allowed), "unsigned");
    let v = &report["violations"][0];
    assert_eq!(
        v["file"], "nodes/test-node/usage_2026-11-20-18.otoml",
        "{v}"
    );
}

#[test]
fn audit_files_written_before_the_node_signed_are_notes_and_a_hand_made_signature_counts() {
    let forge = forge();
    let node = Node::new(&forge);
    node.record(&rec("a", "2026-11-20 16:04:05", 1));
    node.record(&rec("b", "2026-11-20 17:00:00", 1));
    let out = node.push(&[]);
    out.exit(0);
    // Signing starts now: hour 18 is signed, 16 and 17 were written before.
    let line = init_key(&node);
    let allowed = node.env.path("allowed_signers");
    std::fs::write(&allowed, &line).unwrap();
    node.record(&rec("c", "2026-11-20 18:00:00", 1));
    node.push(&[]).exit(0);
    let report = clean(audit(&forge, &node, &allowed));
    assert_eq!(report["signatures"]["verified"], 1, "{report}");
    assert_eq!(
        report["signatures"]["unsigned_before_signing"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "{report}"
    );
    // Hour 16 signed by hand with ssh-keygen: accepted.
    let sig = ssh_sign(&default_key(&node), &file(&forge, "main", H16).unwrap());
    forge.commit_files(OWNER, REPO, "main", &[(S16, Some(&sig))], "signed by hand");
    let report = clean(audit(&forge, &node, &allowed));
    assert_eq!(report["signatures"]["verified"], 2, "{report}");
    // A signature without its hour file is a violation.
    let orphan = "signatures/test-node/usage_2026-11-20-19.otoml.sig";
    forge.commit_files(OWNER, REPO, "main", &[(orphan, Some(&sig))], "orphan");
    one_violation(audit(&forge, &node, &allowed), "orphan-signature");
}

#[test]
fn audit_through_the_api_checks_the_signatures_at_the_heads() {
    let (forge, node, allowed) = signed_repo();
    let api = || {
        let mut c = node.env.cmd("hero_usage_audit");
        forge_env(&mut c, &node.url, &node.token_file, &node.repo);
        audit_report(c, &allowed)
    };
    let report = clean(api());
    assert_eq!(report["signatures"]["verified"], 2, "{report}");
    change_h16_under_its_signature(&forge);
    one_violation(api(), "bad-signature");
}
