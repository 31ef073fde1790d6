//! What the tests that push to the test forge share (push, fleet, record):
//! a node with its spool and token, its push command, and reads of the
//! billing repository the pushes write.

use super::{TestEnv, files_under, run};
use hero_usage::otoml::parse_batch;
use hero_usage::record::{UsageRecord, UtcSecond};
use hero_usage_test_forge::{ForgeOptions, TestForge};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const OWNER: &str = "lhumina_code";
pub const REPO: &str = "billing";

/// A test forge with the default options.
pub fn start() -> TestForge {
    TestForge::start(ForgeOptions::default())
}

/// A test forge without the many-files endpoint when `old` (an old server:
/// one request per file), else with the default options.
pub fn start_old(old: bool) -> TestForge {
    TestForge::start(ForgeOptions {
        no_multi_file: old,
        ..ForgeOptions::default()
    })
}

/// A node with its spool, talking to one forge.
pub struct Node {
    pub env: TestEnv,
    pub token_file: PathBuf,
    pub url: String,
    pub repo: String,
}

impl Node {
    pub fn new(forge: &TestForge) -> Node {
        Node::named(forge, "test-node", &format!("{OWNER}/{REPO}"))
    }

    pub fn named(forge: &TestForge, node: &str, repo: &str) -> Node {
        let mut env = TestEnv::new();
        env.node = node.to_string();
        Node::with_env(env, forge, repo)
    }

    /// A node on an existing `env` (its spool and node name kept).
    pub fn with_env(env: TestEnv, forge: &TestForge, repo: &str) -> Node {
        let token_file = token_file(&env, forge);
        Node {
            env,
            token_file,
            url: forge.base_url(),
            repo: repo.to_string(),
        }
    }

    pub fn push_cmd(&self) -> Command {
        let mut c = self.env.cmd("hero_usage_push");
        forge_env(&mut c, &self.url, &self.token_file, &self.repo);
        c
    }

    pub fn push(&self, args: &[&str]) -> Output {
        run(self.push_cmd().args(args))
    }

    /// Record `rec` through `hero_usage_record`; fails the test unless it exits 0.
    #[track_caller]
    pub fn record(&self, rec: &UsageRecord) {
        use super::Run;
        run(self.env.cmd("hero_usage_record").args([
            "--idempotency-key",
            &rec.idempotency_key,
            "--user-sid",
            &rec.user_sid,
            "--amount-cents",
            &rec.amount_cents.to_string(),
            "--resource-kind",
            &rec.resource_kind,
            "--description",
            &rec.description,
            "--occurred-at",
            &rec.occurred_at.to_string(),
        ]))
        .exit(0);
    }

    pub fn pending(&self) -> usize {
        files_under(&self.env.spool.join("pending")).len()
    }

    pub fn rejected(&self) -> Vec<PathBuf> {
        files_under(&self.env.spool.join("rejected"))
    }
}

/// `hero_usage_push ARGS` of `env`'s spool to `forge`'s billing repository.
pub fn push(env: &TestEnv, forge: &TestForge, args: &[&str]) -> Output {
    let mut c = env.cmd("hero_usage_push");
    let token = token_file(env, forge);
    forge_env(
        &mut c,
        &forge.base_url(),
        &token,
        &format!("{OWNER}/{REPO}"),
    );
    run(c.args(args))
}

/// Write `forge`'s token into `env`'s `token` file; its path.
pub fn token_file(env: &TestEnv, forge: &TestForge) -> PathBuf {
    let path = env.path("token");
    std::fs::write(&path, format!("{}\n", forge.token())).unwrap();
    path
}

/// The forge settings of a push (or a shim's push-now) in its environment.
pub fn forge_env(c: &mut Command, url: &str, token_file: &Path, repo: &str) {
    c.env("HERO_USAGE_FORGEJO_URL", url)
        .env("HERO_USAGE_FORGEJO_TOKEN_FILE", token_file)
        .env("HERO_USAGE_REPO", repo);
}

/// A record of node `test-node`, user `0a1b`, `cpu_hours`.
pub fn rec(key: &str, at: &str, amount: u64) -> UsageRecord {
    UsageRecord {
        amount_cents: amount,
        description: format!("work \"{key}\""),
        idempotency_key: key.to_string(),
        node_id: "test-node".to_string(),
        occurred_at: UtcSecond::parse(at).unwrap(),
        resource_kind: "cpu_hours".to_string(),
        user_sid: "0a1b".to_string(),
    }
}

/// A file of the billing repository's `main`, if it is there.
pub fn file(forge: &TestForge, path: &str) -> Option<String> {
    forge
        .file(OWNER, REPO, "main", path)
        .map(|b| String::from_utf8(b).unwrap())
}

/// `git ARGS` in the billing repository's bare repo.
pub fn git(forge: &TestForge, args: &[&str]) -> String {
    super::git(&forge.bare_repo(OWNER, REPO), args)
}

/// The commits on `main` (none before the first push).
pub fn commits(forge: &TestForge) -> usize {
    if forge.head(OWNER, REPO, "main").is_none() {
        return 0;
    }
    git(forge, &["rev-list", "--count", "main"])
        .trim()
        .parse()
        .unwrap()
}

/// Every key of every `nodes/*/` file on `branch`, with repeats, per node
/// folder (nothing before the first push).
pub fn keys_on(forge: &TestForge, branch: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if forge.head(OWNER, REPO, branch).is_none() {
        return out;
    }
    let list = git(forge, &["ls-tree", "-r", "--name-only", branch]);
    for path in list.lines().filter(|p| p.starts_with("nodes/")) {
        let node = path.split('/').nth(1).unwrap().to_string();
        let text = String::from_utf8(forge.file(OWNER, REPO, branch, path).unwrap()).unwrap();
        let keys = parse_batch(&text)
            .unwrap()
            .into_iter()
            .map(|r| r.idempotency_key);
        out.entry(node).or_default().extend(keys);
    }
    out
}

/// Every key of `node`'s files on `main`, with repeats, sorted.
pub fn node_keys(forge: &TestForge, node: &str) -> Vec<String> {
    let mut keys = keys_on(forge, "main").remove(node).unwrap_or_default();
    keys.sort();
    keys
}
