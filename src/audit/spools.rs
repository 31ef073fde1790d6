//! One node, one spool (man 1 hero_usage_audit, Checks, two-spools): the spool ids that
//! wrote each node, read from the `Hero-Usage-Spool` and
//! `Hero-Usage-Adopts` trailers of the commits touching its folder, in
//! history order. Another id writing a node is a violation unless its
//! commit adopts the id before it. Commits without the trailer (older
//! tools) bind nothing. Pure.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const SPOOL_TRAILER: &str = "Hero-Usage-Spool";
pub const ADOPTS_TRAILER: &str = "Hero-Usage-Adopts";

/// The spool trailers of one commit message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trailers {
    pub spool: Option<String>,
    /// One id per `Hero-Usage-Adopts:` line.
    pub adopts: Vec<String>,
}

/// The trailers of a commit message: `Key: value` lines of its last
/// paragraph; a value that is no spool id (32 hex digits) is no trailer.
pub fn trailers(message: &str) -> Trailers {
    let last = message.trim_end().rsplit("\n\n").next().unwrap_or_default();
    let mut out = Trailers::default();
    for line in last.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if !is_spool_id(value) {
            continue;
        }
        let value = value.to_ascii_lowercase();
        if key.eq_ignore_ascii_case(SPOOL_TRAILER) {
            out.spool = Some(value);
        } else if key.eq_ignore_ascii_case(ADOPTS_TRAILER) {
            out.adopts.push(value);
        }
    }
    out
}

fn is_spool_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The spool ids that wrote one node, first writer first, and the one
/// that holds it now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSpools {
    pub ids: Vec<String>,
    pub current: Option<String>,
}

/// Every node's spool ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spools(pub BTreeMap<String, NodeSpools>);

impl Spools {
    /// A commit with trailers `t` wrote `node`'s folder: why that breaks
    /// the rule, if it does.
    pub fn see(&mut self, node: &str, t: &Trailers) -> Option<String> {
        let id = t.spool.as_ref()?;
        let n = self.0.entry(node.to_string()).or_default();
        if !n.ids.contains(id) {
            n.ids.push(id.clone());
        }
        let why = match &n.current {
            Some(current) if current != id && !t.adopts.contains(current) => Some(format!(
                "written by spool {current}, then by spool {id} without {ADOPTS_TRAILER}: {current} (two spools pushing as one node bill retries twice; see MOVING A NODE in man 7 hero_usage)"
            )),
            _ => None,
        };
        n.current = Some(id.clone());
        why
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef";
    const B: &str = "fedcba9876543210fedcba9876543210";

    fn t(spool: Option<&str>, adopts: Option<&str>) -> Trailers {
        Trailers {
            spool: spool.map(str::to_string),
            adopts: adopts.map(str::to_string).into_iter().collect(),
        }
    }

    #[test]
    fn trailers_are_read_from_the_last_paragraph() {
        let m = format!("n1: 3 records\n\n{SPOOL_TRAILER}: {A}\n{ADOPTS_TRAILER}: {B}\n");
        assert_eq!(trailers(&m), t(Some(A), Some(B)));
        let m = format!("{SPOOL_TRAILER}: {A}\n\nbody after");
        assert_eq!(trailers(&m), t(None, None));
        assert_eq!(
            trailers(&format!("x\n\n{SPOOL_TRAILER}: 12")),
            t(None, None)
        );
        let two =
            format!("x\n\n{ADOPTS_TRAILER}: {A}\n{ADOPTS_TRAILER}: {B}\n{SPOOL_TRAILER}: {A}\n");
        assert_eq!(trailers(&two).adopts, [A, B]);
        let upper = A.to_ascii_uppercase();
        assert_eq!(
            trailers(&format!("x\n\n{SPOOL_TRAILER}: {upper}")),
            t(Some(A), None)
        );
    }

    #[test]
    fn another_spool_needs_an_adoption() {
        let mut s = Spools::default();
        assert!(s.see("n1", &t(None, None)).is_none());
        assert!(s.see("n1", &t(Some(A), None)).is_none());
        assert!(s.see("n1", &t(Some(A), None)).is_none());
        let why = s.see("n1", &t(Some(B), None)).unwrap();
        assert!(why.contains(A) && why.contains(B), "{why}");
        assert!(s.see("n1", &t(Some(A), Some(B))).is_none());
        assert!(s.see("n2", &t(Some(B), None)).is_none());
        assert_eq!(s.0["n1"].ids, [A, B]);
        assert_eq!(s.0["n1"].current.as_deref(), Some(A));
    }
}
