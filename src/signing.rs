//! Signed hour files (man 1 hero_usage_push, SIGNED HOUR FILES): a node
//! signs the exact bytes of every hour file it writes with its OpenSSH
//! ed25519 key, as `ssh-keygen -Y sign -n hero-usage` would (SSHSIG,
//! armored, sha512), and the billing side checks them against an OpenSSH
//! `allowed_signers` file.
//! The signature of `nodes/<node>/usage_<hour>.otoml` lives at
//! `signatures/<node>/usage_<hour>.otoml.sig`.
//!
//! Ed25519 signatures are deterministic: the same key over the same bytes
//! gives the same signature, byte for byte the one `ssh-keygen` writes.

use crate::error::{Kind, fail};
use crate::fsx::read_small_text;
use anyhow::Result;
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};
use std::fmt;
use std::path::{Path, PathBuf};

/// The SSHSIG namespace of every hour file's signature.
pub const NAMESPACE: &str = "hero-usage";
/// The key file under `$HOME` used when none is configured and it exists.
pub const DEFAULT_KEY_FILE: &str = "hero/cfg/hero_usage_signing_key";
/// Largest key or allowed_signers file read (an ed25519 key is 400 bytes).
const MAX_KEY_BYTES: u64 = 64 * 1024;
const MAX_ALLOWED_SIGNERS_BYTES: u64 = 16 * 1024 * 1024;

/// `$HOME/hero/cfg/hero_usage_signing_key` (whether it exists or not).
pub fn default_key_path() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(DEFAULT_KEY_FILE))
}

/// A node's signing key, loaded.
#[derive(Clone)]
pub struct Signer {
    key: PrivateKey,
    path: PathBuf,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({})", self.path.display())
    }
}

impl Signer {
    /// Load an OpenSSH ed25519 private key. Like ssh, refuse a key file that
    /// others may read or write (78), and a key that is not ed25519 or is
    /// protected by a passphrase (an unattended job cannot type one).
    pub fn load(path: &Path) -> Result<Signer> {
        let bad = |why: String| {
            fail(
                Kind::Config,
                format!("signing key file {}: {why}", path.display()),
            )
        };
        check_private_mode(path).map_err(&bad)?;
        let text = read_small_text(path, MAX_KEY_BYTES).map_err(&bad)?;
        let key = PrivateKey::from_openssh(text.trim_start()).map_err(|e| {
            bad(format!(
                "not an OpenSSH private key ({e}); make one with hero_usage_push --init-signing-key or ssh-keygen -t ed25519"
            ))
        })?;
        if key.is_encrypted() {
            return Err(bad(format!(
                "the key is protected by a passphrase, which an unattended push cannot type; remove it with ssh-keygen -p -N '' -f {}",
                path.display()
            )));
        }
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(bad(format!(
                "the key is {}, but hour files are signed with ed25519 keys; make one with hero_usage_push --init-signing-key",
                key.algorithm()
            )));
        }
        Ok(Signer {
            key,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The armored SSH signature of `bytes` (namespace `hero-usage`,
    /// sha512), exactly as `ssh-keygen -Y sign` writes it.
    pub fn sign(&self, bytes: &[u8]) -> Result<Vec<u8>> {
        let sig = self
            .key
            .sign(NAMESPACE, HashAlg::Sha512, bytes)
            .and_then(|s| s.to_pem(LineEnding::LF))
            .map_err(|e| fail(Kind::Internal, format!("cannot sign: {e}")))?;
        let mut out = sig.into_bytes();
        if out.last() != Some(&b'\n') {
            out.push(b'\n');
        }
        Ok(out)
    }

    pub fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }

    /// The node's `allowed_signers` line:
    /// `<node> namespaces="hero-usage" ssh-ed25519 AAAA...`.
    pub fn allowed_signers_line(&self, node: &str) -> String {
        let data = self.key.public_key().key_data().clone();
        let bare = PublicKey::new(data, "")
            .to_openssh()
            .unwrap_or_else(|e| format!("<cannot encode the public key: {e}>"));
        format!("{node} namespaces=\"{NAMESPACE}\" {}", bare.trim_end())
    }
}

/// Create a new ed25519 key at `path` (mode 0600, OpenSSH format, so that
/// `ssh-keygen` can use it too) unless a file is there: an existing key is
/// never overwritten, only loaded. The flag says whether it was created.
pub fn init_key(path: &Path, node: &str) -> Result<(Signer, bool)> {
    if std::fs::symlink_metadata(path).is_ok() {
        return Ok((Signer::load(path)?, false));
    }
    let cant = |e: std::io::Error| {
        fail(
            Kind::Config,
            format!("cannot create the signing key {}: {e}", path.display()),
        )
    };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(cant)?;
    }
    let mut rng = ssh_key::rand_core::OsRng;
    let mut key = PrivateKey::random(&mut rng, Algorithm::Ed25519)
        .map_err(|e| fail(Kind::Internal, format!("cannot make a key: {e}")))?;
    key.set_comment(format!("hero_usage {node}"));
    let pem = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| fail(Kind::Internal, format!("cannot encode the key: {e}")))?;
    // Written whole beside it, then linked into place: a crash leaves no
    // half key, and the link fails rather than overwrite a key made meanwhile.
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("key"),
        std::process::id()
    ));
    let written = write_private(&tmp, pem.as_bytes()).and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Ok((Signer::load(path)?, false));
        }
        Err(e) => return Err(cant(e)),
    }
    if let Some(dir) = dir {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok((Signer::load(path)?, true))
}

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// A private key file must be readable by its owner only (as ssh demands).
fn check_private_mode(path: &Path) -> std::result::Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "its mode {mode:04o} lets others read or change it; run chmod 600 {} (ssh refuses such a key too)",
            path.display()
        ));
    }
    Ok(())
}

/// What checking one signature found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Signed by a key the principal may sign with, in our namespace.
    Good,
    /// Not an armored SSH signature.
    Unreadable(String),
    /// The principal's key, but the bytes or the namespace do not match.
    Bad(String),
    /// A valid-looking signature by a key not allowed for the principal;
    /// the principals that key belongs to, if any.
    OtherSigner(Vec<String>),
}

impl Verdict {
    /// Why it is not good, for a message; `None` when it is.
    pub fn problem(&self, principal: &str) -> Option<String> {
        match self {
            Verdict::Good => None,
            Verdict::Unreadable(why) => Some(format!("the signature cannot be read: {why}")),
            Verdict::Bad(why) => Some(format!("the signature does not verify: {why}")),
            Verdict::OtherSigner(owners) if owners.is_empty() => Some(format!(
                "signed by a key that allowed_signers does not list, not by {principal}'s"
            )),
            Verdict::OtherSigner(owners) => Some(format!(
                "signed by the key of {}, not by {principal}'s",
                owners.join(", ")
            )),
        }
    }
}

/// One line of an `allowed_signers` file.
#[derive(Debug, Clone)]
struct Allowed {
    /// Comma-separated patterns (`*`, `?`, `!` negation), as OpenSSH reads them.
    principals: String,
    /// `None`: any namespace.
    namespaces: Option<String>,
    key: PublicKey,
}

impl Allowed {
    fn allows(&self, principal: &str, namespace: &str) -> bool {
        pattern_list_matches(&self.principals, principal)
            && self
                .namespaces
                .as_deref()
                .is_none_or(|n| pattern_list_matches(n, namespace))
    }
}

/// The keys each principal may sign with: OpenSSH's `allowed_signers`
/// format (`man ssh-keygen`, ALLOWED SIGNERS): per line the principals, an
/// optional `namespaces="..."`, the key type and base64 key, a comment;
/// blank lines and `#` lines are skipped.
#[derive(Debug, Clone, Default)]
pub struct AllowedSigners {
    entries: Vec<Allowed>,
}

impl AllowedSigners {
    /// Read and parse a file; any fault is a configuration error (78)
    /// naming the file and line.
    pub fn load(path: &Path) -> Result<AllowedSigners> {
        let text = read_small_text(path, MAX_ALLOWED_SIGNERS_BYTES).map_err(|why| {
            fail(
                Kind::Config,
                format!("cannot read allowed signers file {}: {why}", path.display()),
            )
        })?;
        AllowedSigners::parse(&text).map_err(|why| {
            fail(
                Kind::Config,
                format!("allowed signers file {}: {why}", path.display()),
            )
        })
    }

    pub fn parse(text: &str) -> std::result::Result<AllowedSigners, String> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            entries.push(parse_line(line).map_err(|why| format!("line {}: {why}", i + 1))?);
        }
        Ok(AllowedSigners { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Check the armored signature `sig` of `msg` by `principal` in
    /// namespace `hero-usage`.
    pub fn verify(&self, principal: &str, msg: &[u8], sig: &[u8]) -> Verdict {
        let parsed = match SshSig::from_pem(sig) {
            Ok(s) => s,
            Err(e) => return Verdict::Unreadable(e.to_string()),
        };
        let signer = parsed.public_key();
        let of_key: Vec<&Allowed> = self
            .entries
            .iter()
            .filter(|a| a.key.key_data() == signer)
            .collect();
        let Some(allowed) = of_key.iter().find(|a| a.allows(principal, NAMESPACE)) else {
            let mut owners: Vec<String> = of_key.iter().map(|a| a.principals.clone()).collect();
            owners.dedup();
            return Verdict::OtherSigner(owners);
        };
        match allowed.key.verify(NAMESPACE, msg, &parsed) {
            Ok(()) => Verdict::Good,
            Err(ssh_key::Error::Namespace) => Verdict::Bad(format!(
                "made for namespace {:?}, not {NAMESPACE}",
                parsed.namespace()
            )),
            Err(e) => Verdict::Bad(format!("{e} (the file's bytes are not the ones signed)")),
        }
    }
}

/// Split off the first field of `s`: up to white space outside double quotes.
fn field(s: &str) -> (&str, &str) {
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return (&s[..i], s[i..].trim_start()),
            _ => {}
        }
    }
    (s, "")
}

fn parse_line(line: &str) -> std::result::Result<Allowed, String> {
    let (principals, rest) = field(line);
    let principals = principals.trim_matches('"').to_string();
    let (second, after) = field(rest);
    let (options, key_text) = if is_key_type(second) {
        ("", rest)
    } else {
        (second, after)
    };
    let mut namespaces = None;
    for opt in split_options(options) {
        let (name, value) = opt.split_once('=').unwrap_or((opt, ""));
        match name.to_ascii_lowercase().as_str() {
            "namespaces" => namespaces = Some(value.trim_matches('"').to_string()),
            other => {
                return Err(format!(
                    "option {other} is not supported (only namespaces=\"...\"); give the key itself"
                ));
            }
        }
    }
    let (kind, after_kind) = field(key_text);
    let (data, _comment) = field(after_kind);
    if kind.is_empty() || data.is_empty() {
        return Err(
            "expected: principals [namespaces=\"hero-usage\"] ssh-ed25519 AAAA... [comment]".into(),
        );
    }
    let key = PublicKey::from_openssh(&format!("{kind} {data}"))
        .map_err(|e| format!("the key `{kind} {data:.20}...` cannot be read: {e}"))?;
    Ok(Allowed {
        principals,
        namespaces,
        key,
    })
}

fn is_key_type(s: &str) -> bool {
    s.starts_with("ssh-") || s.starts_with("ecdsa-") || s.starts_with("sk-")
}

/// Options are comma-separated; a comma inside double quotes is not a separator.
fn split_options(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut start) = (false, 0);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// OpenSSH's pattern lists: comma-separated globs, `!` negates (a negated
/// match refuses whatever else matches).
fn pattern_list_matches(list: &str, name: &str) -> bool {
    let mut matched = false;
    for pat in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match pat.strip_prefix('!') {
            Some(neg) if glob(neg.as_bytes(), name.as_bytes()) => return false,
            Some(_) => {}
            None => matched |= glob(pat.as_bytes(), name.as_bytes()),
        }
    }
    matched
}

/// `*` any run, `?` any one byte.
fn glob(pat: &[u8], s: &[u8]) -> bool {
    match (pat.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&pat[1..], s) || (!s.is_empty() && glob(pat, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&pat[1..], &s[1..]),
        (Some(p), Some(c)) if p == c => glob(&pat[1..], &s[1..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        let mut rng = ssh_key::rand_core::OsRng;
        Signer {
            key: PrivateKey::random(&mut rng, Algorithm::Ed25519).unwrap(),
            path: PathBuf::from("k"),
        }
    }

    fn allowed(lines: &[String]) -> AllowedSigners {
        AllowedSigners::parse(&lines.join("\n")).unwrap()
    }

    #[test]
    fn a_signature_verifies_for_its_principal_only() {
        let (a, b) = (signer(), signer());
        let list = allowed(&[
            "# the fleet".into(),
            String::new(),
            a.allowed_signers_line("n1"),
            b.allowed_signers_line("n2"),
        ]);
        let msg = b"O:\n[[records]]\n";
        let sig = a.sign(msg).unwrap();
        assert!(sig.starts_with(b"-----BEGIN SSH SIGNATURE-----\n"));
        assert!(sig.ends_with(b"-----END SSH SIGNATURE-----\n"));
        assert_eq!(sig, a.sign(msg).unwrap(), "ed25519 is deterministic");
        assert_eq!(list.verify("n1", msg, &sig), Verdict::Good);
        assert_eq!(
            list.verify("n2", msg, &sig),
            Verdict::OtherSigner(vec!["n1".into()])
        );
        assert!(matches!(list.verify("n1", b"other", &sig), Verdict::Bad(_)));
        assert!(matches!(
            list.verify("n1", msg, b"junk"),
            Verdict::Unreadable(_)
        ));
        let stranger = signer().sign(msg).unwrap();
        assert_eq!(
            list.verify("n1", msg, &stranger),
            Verdict::OtherSigner(vec![])
        );
    }

    #[test]
    fn namespaces_and_patterns_restrict_a_key() {
        let a = signer();
        let key = a.allowed_signers_line("x");
        let key = key.split_once("namespaces=\"hero-usage\" ").unwrap().1;
        let msg = b"m";
        let sig = a.sign(msg).unwrap();
        for (line, n1) in [
            (format!("n1 {key}"), true),
            (format!("n* {key} comment"), true),
            (
                format!("\"n1,n2\" namespaces=\"git,hero-usage\" {key}"),
                true,
            ),
            (format!("n1 namespaces=\"git\" {key}"), false),
            (format!("*,!n1 {key}"), false),
        ] {
            let ok = allowed(std::slice::from_ref(&line)).verify("n1", msg, &sig) == Verdict::Good;
            assert_eq!(ok, n1, "{line}");
        }
        for bad in [
            format!("n1 cert-authority {key}"),
            "n1 ssh-ed25519".to_string(),
            "n1 ssh-ed25519 AAAAnotbase64".to_string(),
        ] {
            assert!(AllowedSigners::parse(&bad).is_err(), "{bad}");
        }
    }
}
