//! Holes an adversarial review found (issue 8): drops of any name, length
//! and kind are ingested or quarantined, never unseen and never stopping
//! the push; read-only commands create nothing; remote hour files as
//! editors leave them are read. Real binaries, real spools, the test forge.

use crate::support::forge::{OWNER, REPO, forge_env, token_file};
use crate::support::{
    Run, TestEnv, files_under, hold_lock_with_flock, rejection_reasons, run, status_json, stderr,
    stdout, unprivileged, wait_until_waiting_for_lock,
};
use hero_usage::otoml::render_batch;
use hero_usage::record::{UsageRecord, UtcSecond};
use hero_usage_test_forge::{ForgeOptions, TestForge};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const VALID: &str =
    "idempotency_key = \"KEY\"\nuser_sid = \"0a1b\"\namount_cents = 5\nresource_kind = \"cpu\"\n";

/// A spool with a forge to push to.
struct Node {
    env: TestEnv,
    forge: TestForge,
    token_file: PathBuf,
}

impl Node {
    fn new() -> Node {
        let env = TestEnv::new();
        let forge = TestForge::start(ForgeOptions::default());
        let token_file = token_file(&env, &forge);
        Node {
            env,
            forge,
            token_file,
        }
    }

    fn push_cmd(&self) -> Command {
        let mut c = self.env.cmd("hero_usage_push");
        forge_env(
            &mut c,
            &self.forge.base_url(),
            &self.token_file,
            &format!("{OWNER}/{REPO}"),
        );
        c
    }

    fn push(&self, args: &[&str]) -> Output {
        run(self.push_cmd().args(args))
    }

    fn incoming(&self) -> PathBuf {
        self.env.spool.join("incoming")
    }

    /// Create the spool's layout (as any writer does).
    fn open(&self) {
        hero_usage::spool::Spool::open(&self.env.spool).unwrap();
    }

    fn drop_file(&self, name: impl Into<OsString>, text: &str) -> PathBuf {
        let p = self.incoming().join(name.into());
        std::fs::write(&p, text).unwrap();
        p
    }

    fn pending(&self) -> usize {
        files_under(&self.env.spool.join("pending")).len()
    }

    fn rejected(&self) -> Vec<PathBuf> {
        files_under(&self.env.spool.join("rejected"))
    }

    fn reasons(&self) -> String {
        rejection_reasons(&self.env.spool).concat()
    }
}

fn valid(key: &str) -> String {
    VALID.replace("KEY", key)
}

/// A drop renamed over one the push has judged (the same name, while the
/// push waits for the writers' lock to record or quarantine what it read)
/// is a record nobody has read: it stays for the next run. The old code
/// removed it with the good drop it had read, unread (its record lost), and
/// quarantined it in place of the bad one, with that one's reason.
#[test]
fn a_drop_renamed_over_one_being_ingested_is_left_for_the_next_run() {
    let node = Node::new();
    node.open();
    let job = node.drop_file("job.toml", &valid("first"));
    let bad = node.drop_file("bad.toml", "not a record");
    let spool = hero_usage::spool::Spool::open(&node.env.spool).unwrap();
    let mut holder = hold_lock_with_flock(&spool, &["cat"]);
    let push = node
        .push_cmd()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_waiting_for_lock(&spool, push.id());
    // A script's `mv` of its next records to the same names.
    for (name, key) in [(&job, "second"), (&bad, "third")] {
        let next = node.env.spool.join("tmp/next");
        std::fs::write(&next, valid(key)).unwrap();
        std::fs::rename(&next, name).unwrap();
    }
    drop(holder.stdin.take());
    holder.wait().unwrap();
    push.wait_with_output().unwrap().exit(0);
    assert_eq!(std::fs::read_to_string(&job).unwrap(), valid("second"));
    assert_eq!(std::fs::read_to_string(&bad).unwrap(), valid("third"));
    node.push(&[]).exit(0);
    assert_eq!(
        crate::support::forge::node_keys(&node.forge, &node.env.node),
        ["first", "second", "third"]
    );
}

#[test]
fn a_bad_drop_with_a_245_character_name_is_quarantined_and_the_rest_pushed() {
    let node = Node::new();
    node.open();
    let long = format!("{}.toml", "b".repeat(240));
    assert_eq!(long.len(), 245);
    node.drop_file(long.as_str(), "not = [toml");
    node.drop_file("good.toml", &valid("good"));
    let out = node.push(&[]);
    out.exit(65);
    assert!(
        stdout(&out).contains("pushed 1 records"),
        "{}",
        stdout(&out)
    );
    assert_eq!(node.pending(), 0);
    let rejected = node.rejected();
    assert_eq!(rejected.len(), 2, "{rejected:?}");
    for p in &rejected {
        assert!(p.file_name().unwrap().len() <= 255 - 8, "{p:?}");
    }
    assert!(node.reasons().contains(&long), "{}", node.reasons());
    assert!(stderr(&out).contains(&long), "{}", stderr(&out));
    // Shown once: the next run is clean.
    node.push(&[]).exit(0);
    assert!(std::fs::read_dir(node.incoming()).unwrap().next().is_none());
}

#[test]
fn a_drop_with_a_non_utf8_name_is_counted_alerted_and_ingested() {
    let node = Node::new();
    node.open();
    let name = OsString::from_vec(b"caf\xe9-drop.toml".to_vec());
    node.drop_file(name, &valid("cafe"));
    let (st, v) = status_json(&node.env, &[]);
    st.exit(0);
    assert_eq!(v["incoming"].as_i64(), Some(1), "{v}");
    std::thread::sleep(Duration::from_millis(1100));
    let (st, _) = status_json(&node.env, &["--max-age", "0"]);
    st.exit_for(1, "--max-age fires for it");
    let out = node.push(&[]);
    out.exit(0);
    assert!(
        stdout(&out).contains("pushed 1 records"),
        "{}",
        stdout(&out)
    );
    assert!(std::fs::read_dir(node.incoming()).unwrap().next().is_none());
}

#[test]
fn bad_drops_with_control_characters_in_their_names_are_escaped_in_messages() {
    let node = Node::new();
    node.open();
    let name = OsString::from_vec(b"evil\n\x1b[2J\xff.toml".to_vec());
    node.drop_file(name, "not toml [");
    let out = node.push(&[]);
    out.exit(65);
    let err = stderr(&out);
    assert!(!err.contains('\x1b'), "raw ESC in {err:?}");
    assert!(err.contains("evil\\n\\u{1b}[2J\\xff.toml"), "{err}");
    assert_eq!(err.lines().count(), err.matches("hero_usage_push:").count());
    let kept = node.rejected();
    assert_eq!(kept.len(), 2, "{kept:?}");
    for p in kept {
        let n = p.file_name().unwrap().to_str().expect("a UTF-8 name");
        assert!(!n.chars().any(char::is_control), "{n:?}");
    }
    assert!(node.reasons().contains("evil\\n\\u{1b}[2J\\xff.toml"));
}

#[test]
fn every_kind_of_drop_is_ingested_or_quarantined_and_none_stops_the_push() {
    let node = Node::new();
    node.open();
    let inc = node.incoming();
    std::fs::create_dir(inc.join("dir.toml")).unwrap();
    std::fs::write(inc.join("dir.toml/inner"), "kept").unwrap();
    std::os::unix::fs::symlink("/nonexistent", inc.join("dangling.toml")).unwrap();
    let fifo = run(Command::new("mkfifo").arg(inc.join("fifo.toml")));
    assert!(fifo.status.success(), "{}", stderr(&fifo));
    let _socket = std::os::unix::net::UnixListener::bind(inc.join("sock.toml")).unwrap();
    node.drop_file("good.toml", &valid("good"));
    let out = node.push(&[]);
    out.exit(65);
    assert!(
        stdout(&out).contains("pushed 1 records"),
        "{}",
        stdout(&out)
    );
    assert!(std::fs::read_dir(&inc).unwrap().next().is_none());
    let rejected = node.env.spool.join("rejected");
    for name in ["dir.toml", "dangling.toml", "fifo.toml", "sock.toml"] {
        assert!(
            std::fs::symlink_metadata(rejected.join(name)).is_ok(),
            "{name} not quarantined"
        );
        assert!(rejected.join(format!("{name}.reason")).exists(), "{name}");
    }
    assert_eq!(
        std::fs::read_to_string(rejected.join("dir.toml/inner")).unwrap(),
        "kept"
    );
    node.push(&[]).exit(0);
}

#[test]
fn quarantining_a_hard_linked_drop_changes_nothing_outside_the_spool() {
    let node = Node::new();
    node.open();
    let outside = node.env.path("outside.toml");
    std::fs::write(&outside, "shared = [broken").unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::hard_link(&outside, node.incoming().join("linked.toml")).unwrap();
    node.push(&[]).exit(65);
    let m = std::fs::metadata(&outside).unwrap();
    assert_eq!(m.mode() & 0o777, 0o644, "the shared inode's mode changed");
    assert_eq!(
        std::fs::read_to_string(&outside).unwrap(),
        "shared = [broken"
    );
    let kept = node.env.spool.join("rejected/linked.toml");
    let k = std::fs::metadata(&kept).unwrap();
    assert_eq!(k.mode() & 0o777, 0o600);
    assert_ne!(k.ino(), m.ino(), "a private copy is kept");
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "shared = [broken");
}

#[test]
fn status_and_a_dry_run_create_nothing_in_an_existing_spool() {
    let node = Node::new();
    std::fs::create_dir(&node.env.spool).unwrap();
    let (st, v) = status_json(&node.env, &[]);
    st.exit_for(0, &v.to_string());
    assert!(list(&node.env.spool).is_empty(), "status created something");
    node.push(&["--dry-run"]).exit(0);
    assert!(
        list(&node.env.spool).is_empty(),
        "a dry run created something"
    );
}

fn list(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn max_age_of_2_to_the_63_or_more_does_not_wrap() {
    let node = Node::new();
    node.open();
    node.drop_file("waiting.toml", &valid("k"));
    for max in ["9223372036854775808", "18446744073709551615"] {
        let (st, v) = status_json(&node.env, &["--max-age", max]);
        st.exit_for(0, &format!("--max-age {max}: {v}"));
    }
}

#[test]
fn remote_hours_with_a_bom_a_comment_or_a_spaced_prefix_are_read_and_rewritten() {
    let node = Node::new();
    node.forge.create_repo(OWNER, REPO, false);
    let at = |h: u32| format!("2026-11-2{h} 10:00:00");
    let rec = |key: &str, h: u32| UsageRecord {
        amount_cents: 1,
        description: String::new(),
        idempotency_key: key.into(),
        node_id: "test-node".into(),
        occurred_at: UtcSecond::parse(&at(h)).unwrap(),
        resource_kind: "cpu".into(),
        user_sid: "0a1b".into(),
    };
    let path = |h: u32| format!("nodes/test-node/usage_2026-11-2{h}-10.otoml");
    let body = |r: &UsageRecord| {
        render_batch(std::slice::from_ref(r))
            .strip_prefix("O:\n")
            .unwrap()
            .to_string()
    };
    let old = [rec("old1", 1), rec("old2", 2), rec("old3", 3)];
    let texts = [
        format!("\u{feff}O:\n{}", body(&old[0])),
        format!("# hand edited\nO:\n{}", body(&old[1])),
        format!("O: \n{}", body(&old[2])),
    ];
    let files: Vec<(String, Vec<u8>)> = (1..=3)
        .map(|h| (path(h), texts[h as usize - 1].clone().into_bytes()))
        .collect();
    let refs: Vec<(&str, Option<&[u8]>)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), Some(t.as_slice())))
        .collect();
    node.forge
        .commit_files(OWNER, REPO, "main", &refs, "an editor was here");
    for h in 1..=3 {
        let out = run(node.env.cmd("hero_usage_record").args([
            "--idempotency-key",
            &format!("new{h}"),
            "--user-sid",
            "0a1b",
            "--amount-cents",
            "1",
            "--resource-kind",
            "cpu",
            "--occurred-at",
            &at(h),
        ]));
        out.exit(0);
    }
    node.push(&[]).exit(0);
    for h in 1..=3 {
        let got = node.forge.file(OWNER, REPO, "main", &path(h)).unwrap();
        let want = render_batch(&[old[h as usize - 1].clone(), rec(&format!("new{h}"), h)]);
        assert_eq!(String::from_utf8(got).unwrap(), want, "hour {h}");
    }
}

#[test]
fn a_drop_that_cannot_be_moved_is_reported_and_stops_nothing() {
    let node = Node::new();
    node.open();
    // Moving a directory to another parent needs write permission on it.
    let stuck = node.incoming().join("stuck.toml");
    std::fs::create_dir(&stuck).unwrap();
    node.drop_file("good.toml", &valid("good"));
    let mut push = unprivileged(&node.push_cmd(), node.env.dir.path());
    std::fs::set_permissions(&stuck, std::fs::Permissions::from_mode(0o500)).unwrap();
    let out = run(&mut push);
    out.exit(65);
    assert!(
        stdout(&out).contains("pushed 1 records"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("stays in incoming/"),
        "{}",
        stderr(&out)
    );
    assert!(stuck.is_dir(), "left where it was");
    assert_eq!(node.pending(), 0);
}

/// Files of root's in the spool (mode 0600, left by a run with sudo before
/// writers refused another user's spool). A drop of root's is quarantined
/// with its reason (the old code failed to chmod it once moved and left it
/// in rejected/ without one). A pending entry of root's is a stored record,
/// not bad input: the push stops with 73 naming the file and the fix, every
/// record stays pending (none is set aside in rejected/, where a policy that
/// denies reads would send them all), and once the file is given back the
/// next push pushes them all. A lock of root's names the same fix (it said
/// only "Permission denied").
#[test]
fn files_of_root_in_the_spool_lose_nothing() {
    if crate::support::my_uid() != 0 {
        eprintln!("skipped: needs root to leave a file its owner cannot read");
        return;
    }
    let node = Node::new();
    node.open();
    node.drop_file("good.toml", &valid("good"));
    let mut push = unprivileged(&node.push_cmd(), node.env.dir.path());
    // Made after the spool was handed to its owner: root's.
    let name = hero_usage::spool::file_name_for_key("roots");
    let roots = node.env.spool.join("pending").join(&name);
    let record = valid("roots")
        + "description = \"\"\nnode_id = \"test-node\"\noccurred_at = \"2026-12-01 10:00:00\"\n";
    std::fs::write(&roots, record).unwrap();
    let drop = node.drop_file("roots-drop.toml", &valid("roots-drop"));
    for file in [&roots, &drop] {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let out = run(&mut push);
    out.exit(73);
    let err = stderr(&out);
    assert!(
        err.contains(&name) && err.contains("sudo chown -R"),
        "{err}"
    );
    let reasons = rejection_reasons(&node.env.spool);
    assert_eq!(
        reasons.len(),
        1,
        "only the drop: {err}{:?}",
        node.rejected()
    );
    assert!(reasons[0].contains("Permission denied"), "{reasons:?}");
    assert_eq!(node.pending(), 2, "the good drop and root's entry wait");

    let chown = run(Command::new("chown").arg("65534:65534").arg(&roots));
    assert!(chown.status.success(), "{}", stderr(&chown));
    let out = run(&mut push);
    out.exit(0);
    assert!(
        stdout(&out).contains("pushed 2 records"),
        "{}",
        stdout(&out)
    );
    assert_eq!(node.pending(), 0);

    // A writers' lock of root's stops the push the same way, naming the fix.
    node.drop_file("later.toml", &valid("later"));
    let lock = node.env.spool.join("lock");
    let chown = run(Command::new("chown").arg("0:0").arg(&lock));
    assert!(chown.status.success(), "{}", stderr(&chown));
    std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run(&mut push);
    out.exit(73);
    let err = stderr(&out);
    assert!(
        err.contains("lock") && err.contains("sudo chown -R"),
        "{err}"
    );
}

#[test]
fn a_file_in_incoming_without_toml_is_counted_then_quarantined_never_unseen() {
    // A script whose `mv` lost the `.toml`, and a `.reason` moved back with
    // its file: neither is a drop, yet neither may wait unseen for ever.
    use hero_usage::spool::Spool;
    let env = TestEnv::new();
    let spool = Spool::open(&env.spool).unwrap();
    let incoming = env.spool.join("incoming");
    std::fs::write(incoming.join("tmp.Xa12bc"), VALID.replace("KEY", "k1")).unwrap();
    std::fs::write(incoming.join("a.toml.reason"), "drop: not valid TOML").unwrap();
    std::fs::write(incoming.join(".editor-swap"), "ignored: a dot name").unwrap();
    let status = |env: &TestEnv| {
        let out = run(env.cmd("hero_usage_status").arg("--json"));
        out.exit(0);
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap()
    };
    assert_eq!(status(&env)["incoming"], 2, "status counts what waits");
    // A fresh stray may be a writer's scratch file: it is left alone.
    let report = spool.ingest_incoming("n1", chrono::Utc::now()).unwrap();
    assert!(report.quarantined.is_empty(), "{report:?}");
    // An hour later it is quarantined, under a name no `.reason` is taken for.
    let later = chrono::Utc::now() + chrono::Duration::hours(2);
    let report = spool.ingest_incoming("n1", later).unwrap();
    assert_eq!(report.quarantined.len(), 2, "{report:?}");
    assert!(report.quarantined[0].1.contains("does not end in `.toml`"));
    let rejected = env.spool.join("rejected");
    assert!(rejected.join("tmp.Xa12bc.stray").is_file());
    assert!(rejected.join("tmp.Xa12bc.stray.reason").is_file());
    assert!(rejected.join("a.toml.reason.stray").is_file());
    assert!(
        incoming.join(".editor-swap").exists(),
        "dot names are not ours"
    );
    let s = status(&env);
    assert_eq!(
        (s["incoming"].clone(), s["rejected"].clone()),
        (0.into(), 2.into())
    );
}

/// A drop without `occurred_at` happened at its file's modification time
/// (not when the push found it), and one without `node_id` is the node's;
/// a dot name is not a drop: the push leaves it alone.
#[test]
fn a_drop_without_occurred_at_or_node_id_takes_its_mtime_and_the_node_name() {
    let node = Node::new();
    node.open();
    let three_hours_ago = std::time::SystemTime::now() - Duration::from_secs(3 * 3600 + 7);
    let drop = node.drop_file("backdated.toml", &valid("backdated"));
    std::fs::File::options()
        .write(true)
        .open(&drop)
        .unwrap()
        .set_modified(three_hours_ago)
        .unwrap();
    node.drop_file(".not-yet.toml", &valid("hidden"));
    node.push(&[]).exit(0);
    let at = chrono::DateTime::<chrono::Utc>::from(three_hours_ago);
    let path = format!("nodes/test-node/usage_{}.otoml", at.format("%Y-%m-%d-%H"));
    let text = node.forge.file(OWNER, REPO, "main", &path);
    let text = String::from_utf8(text.unwrap_or_else(|| panic!("no {path}"))).unwrap();
    let records = hero_usage::otoml::parse_batch(&text).unwrap();
    assert_eq!(records.len(), 1, "{text}");
    let r = &records[0];
    assert_eq!(r.idempotency_key, "backdated");
    assert_eq!(
        r.occurred_at.to_string(),
        at.format("%Y-%m-%d %H:%M:%S").to_string()
    );
    assert_eq!(r.node_id, "test-node");
    assert!(
        node.incoming().join(".not-yet.toml").is_file(),
        "a dot name stays"
    );
    assert_eq!(node.pending(), 0);
    assert!(node.rejected().is_empty(), "{:?}", node.rejected());
}
