//! Bare repositories driven through `git` plumbing, so that `git clone` and
//! `git log` of a repository show exactly what the API committed.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

pub const ZERO: &str = "0000000000000000000000000000000000000000";

/// A person on a commit.
#[derive(Clone, Debug)]
pub struct Person {
    pub name: String,
    pub email: String,
}

/// One change of a commit: new content, or `None` to delete.
pub struct Change {
    pub path: String,
    pub content: Option<Vec<u8>>,
}

/// An entry of a tree listing.
#[derive(Clone)]
pub struct Entry {
    pub mode: String,
    pub kind: String,
    pub sha: String,
    pub size: u64,
    pub name: String,
}

pub struct Git {
    pub dir: PathBuf,
}

impl Git {
    pub fn new(dir: &Path) -> Git {
        Git {
            dir: dir.to_path_buf(),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("git");
        c.env("GIT_DIR", &self.dir)
            .env_remove("GIT_INDEX_FILE")
            .env_remove("GIT_WORK_TREE")
            .env("GIT_LITERAL_PATHSPECS", "1")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, mut c: Command, input: Option<&[u8]>) -> Result<Vec<u8>, String> {
        if input.is_some() {
            c.stdin(Stdio::piped());
        }
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().map_err(|e| format!("cannot run git: {e}"))?;
        if let Some(data) = input {
            let mut stdin = child.stdin.take().expect("stdin");
            let data = data.to_vec();
            let writer = std::thread::spawn(move || {
                let _ = stdin.write_all(&data);
            });
            let out = child.wait_with_output().map_err(|e| e.to_string())?;
            let _ = writer.join();
            return check(out);
        }
        check(child.wait_with_output().map_err(|e| e.to_string())?)
    }

    fn git(&self, args: &[&str], input: Option<&[u8]>) -> Result<Vec<u8>, String> {
        let mut c = self.cmd();
        c.args(args);
        self.run(c, input)
    }

    fn text(&self, args: &[&str]) -> Result<String, String> {
        Ok(String::from_utf8_lossy(&self.git(args, None)?)
            .trim()
            .to_string())
    }

    /// As [`Git::text`] for a command that reads only what `commit` holds:
    /// its answer is remembered when `commit` is a full sha (a commit never
    /// changes).
    fn text_at(&self, commit: &str, args: &[&str]) -> Result<String, String> {
        if !is_full_sha(commit) {
            return self.text(args);
        }
        let key = format!("{}\0{}", self.dir.display(), args.join("\0"));
        if let Some(known) = text_cache().lock().unwrap().get(&key) {
            return Ok(known.clone());
        }
        let text = self.text(args)?;
        let mut cache = text_cache().lock().unwrap();
        if cache.len() > 100_000 {
            cache.clear();
        }
        cache.insert(key, text.clone());
        Ok(text)
    }

    /// `git init --bare` with HEAD on `branch`.
    pub fn init(&self, branch: &str) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
        let mut c = Command::new("git");
        c.args(["init", "--bare", "-q", "--initial-branch", branch])
            .arg(&self.dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null");
        self.run(c, None).map(|_| ())
    }

    /// The branch HEAD points at.
    pub fn head_branch(&self) -> String {
        std::fs::read_to_string(self.dir.join("HEAD"))
            .ok()
            .and_then(|h| {
                h.trim()
                    .strip_prefix("ref: refs/heads/")
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "main".to_string())
    }

    pub fn set_head_branch(&self, branch: &str) -> Result<(), String> {
        self.git(
            &["symbolic-ref", "HEAD", &format!("refs/heads/{branch}")],
            None,
        )
        .map(|_| ())
    }

    /// True when no branch exists yet.
    pub fn is_empty(&self) -> bool {
        !has_file(&self.dir.join("refs/heads")) && self.packed_branches().next().is_none()
    }

    /// The commit a branch points at. Read from the ref files as git keeps
    /// them (a loose ref, else `packed-refs`) rather than by `git rev-parse`:
    /// every request asks, and a racing fleet's thousands of git processes
    /// were most of the test suite's time. `update-ref` renames its lock
    /// file into place, so a read sees the old value or the new one.
    pub fn branch_commit(&self, branch: &str) -> Option<String> {
        if branch.is_empty()
            || branch.contains("..")
            || branch.starts_with(['-', '/'])
            || branch.contains(['\0', '\n'])
        {
            return None;
        }
        let loose = std::fs::read_to_string(self.dir.join("refs/heads").join(branch)).ok();
        let sha = match loose {
            Some(text) => text.trim().to_string(),
            None => self
                .packed_branches()
                .find(|(name, _)| name == branch)
                .map(|(_, sha)| sha)?,
        };
        (sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then_some(sha)
    }

    /// The branches of `packed-refs`, as (name, commit).
    fn packed_branches(&self) -> impl Iterator<Item = (String, String)> {
        let text = std::fs::read_to_string(self.dir.join("packed-refs")).unwrap_or_default();
        let pairs: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .filter_map(|(sha, r)| {
                Some((r.strip_prefix("refs/heads/")?.to_string(), sha.to_string()))
            })
            .collect();
        pairs.into_iter()
    }

    /// The newest `limit` commits reachable from `commit`, newest first.
    pub fn log(&self, commit: &str, limit: usize) -> Vec<String> {
        self.text(&["rev-list", &format!("--max-count={limit}"), commit])
            .map(|t| t.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The entry at `path` in `commit` (`None` if absent).
    pub fn entry(&self, commit: &str, path: &str) -> Option<Entry> {
        self.entries(commit, &[path]).remove(path)
    }

    /// The entries at several paths of `commit`, in one `git ls-tree` call
    /// per chunk of the paths not known yet; a path that does not exist is
    /// absent from the map.
    pub fn entries(&self, commit: &str, paths: &[&str]) -> HashMap<String, Entry> {
        let cacheable = is_full_sha(commit);
        let key = |p: &str| (self.dir.clone(), commit.to_string(), p.to_string());
        let mut out = HashMap::new();
        let mut unknown = Vec::new();
        {
            let cache = entry_cache().lock().unwrap();
            for &p in paths {
                match cache.get(&key(p)).filter(|_| cacheable) {
                    Some(known) => out.extend(known.clone().map(|e| (p.to_string(), e))),
                    None => unknown.push(p),
                }
            }
        }
        for chunk in unknown.chunks(2000) {
            let mut args = vec!["ls-tree", "-l", "-z", commit, "--"];
            args.extend_from_slice(chunk);
            let Ok(raw) = self.git(&args, None) else {
                continue;
            };
            let mut found: HashMap<String, Entry> = parse_entries(&raw)
                .into_iter()
                .map(|e| (e.name.clone(), e))
                .collect();
            let mut cache = entry_cache().lock().unwrap();
            if cache.len() > 100_000 {
                cache.clear();
            }
            for &p in chunk {
                let e = found.remove(p);
                if cacheable {
                    cache.insert(key(p), e.clone());
                }
                out.extend(e.map(|e| (p.to_string(), e)));
            }
        }
        out
    }

    /// The entries of the directory `path` ("" for the root) in `commit`.
    pub fn list_dir(&self, commit: &str, path: &str) -> Vec<Entry> {
        let spec = if path.is_empty() {
            format!("{commit}^{{tree}}")
        } else {
            format!("{commit}:{path}")
        };
        let out = self
            .git(&["ls-tree", "-l", "-z", &spec], None)
            .unwrap_or_default();
        parse_entries(&out)
    }

    pub fn blob(&self, sha: &str) -> Result<Vec<u8>, String> {
        self.git(&["cat-file", "blob", sha], None)
    }

    /// The last commit at or before `commit` touching `path`, and its date.
    pub fn last_commit(&self, commit: &str, path: &str) -> (String, String) {
        let s = self
            .text_at(
                commit,
                &["log", "-1", "--format=%H %cI", commit, "--", path],
            )
            .unwrap_or_default();
        let (sha, when) = s.split_once(' ').unwrap_or((&s, ""));
        (sha.to_string(), when.to_string())
    }

    /// (author name, email, date), (committer...), message, parents, tree of a commit.
    pub fn commit_info(&self, commit: &str) -> Result<CommitInfo, String> {
        let s = self.text_at(
            commit,
            &[
                "show",
                "-s",
                "--format=%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%P%x00%T%x00%B",
                commit,
            ],
        )?;
        let f: Vec<&str> = s.splitn(9, '\0').collect();
        if f.len() < 9 {
            return Err("bad commit".into());
        }
        Ok(CommitInfo {
            sha: commit.to_string(),
            author: (f[0].into(), f[1].into(), f[2].into()),
            committer: (f[3].into(), f[4].into(), f[5].into()),
            parents: f[6].split_whitespace().map(str::to_string).collect(),
            tree: f[7].to_string(),
            message: f[8].to_string(),
        })
    }

    /// Write a commit on `branch` from `parent` (None: a root commit) and
    /// move the branch with a compare-and-swap on its old value.
    pub fn commit(
        &self,
        branch: &str,
        parent: Option<&str>,
        changes: &[Change],
        message: &str,
        author: &Person,
        committer: &Person,
    ) -> Result<String, String> {
        let sha = self.write_commit(parent, changes, message, author, committer)?;
        self.move_branch(branch, &sha, parent)?;
        Ok(sha)
    }

    /// Write the blobs, tree and commit object of `changes` on top of
    /// `parent` (None: a root commit) without moving any branch. Objects
    /// are content-addressed, so this needs no lock.
    pub fn write_commit(
        &self,
        parent: Option<&str>,
        changes: &[Change],
        message: &str,
        author: &Person,
        committer: &Person,
    ) -> Result<String, String> {
        let tmp = tempfile::Builder::new()
            .prefix("testforge-index-")
            .tempdir_in(crate::scratch_root())
            .map_err(|e| e.to_string())?;
        let index = tmp.path().join("index");
        let with_index = |args: &[&str], input: Option<&[u8]>| {
            let mut c = self.cmd();
            c.env("GIT_INDEX_FILE", &index).args(args);
            self.run(c, input)
        };
        if let Some(p) = parent {
            with_index(&["read-tree", p], None)?;
        }
        let info = self.index_info(tmp.path(), changes)?;
        with_index(&["update-index", "-z", "--index-info"], Some(&info))?;
        let tree = String::from_utf8_lossy(&with_index(&["write-tree"], None)?)
            .trim()
            .to_string();
        let mut c = self.cmd();
        c.arg("commit-tree").arg(&tree);
        if let Some(p) = parent {
            c.args(["-p", p]);
        }
        c.args(["-F", "-"])
            .env("GIT_AUTHOR_NAME", &author.name)
            .env("GIT_AUTHOR_EMAIL", &author.email)
            .env("GIT_COMMITTER_NAME", &committer.name)
            .env("GIT_COMMITTER_EMAIL", &committer.email);
        let sha = self.run(c, Some(message.as_bytes()))?;
        Ok(String::from_utf8_lossy(&sha).trim().to_string())
    }

    /// The `update-index --index-info` input of `changes`, writing every
    /// blob with one `hash-object --stdin-paths` call.
    fn index_info(&self, scratch: &Path, changes: &[Change]) -> Result<Vec<u8>, String> {
        let mut list = Vec::new();
        for (i, ch) in changes.iter().enumerate() {
            if let Some(data) = &ch.content {
                let f = scratch.join(format!("blob-{i}"));
                std::fs::write(&f, data).map_err(|e| e.to_string())?;
                list.extend_from_slice(f.to_string_lossy().as_bytes());
                list.push(b'\n');
            }
        }
        let shas = if list.is_empty() {
            Vec::new()
        } else {
            self.git(
                &["hash-object", "-w", "--no-filters", "--stdin-paths"],
                Some(&list),
            )?
        };
        let shas = String::from_utf8_lossy(&shas).into_owned();
        let mut shas = shas.lines();
        let mut info = Vec::new();
        for ch in changes {
            match &ch.content {
                Some(_) => {
                    let sha = shas.next().ok_or("hash-object gave too few shas")?;
                    info.extend_from_slice(format!("100644 {sha}\t{}\0", ch.path).as_bytes());
                }
                None => {
                    info.extend_from_slice(format!("0 {ZERO}\t{}\0", ch.path).as_bytes());
                }
            }
        }
        Ok(info)
    }

    /// Point `branch` at `commit` if it still points at `old` (`None`: the
    /// branch must not exist), as a non-forced push would.
    pub fn move_branch(&self, branch: &str, commit: &str, old: Option<&str>) -> Result<(), String> {
        self.git(
            &[
                "update-ref",
                &format!("refs/heads/{branch}"),
                commit,
                old.unwrap_or(ZERO),
            ],
            None,
        )
        .map(|_| ())
    }

    /// Every branch with the commit it points at, sorted by name.
    pub fn branches(&self) -> Vec<(String, String)> {
        let out = self
            .text(&[
                "for-each-ref",
                "--sort=refname",
                "--format=%(refname:strip=2) %(objectname)",
                "refs/heads/",
            ])
            .unwrap_or_default();
        out.lines()
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(n, c)| (n.to_string(), c.to_string()))
            .collect()
    }
}

pub struct CommitInfo {
    pub sha: String,
    pub author: (String, String, String),
    pub committer: (String, String, String),
    pub parents: Vec<String>,
    pub tree: String,
    pub message: String,
}

fn check(out: std::process::Output) -> Result<Vec<u8>, String> {
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "git failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn parse_entries(out: &[u8]) -> Vec<Entry> {
    out.split(|b| *b == 0)
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let l = String::from_utf8_lossy(l);
            let (meta, name) = l.split_once('\t')?;
            let mut m = meta.split_whitespace();
            let mode = m.next()?.to_string();
            let kind = m.next()?.to_string();
            let sha = m.next()?.to_string();
            let size = m.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            Some(Entry {
                mode,
                kind,
                sha,
                size,
                name: name.to_string(),
            })
        })
        .collect()
}

/// True when `dir` holds a file at any depth.
fn has_file(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_type().is_ok_and(|t| {
                if t.is_dir() {
                    has_file(&e.path())
                } else {
                    true
                }
            })
        })
    })
}

/// Tree entries by (repository, commit, path); `None` for a path the commit
/// lacks. A commit never changes, so what `ls-tree` said of it holds for
/// ever: racing writers check the same paths of the same head again and
/// again, and a git process each was most of a fleet test's time.
type EntryKey = (PathBuf, String, String);

fn entry_cache() -> &'static Mutex<HashMap<EntryKey, Option<Entry>>> {
    static CACHE: OnceLock<Mutex<HashMap<EntryKey, Option<Entry>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn is_full_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What [`Git::text_at`] remembers, by repository and command line.
fn text_cache() -> &'static Mutex<HashMap<String, String>> {
    static CACHE: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}
