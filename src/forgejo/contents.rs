//! Files: read one (`GET contents`, `/raw/` for large blobs), write one
//! (`POST`/`PUT contents/{path}`), or many in one commit (`POST contents`).

use super::client::{Call, MAX_JSON, MAX_RAW, str_field};
use super::url::{encode_path, encode_segment};
use super::{
    CommitOptions, CommitResult, FileChange, FileOp, ForgeError, ForgejoClient, Method, RemoteFile,
    RepoRef,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

/// `/repos/{owner}/{repo}/{route}/{path}`, each path segment encoded
/// (`route` is `contents` or `raw`).
fn file_path(route: &str, repo: &RepoRef, path: &str) -> String {
    format!(
        "{}/{route}/{}",
        ForgejoClient::repo_path(repo),
        encode_path(path)
    )
}

impl ForgejoClient {
    /// The message of commit `sha` (`GET /repos/{o}/{r}/git/commits/{sha}`,
    /// without stats, verification or the list of files).
    pub fn commit_message(&self, repo: &RepoRef, sha: &str) -> Result<String, ForgeError> {
        let api = format!(
            "{}/git/commits/{}?stat=false&verification=false&files=false",
            Self::repo_path(repo),
            encode_segment(sha)
        );
        let v = self.call_json(Call::Other, Method::Get, &api, None)?;
        v.get("commit")
            .and_then(|c| c.get("message"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                garbage(
                    &format!("GET {api}"),
                    "the answer has no commit.message".into(),
                )
            })
    }

    /// A file's blob sha and bytes; `None` when it does not exist (404) or
    /// the repository is empty (`[]`).
    pub fn read_file(
        &self,
        repo: &RepoRef,
        path: &str,
        git_ref: Option<&str>,
    ) -> Result<Option<RemoteFile>, ForgeError> {
        let query = git_ref
            .map(|r| format!("?ref={}", encode_segment(r)))
            .unwrap_or_default();
        let api = format!("{}{query}", file_path("contents", repo, path));
        let v = match self.call_json(Call::Other, Method::Get, &api, None) {
            Ok(v) => v,
            Err(ForgeError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        if let Some(list) = v.as_array() {
            if list.is_empty() {
                return Ok(None); // an empty repository answers [] for any path
            }
            return Err(ForgeError::NotAFile(format!(
                "{path} is a directory, not a file"
            )));
        }
        let kind = v.get("type").and_then(Value::as_str).unwrap_or("file");
        if kind != "file" {
            return Err(ForgeError::NotAFile(format!(
                "{path} is a {kind}, not a file"
            )));
        }
        let what = format!("GET {api}");
        if let Some(other) = v.get("path").and_then(Value::as_str)
            && other.trim_matches('/') != path.trim_matches('/')
        {
            return Err(garbage(
                &what,
                format!("it describes {other:?}, not the file asked for"),
            ));
        }
        let sha = str_field(&v, "sha", &what)?;
        let size = v.get("size").and_then(Value::as_u64).unwrap_or(0);
        let encoded = v.get("content").and_then(Value::as_str).unwrap_or("");
        let last_commit = v
            .get("last_commit_sha")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        if encoded.is_empty() && size > 0 {
            let raw = format!("{}{query}", file_path("raw", repo, path));
            return self.read_raw(&raw, sha, last_commit);
        }
        let clean: String = encoded.chars().filter(|c| !c.is_whitespace()).collect();
        let content = B64
            .decode(clean.as_bytes())
            .map_err(|e| garbage(&what, format!("content is not base64: {e}")))?;
        check_blob(&what, &sha, &content)?;
        Ok(Some(RemoteFile {
            sha,
            content,
            last_commit,
        }))
    }

    /// A blob too large for the contents answer, from `/raw/`.
    fn read_raw(
        &self,
        raw: &str,
        sha: String,
        last_commit: Option<String>,
    ) -> Result<Option<RemoteFile>, ForgeError> {
        let (status, bytes) = self.send(Method::Get, raw, None, MAX_RAW)?;
        if status == 404 {
            return Ok(None);
        }
        let what = format!("GET {raw}");
        if !(200..300).contains(&status) {
            return Err(self.classify(Call::Other, &what, status, &bytes));
        }
        check_blob(&what, &sha, &bytes)?;
        Ok(Some(RemoteFile {
            sha,
            content: bytes,
            last_commit,
        }))
    }

    /// Create one file (POST); fails with `AlreadyExists` if it exists.
    pub fn create_file(
        &self,
        repo: &RepoRef,
        path: &str,
        content: &[u8],
        opts: &CommitOptions,
    ) -> Result<CommitResult, ForgeError> {
        self.write_file(repo, path, content, None, opts)
    }

    /// Update one file (PUT) whose current blob sha is `sha`.
    pub fn update_file(
        &self,
        repo: &RepoRef,
        path: &str,
        content: &[u8],
        sha: &str,
        opts: &CommitOptions,
    ) -> Result<CommitResult, ForgeError> {
        self.write_file(repo, path, content, Some(sha), opts)
    }

    /// Create (POST, no `sha`) or update (PUT with `sha`) one file.
    fn write_file(
        &self,
        repo: &RepoRef,
        path: &str,
        content: &[u8],
        sha: Option<&str>,
        opts: &CommitOptions,
    ) -> Result<CommitResult, ForgeError> {
        let mut body = common_body(opts);
        body["content"] = json!(B64.encode(content));
        let (call, method) = match sha {
            Some(sha) => {
                body["sha"] = json!(sha);
                (Call::UpdateFile, Method::Put)
            }
            None => (Call::CreateFile, Method::Post),
        };
        let api = file_path("contents", repo, path);
        let what = format!("{method} {api}");
        self.call_json(call, method, &api, Some(&body))
            .and_then(|v| commit_sha(&v, &api))
            .map_err(|e| unread_commit(&what, e))
    }

    /// Several changes in one commit (POST /contents, Forgejo 1.20+).
    /// `Unsupported` means an older server: fall back to one file at a time.
    pub fn change_files(
        &self,
        repo: &RepoRef,
        changes: &[FileChange],
        opts: &CommitOptions,
    ) -> Result<CommitResult, ForgeError> {
        self.commit_changes(repo, &changes.iter().collect::<Vec<_>>(), opts)
    }

    /// [`ForgejoClient::change_files`] of changes held elsewhere (an hour
    /// file and its signature are kept apart until they are sent).
    pub fn commit_changes(
        &self,
        repo: &RepoRef,
        changes: &[&FileChange],
        opts: &CommitOptions,
    ) -> Result<CommitResult, ForgeError> {
        let api = format!("{}/contents", Self::repo_path(repo));
        let what = format!("POST {api}");
        let body = many_files_body(changes, opts)?;
        let mut resp = self
            .request_sent(Method::Post, &api, Some(&body))
            .map_err(|failed| cut_off_while_sending(failed, body.len()))?;
        drop(body);
        if let Some(e) = self.told_by_headers(&what, &resp) {
            return Err(e);
        }
        let status = resp.status().as_u16();
        let reader = resp.body_mut().with_config().limit(MAX_JSON).reader();
        if !(200..300).contains(&status) {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::Read::take(reader, 64 * 1024), &mut bytes)
                .map_err(|e| ForgeError::Network(self.scrub(&format!("{what}: {e}"))))?;
            return Err(self.classify(Call::ManyFiles, &what, status, &bytes));
        }
        // The answer echoes every file's content: stream it and keep only
        // the commit sha, instead of holding it (and a tree of it) in memory.
        #[derive(serde::Deserialize)]
        struct Reply {
            commit: Option<CommitRef>,
        }
        #[derive(serde::Deserialize)]
        struct CommitRef {
            sha: Option<String>,
        }
        let reply: Reply = serde_json::from_reader(std::io::BufReader::new(reader))
            .map_err(|e| {
                if e.is_io() {
                    // The connection broke while the answer was coming: a lost reply.
                    ForgeError::Network(self.scrub(&format!("{what}: {e}")))
                } else {
                    ForgeError::Invalid {
                        status,
                        message: format!("{what}: the answer is not JSON: {e}"),
                    }
                }
            })
            .map_err(|e| unread_commit(&what, e))?;
        match reply.commit.and_then(|c| c.sha).filter(|s| !s.is_empty()) {
            Some(sha) => Ok(CommitResult { commit_sha: sha }),
            None => Err(unread_commit(
                &what,
                ForgeError::Invalid {
                    status,
                    message: format!("{api}: the answer has no commit.sha"),
                },
            )),
        }
    }
}

/// A 2xx answer that is not the Forgejo answer expected.
fn garbage(what: &str, why: String) -> ForgeError {
    ForgeError::Invalid {
        status: 200,
        message: format!("{what}: {why}"),
    }
}

/// A commit request answered 2xx with something that is not Forgejo's
/// answer (a proxy's page, a truncated or foreign JSON): the server took
/// the request and may have committed it, so it is a lost reply (retried;
/// the sha check and the re-read find what landed), never a reason to end
/// the run with the commit unaccounted for.
fn unread_commit(what: &str, e: ForgeError) -> ForgeError {
    match e {
        ForgeError::Invalid {
            status: status @ 200..=299,
            message,
        } => ForgeError::Network(format!(
            "{message} (answered {status}: the commit may have landed; {what} counts as a lost reply)"
        )),
        e => e,
    }
}

/// The bytes read must be the blob `sha` names (git's blob id: SHA-1, or
/// SHA-256 in a repository of that object format): a cache or proxy that
/// answers another version, or a content cut short, would otherwise have
/// its file rewritten from what it did not hold.
fn check_blob(what: &str, sha: &str, content: &[u8]) -> Result<(), ForgeError> {
    let computed = match sha.len() {
        40 => gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::objs::Kind::Blob, content)
            .map(|id| id.to_string())
            .map_err(|e| garbage(what, format!("cannot hash the content: {e}")))?,
        64 => {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            h.update(format!("blob {}\0", content.len()).as_bytes());
            h.update(content);
            h.finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        }
        _ => return Err(garbage(what, format!("sha {sha:?} is not a git object id"))),
    };
    if computed.eq_ignore_ascii_case(sha) {
        return Ok(());
    }
    Err(garbage(
        what,
        format!(
            "its {} bytes are blob {computed}, not the sha {sha} it names (a cache or proxy answering another version?); nothing is written from it",
            content.len()
        ),
    ))
}

/// Bodies at least this large that break off while being sent are taken for
/// a proxy's body limit: nginx answers 413 and closes the connection before
/// reading the body, which the sender sees as a broken pipe or a reset.
/// Only while sending: a reset once the whole body was handed over may come
/// after the server applied the request, and is a lost reply (retried; the
/// sha check and the re-read find what landed).
const CUT_OFF_MIN: usize = 256 * 1024;

fn cut_off_while_sending(failed: super::client::Failed, sent: usize) -> ForgeError {
    let e = failed.error;
    if !failed.while_sending {
        return e;
    }
    let lower = e.message().to_ascii_lowercase();
    let cut = [
        "broken pipe",
        "connection reset",
        "os error 32",
        "os error 104",
    ]
    .iter()
    .any(|s| lower.contains(s));
    match e {
        ForgeError::Network(m) if cut && sent >= CUT_OFF_MIN => ForgeError::TooLarge(format!(
            "{m} (the connection broke while sending {sent} bytes, as a proxy's body limit does)"
        )),
        e => e,
    }
}

/// The options every commit request carries.
fn common_body(opts: &CommitOptions) -> Value {
    let mut b = json!({"message": opts.message});
    if !opts.author_name.is_empty() || !opts.author_email.is_empty() {
        let who = json!({"name": opts.author_name, "email": opts.author_email});
        b["author"] = who.clone();
        b["committer"] = who;
    }
    match (&opts.branch, &opts.new_branch_from) {
        // Forgejo's `branch` is the base; `new_branch` the one created.
        (Some(br), Some(base)) => {
            b["branch"] = json!(base);
            b["new_branch"] = json!(br);
        }
        (Some(br), None) => b["branch"] = json!(br),
        (None, _) => {}
    }
    b
}

/// The `ChangeFilesOptions` JSON, written straight into one buffer: the
/// base64 of every file goes in place, with no intermediate JSON tree
/// (a backlog of 100,000 records is some 30 MB of it).
fn many_files_body(changes: &[&FileChange], opts: &CommitOptions) -> Result<Vec<u8>, ForgeError> {
    let enc = |e: serde_json::Error| ForgeError::Encode(e.to_string());
    let size: usize = changes.iter().map(|c| change_size(c)).sum();
    let mut out = serde_json::to_vec(&common_body(opts)).map_err(enc)?;
    out.reserve(size + 16);
    out.pop(); // the common options' closing brace
    out.extend_from_slice(b",\"files\":[");
    for (i, c) in changes.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"operation\":");
        serde_json::to_writer(&mut out, c.operation.as_str()).map_err(enc)?;
        out.extend_from_slice(b",\"path\":");
        serde_json::to_writer(&mut out, &c.path).map_err(enc)?;
        if c.operation != FileOp::Delete {
            out.extend_from_slice(b",\"content\":\"");
            let start = out.len();
            let len = base64::encoded_len(c.content.len(), true).unwrap_or(0);
            out.resize(start + len, 0);
            B64.encode_slice(&c.content, &mut out[start..])
                .map_err(|e| ForgeError::Encode(e.to_string()))?;
            out.push(b'"');
        }
        if let Some(sha) = &c.sha {
            out.extend_from_slice(b",\"sha\":");
            serde_json::to_writer(&mut out, sha).map_err(enc)?;
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}

/// The bytes a many-files request body takes besides its changes: the
/// options every commit carries (message, author, branch) and the `files`
/// array around the changes.
pub(crate) fn request_overhead(opts: &CommitOptions) -> usize {
    serde_json::to_vec(&common_body(opts)).map_or(usize::MAX / 4, |v| v.len())
        + r#","files":[]"#.len()
}

/// About how many bytes a change takes in a many-files request body.
pub(crate) fn change_size(c: &FileChange) -> usize {
    base64::encoded_len(c.content.len(), true).unwrap_or(usize::MAX / 4) + c.path.len() + 128
}

fn commit_sha(v: &Value, api: &str) -> Result<CommitResult, ForgeError> {
    let sha = v
        .get("commit")
        .and_then(|c| c.get("sha"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ForgeError::Invalid {
            status: 200,
            message: format!("{api}: the answer has no commit.sha"),
        })?;
    Ok(CommitResult {
        commit_sha: sha.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_must_hash_to_its_sha_in_either_object_format() {
        let empty_sha1 = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391";
        let empty_sha256 = "473a0f4c3be8a93681a267e3b1e9a7dcda1185436fe141f7749120a303721813";
        check_blob("GET x", empty_sha1, b"").unwrap();
        check_blob("GET x", &empty_sha1.to_ascii_uppercase(), b"").unwrap();
        check_blob("GET x", empty_sha256, b"").unwrap();
        // `git hash-object` of "O:\n", without and with --object-format=sha256.
        check_blob("GET x", "328ce9a8b3382f9af93afe7e8744839da379f3f1", b"O:\n").unwrap();
        let sha256 = "6e425cf112a0753a2281278515594e8f7e78af1f52202f94a8e8ae51d719d93e";
        check_blob("GET x", sha256, b"O:\n").unwrap();
        for (sha, content) in [
            (empty_sha1, &b"O:\n"[..]),
            (empty_sha256, b"O:\n"),
            ("e69de29b", b""),
            ("", b""),
        ] {
            let e = check_blob("GET x", sha, content).unwrap_err();
            assert!(
                matches!(e, ForgeError::Invalid { status: 200, .. }),
                "{e:?}"
            );
            assert_eq!(e.kind(), crate::error::Kind::TempFail);
        }
    }
}
