//! Which nodes and hours an audit reads (`--node`, `--from`, `--to`).

use crate::record::HourBucket;

/// Which nodes and hours to read (`--node`, `--from`, `--to`).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Empty: every node.
    pub nodes: Vec<String>,
    pub from: Option<HourBucket>,
    pub to: Option<HourBucket>,
}

impl Filter {
    pub fn wants_node(&self, node: &str) -> bool {
        self.nodes.is_empty() || self.nodes.iter().any(|n| n == node)
    }

    pub fn wants_hour(&self, hour: HourBucket) -> bool {
        self.from.is_none_or(|f| hour >= f) && self.to.is_none_or(|t| hour <= t)
    }

    /// Files that are not in a node's folder are checked only when no node is chosen.
    pub fn wants_all(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::parse_hour;

    #[test]
    fn filter_bounds_are_inclusive() {
        let f = Filter {
            nodes: vec!["a".into()],
            from: parse_hour("2026-11-26-10"),
            to: parse_hour("2026-11-26-12"),
        };
        assert!(f.wants_node("a") && !f.wants_node("b") && !f.wants_all());
        assert!(f.wants_hour(parse_hour("2026-11-26-10").unwrap()));
        assert!(f.wants_hour(parse_hour("2026-11-26-12").unwrap()));
        assert!(!f.wants_hour(parse_hour("2026-11-26-13").unwrap()));
        assert!(!f.wants_hour(parse_hour("2026-11-26-09").unwrap()));
    }
}
