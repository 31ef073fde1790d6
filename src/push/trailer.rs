//! The trailers the push's commit messages end with (man 1 hero_usage_push,
//! ONE NODE, ONE SPOOL): `Hero-Usage-Spool: <spool id>` on every commit, and
//! `Hero-Usage-Adopts: <old id>` on a commit that takes a node over from
//! another spool. The audit reads the same lines: keep the format exactly.

/// The trailer naming the spool that made a commit.
pub const SPOOL: &str = "Hero-Usage-Spool";
/// The trailer naming a spool whose node this commit takes over.
pub const ADOPTS: &str = "Hero-Usage-Adopts";

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

/// The spool a commit message names in its last `Hero-Usage-Spool:` line;
/// `None` for a commit without one (an older tool's: it binds nothing).
pub fn spool_of(message: &str) -> Option<&str> {
    message
        .lines()
        .rev()
        .filter_map(|l| l.strip_prefix(SPOOL)?.strip_prefix(':'))
        .map(str::trim)
        .find(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_end_the_message_and_read_back() {
        let id = "0123456789abcdef0123456789abcdef".to_string();
        let old = "fedcba9876543210fedcba9876543210".to_string();
        let m = with_trailers("usage: 3 records from node n in 2 file(s)", &id, [&old]);
        assert_eq!(
            m,
            format!(
                "usage: 3 records from node n in 2 file(s)\n\n\
                 Hero-Usage-Adopts: {old}\nHero-Usage-Spool: {id}\n"
            )
        );
        assert_eq!(spool_of(&m), Some(id.as_str()));
        let plain = with_trailers("x", &id, []);
        assert_eq!(plain, format!("x\n\nHero-Usage-Spool: {id}\n"));
        assert_eq!(spool_of("usage: 3 records from node n in 1 file(s)"), None);
        assert_eq!(spool_of("x\n\nHero-Usage-Spool:   \n"), None);
        assert_eq!(spool_of("x\n\nHero-Usage-Spool-Other: a\n"), None);
    }
}
