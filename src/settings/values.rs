//! The rules a setting's value must follow. A value that breaks one fails
//! every run the same way: configuration (78), not a forge that is down.

use crate::error::{Kind, fail};
use anyhow::Result;
use std::net::{SocketAddr, ToSocketAddrs};

/// A control character in the URL can never reach a server: every request
/// would fail the same way, which is configuration (78), not a forge that
/// is down (75, retried for ever).
pub(crate) fn refuse_control_in_url(url: &str) -> Result<()> {
    match url.chars().position(char::is_control) {
        Some(at) => Err(fail(
            Kind::Config,
            format!(
                "Forgejo URL `{}` contains a control character (at character {}); set \
                 --forgejo-url, HERO_USAGE_FORGEJO_URL or forgejo_url to the server's base URL, \
                 e.g. https://forge.example.org",
                crate::text::escape_controls(url),
                at + 1
            ),
        )),
        None => Ok(()),
    }
}

/// Shortest token accepted: a shorter one is surely a mistake, and the
/// scrubbing of messages could not tell it from ordinary words.
pub(crate) const MIN_TOKEN_CHARS: usize = 8;

/// A token must be at least [`MIN_TOKEN_CHARS`] visible ASCII characters:
/// anything else cannot go into an HTTP header as it is, and would fail
/// every run the same way. The problem never quotes the token.
pub(crate) fn check_token(token: &str) -> std::result::Result<(), String> {
    if let Some(at) = token.chars().position(|c| c.is_control()) {
        return Err(format!(
            "contains a control character (at character {})",
            at + 1
        ));
    }
    if let Some(at) = token.chars().position(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "contains a character that is not visible ASCII, such as a space or a non-ASCII \
             letter (at character {})",
            at + 1
        ));
    }
    let n = token.chars().count();
    if n < MIN_TOKEN_CHARS {
        return Err(format!(
            "is {n} characters long; a token has at least {MIN_TOKEN_CHARS}"
        ));
    }
    Ok(())
}

/// A branch setting must be a valid git branch name (`git check-ref-format
/// --branch`) once `{node}` is replaced: anything else fails every run the
/// same way, which is configuration (78), not a bug.
pub(crate) fn check_branch(branch: &str) -> std::result::Result<(), String> {
    let b = branch.replace("{node}", "node");
    let bad_char = b
        .chars()
        .find(|c| c.is_control() || " ~^:?*[\\".contains(*c));
    if let Some(c) = bad_char {
        return Err(format!(
            "contains `{}`, which git does not allow in a branch name",
            c.escape_debug()
        ));
    }
    let bad_part = b.split('/').any(|part| {
        part.is_empty() || part.starts_with('.') || part.ends_with(".lock") || part.ends_with('.')
    });
    if b.is_empty() || b == "@" || b.contains("..") || b.contains("@{") || bad_part {
        return Err(
            "is not a valid git branch name (no `..`, `@{`, empty or dot-led parts, \
             no `.lock` or `.` at a part's end)"
                .into(),
        );
    }
    Ok(())
}

/// `OWNER/NAME`, each part a valid Forgejo name (letters, digits, `-_.`).
pub(crate) fn split_repo(full: &str) -> Result<(String, String)> {
    let bad = || {
        fail(
            Kind::Config,
            "repo must be OWNER/NAME, each of letters, digits, - _ . (at most 100), e.g. lhumina_code/hero_onboarding_billing",
        )
    };
    let (owner, name) = full.split_once('/').ok_or_else(bad)?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if !ok(owner) || !ok(name) {
        return Err(bad());
    }
    Ok((owner.to_string(), name.to_string()))
}

/// The address to bind: `listen` resolved; every address it names must be
/// loopback unless `allow_remote`.
pub fn listen_addr(listen: &str, allow_remote: bool) -> Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = listen
        .to_socket_addrs()
        .map_err(|e| {
            fail(
                Kind::Config,
                format!("listen address `{listen}` is not HOST:PORT ({e}); e.g. 127.0.0.1:9920"),
            )
        })?
        .collect();
    let Some(first) = addrs.first().copied() else {
        return Err(fail(
            Kind::Config,
            format!("listen address `{listen}` names no address"),
        ));
    };
    if !allow_remote && addrs.iter().any(|a| !a.ip().is_loopback()) {
        return Err(fail(
            Kind::Config,
            format!(
                "listen address `{listen}` is not loopback; the shim binds loopback only \
                 unless --allow-remote is given"
            ),
        ));
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_visible_ascii_of_at_least_8() {
        assert!(check_token("0123456789abcdef").is_ok());
        assert!(
            check_token("abc\u{1b}defgh")
                .unwrap_err()
                .contains("control")
        );
        assert!(check_token("abcdéfghij").unwrap_err().contains("ASCII"));
        assert!(check_token("abc defghij").unwrap_err().contains("ASCII"));
        assert!(check_token("G").unwrap_err().contains("at least 8"));
        // The problem never quotes the token.
        assert!(
            !check_token("secret\u{7}xyz")
                .unwrap_err()
                .contains("secret")
        );
    }

    #[test]
    fn branches_follow_git_rules() {
        for ok in ["main", "usage/{node}", "release-1.2", "a/b/c"] {
            assert_eq!(check_branch(ok), Ok(()), "{ok}");
        }
        for bad in [
            "../main", "a..b", "/main", "main/", ".hidden", "x.lock", "a b", "a\nb", "@", "a@{1}",
            "a~1", "",
        ] {
            assert!(check_branch(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn loopback_only_unless_allowed() {
        assert!(listen_addr("127.0.0.1:0", false).is_ok());
        assert!(listen_addr("[::1]:0", false).is_ok());
        assert!(listen_addr("0.0.0.0:0", false).is_err());
        assert!(listen_addr("0.0.0.0:0", true).is_ok());
        assert!(listen_addr("nonsense", false).is_err());
    }
}
