//! Secrets (the Forgejo token, the admin secret): a value that Debug never
//! shows, and the scrubber that removes a token from text that came from
//! elsewhere (a server's message). A leaf: it imports nothing of ours.

use std::fmt;

/// A secret value: never shown by Debug or Display.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    /// The value itself; call only where it is sent or compared.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `text` with every whole occurrence of `token` replaced: one not inside a
/// longer run of letters and digits, so that a short token does not eat
/// pieces of words (`GET` stays `GET` for a token `G`).
pub(crate) fn scrub_token(text: &str, token: &str) -> String {
    if token.is_empty() {
        return text.to_string();
    }
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(token) {
        let before = if i > 0 {
            rest[..i].chars().next_back()
        } else {
            out.chars().next_back()
        };
        let after = rest[i + token.len()..].chars().next();
        out.push_str(&rest[..i]);
        if word(before) || word(after) {
            out.push_str(token);
        } else {
            out.push_str("<redacted>");
        }
        rest = &rest[i + token.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_occurrences_of_the_token_are_scrubbed() {
        assert_eq!(scrub_token("GET /user: G", "G"), "GET /user: <redacted>");
        assert_eq!(
            scrub_token("token abcdefgh9 in abcdefgh9x", "abcdefgh9"),
            "token <redacted> in abcdefgh9x"
        );
        assert_eq!(
            scrub_token("a=abcdefgh9&b=abcdefgh9", "abcdefgh9"),
            "a=<redacted>&b=<redacted>"
        );
        assert_eq!(scrub_token("nothing here", ""), "nothing here");
    }
}
