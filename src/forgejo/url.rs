//! The base URL's rules (https unless loopback) and path encoding.

use super::ForgeError;
use std::net::ToSocketAddrs;

/// Parse and check a base URL; answer it without a trailing slash. https is
/// required unless the host is loopback or `insecure_http`.
pub(crate) fn check_base_url(url: &str, insecure_http: bool) -> Result<String, ForgeError> {
    if url.contains('@') {
        // Never echo credentials back, whatever the scheme: no URL in this
        // message.
        return Err(ForgeError::Config(
            "the Forgejo URL may not contain user information (user:password@); put the token in the token file".into(),
        ));
    }
    let bad = |m: &str| ForgeError::Config(format!("{m}: {url:?}"));
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("not a URL (expected https://host[:port][/path])"))?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Err(bad("the scheme must be https (or http for loopback)"));
    }
    if rest.contains(['?', '#']) {
        return Err(bad("the URL may not carry a query or fragment"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = host_of(authority).ok_or_else(|| bad("no host in URL"))?;
    if scheme == "http" && !insecure_http && !is_loopback(&host) {
        return Err(bad(
            "https:// is required for a forge that is not on loopback (or pass --insecure-http)",
        ));
    }
    if path.contains(char::is_whitespace) {
        return Err(bad("white space in URL path"));
    }
    let path = path.trim_end_matches('/');
    Ok(format!("{scheme}://{authority}{path}"))
}

fn host_of(authority: &str) -> Option<String> {
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?.to_string()
    } else {
        authority.split(':').next()?.to_string()
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// 127.0.0.0/8 and ::1; a name (`localhost`, `*.localhost`) only when every
/// address it resolves to is loopback: a resolver may map such a name
/// anywhere, and plain http must never leave the machine.
pub(crate) fn is_loopback(host: &str) -> bool {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    if host != "localhost" && !host.ends_with(".localhost") {
        return false;
    }
    match (host, 0u16).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// Percent-encode each segment of a path (keeps `/` between segments).
pub(crate) fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_rules() {
        let ok = |u: &str| check_base_url(u, false).unwrap();
        assert_eq!(
            ok("https://forge.example.org/"),
            "https://forge.example.org"
        );
        assert_eq!(
            ok("http://127.0.0.1:3000/forgejo/"),
            "http://127.0.0.1:3000/forgejo"
        );
        assert_eq!(ok("http://127.1.2.3"), "http://127.1.2.3");
        assert_eq!(ok("http://[::1]:8080"), "http://[::1]:8080");
        assert_eq!(ok("http://localhost:3000"), "http://localhost:3000");
        for bad in [
            "http://forge.example.org",
            "http://10.0.0.1",
            "ftp://x",
            "forge.example.org",
            "https://u:p@forge.example.org",
            "https://forge.example.org/?a=b",
            "http://127.0.0.1.evil.org",
        ] {
            assert!(
                matches!(check_base_url(bad, false), Err(ForgeError::Config(_))),
                "{bad}"
            );
        }
        assert!(check_base_url("http://forge.example.org", true).is_ok());
        // Credentials are never echoed, whatever else is wrong.
        for with_secret in ["ftp://user:s3cret@host", "https://u:s3cret@h/x", "s3cret@h"] {
            let e = check_base_url(with_secret, false).unwrap_err().to_string();
            assert!(!e.contains("s3cret"), "{e}");
        }
    }

    #[test]
    fn a_localhost_name_counts_only_by_what_it_resolves_to() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("::1"));
        assert!(!is_loopback("10.0.0.1"));
        assert!(!is_loopback("localhost.evil.org"));
        // Whatever the resolver says, the answer is its addresses', never
        // the name's: a name that does not resolve is not loopback.
        let resolves = ("x.localhost", 0u16)
            .to_socket_addrs()
            .map(|a| a.collect::<Vec<_>>())
            .unwrap_or_default();
        assert_eq!(
            is_loopback("x.localhost"),
            !resolves.is_empty() && resolves.iter().all(|a| a.ip().is_loopback())
        );
    }

    #[test]
    fn paths_are_encoded_per_segment() {
        assert_eq!(
            encode_path("nodes/a b/usage#1.otoml"),
            "nodes/a%20b/usage%231.otoml"
        );
        assert_eq!(encode_path("x/%/?"), "x/%25/%3F");
    }
}
