//! The trailers that end the push's commit messages (man 1 hero_usage_push,
//! ONE NODE, ONE SPOOL): `Hero-Usage-Spool: <spool id>` on every commit, and
//! `Hero-Usage-Adopts: <old id>` on a commit that takes a node over from
//! another spool. The push writes them and reads another spool's; the audit
//! reads them all: one format, one reader. Pure.

/// The trailer naming the spool that made a commit.
pub const SPOOL: &str = "Hero-Usage-Spool";
/// The trailer naming a spool whose node this commit takes over.
pub const ADOPTS: &str = "Hero-Usage-Adopts";

/// A spool id: 32 lowercase hex digits (128 random bits).
pub fn is_spool_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `message`, a blank line, one `Hero-Usage-Adopts:` line per adopted id,
/// and `Hero-Usage-Spool: <spool>` last.
pub fn with_trailers<'a>(
    message: &str,
    spool: &str,
    adopts: impl IntoIterator<Item = &'a String>,
) -> String {
    let mut out = format!("{}\n\n", message.trim_end());
    for old in adopts {
        out.push_str(&format!("{ADOPTS}: {old}\n"));
    }
    out.push_str(&format!("{SPOOL}: {spool}\n"));
    out
}

/// The spool trailers of one commit message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trailers {
    /// `None` for a commit without one (an older tool's: it binds nothing).
    pub spool: Option<String>,
    /// One id per `Hero-Usage-Adopts:` line.
    pub adopts: Vec<String>,
}

/// The trailers of a commit message: `Key: value` lines of its last
/// paragraph; a value that is no spool id (32 hex digits, either case) is
/// no trailer.
pub fn read(message: &str) -> Trailers {
    let last = message.trim_end().rsplit("\n\n").next().unwrap_or_default();
    let mut out = Trailers::default();
    for line in last.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_ascii_lowercase();
        if !is_spool_id(&value) {
            continue;
        }
        if key.eq_ignore_ascii_case(SPOOL) {
            out.spool = Some(value);
        } else if key.eq_ignore_ascii_case(ADOPTS) {
            out.adopts.push(value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef";
    const B: &str = "fedcba9876543210fedcba9876543210";

    fn t(spool: Option<&str>, adopts: &[&str]) -> Trailers {
        Trailers {
            spool: spool.map(str::to_string),
            adopts: adopts.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn trailers_end_the_message_and_read_back() {
        let (id, old) = (A.to_string(), B.to_string());
        let m = with_trailers("usage: 3 records from node n in 2 file(s)", &id, [&old]);
        assert_eq!(
            m,
            format!(
                "usage: 3 records from node n in 2 file(s)\n\n\
                 Hero-Usage-Adopts: {old}\nHero-Usage-Spool: {id}\n"
            )
        );
        assert_eq!(read(&m), t(Some(A), &[B]));
        let plain = with_trailers("x", &id, []);
        assert_eq!(plain, format!("x\n\nHero-Usage-Spool: {id}\n"));
        assert_eq!(
            read("usage: 3 records from node n in 1 file(s)"),
            t(None, &[])
        );
        assert_eq!(read("x\n\nHero-Usage-Spool:   \n"), t(None, &[]));
        assert_eq!(
            read(&format!("x\n\nHero-Usage-Spool-Other: {A}\n")),
            t(None, &[])
        );
    }

    #[test]
    fn trailers_are_read_from_the_last_paragraph() {
        let m = format!("n1: 3 records\n\n{SPOOL}: {A}\n{ADOPTS}: {B}\n");
        assert_eq!(read(&m), t(Some(A), &[B]));
        assert_eq!(read(&format!("{SPOOL}: {A}\n\nbody after")), t(None, &[]));
        assert_eq!(read(&format!("x\n\n{SPOOL}: 12")), t(None, &[]));
        let two = format!("x\n\n{ADOPTS}: {A}\n{ADOPTS}: {B}\n{SPOOL}: {A}\n");
        assert_eq!(read(&two).adopts, [A, B]);
        let upper = A.to_ascii_uppercase();
        assert_eq!(read(&format!("x\n\n{SPOOL}: {upper}")), t(Some(A), &[]));
    }

    #[test]
    fn a_spool_id_is_32_lowercase_hex_digits() {
        assert!(is_spool_id(A));
        assert!(!is_spool_id(&A.to_ascii_uppercase()));
        assert!(!is_spool_id(&A[1..]));
        assert!(!is_spool_id("0123456789abcdef0123456789abcdeg"));
    }
}
