//! One node, one spool (man 1 hero_usage_audit, Checks, two-spools): the spool ids that
//! wrote each node, read from the `Hero-Usage-Spool` and
//! `Hero-Usage-Adopts` trailers of the commits touching its folder, in
//! history order. Another id writing a node is a violation unless its
//! commit adopts the id before it. Commits without the trailer (older
//! tools) bind nothing. Pure.

use crate::trailer::{ADOPTS, Trailers};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
                "written by spool {current}, then by spool {id} without {ADOPTS}: {current} (two spools pushing as one node bill retries twice; see MOVING A NODE in man 7 hero_usage)"
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
