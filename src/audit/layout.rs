//! The repository layout: which paths under `nodes/` are hour files, and the
//! `YYYY-MM-DD-HH` hour form of names and of `--from`/`--to`. Pure.

use crate::record::{HourBucket, UtcSecond, check_node_name};

/// The folder every node's files live under.
pub const NODES: &str = "nodes";

/// `usage_<YYYY-MM-DD-HH>.otoml`: the hour a file name stands for, if it is one.
pub fn hour_of_file_name(name: &str) -> Option<HourBucket> {
    let hour = name.strip_prefix("usage_")?.strip_suffix(".otoml")?;
    parse_hour(hour)
}

/// Exactly `YYYY-MM-DD-HH`, a real UTC hour.
pub fn parse_hour(s: &str) -> Option<HourBucket> {
    if s.len() != 13 || s.as_bytes()[10] != b'-' {
        return None;
    }
    let t = UtcSecond::parse_exact(&format!("{} {}:00:00", &s[..10], &s[11..]))?;
    // parse_exact folds :60; a name must round-trip exactly.
    let b = t.hour_bucket();
    (b.to_string() == s).then_some(b)
}

/// Why a node folder name is not one (`None`: it is).
pub fn bad_node_name(name: &str) -> Option<String> {
    check_node_name(name)
        .err()
        .map(|p| format!("folder name is no node name: it {p}"))
}

/// Why a file in a node folder is not an hour file (`None`: it is).
pub fn bad_file_name(name: &str) -> Option<String> {
    hour_of_file_name(name).is_none().then(|| {
        "not an hour file: the only names allowed in a node folder are usage_YYYY-MM-DD-HH.otoml"
            .to_string()
    })
}

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

    #[test]
    fn hour_file_names() {
        let h = hour_of_file_name("usage_2026-11-26-16.otoml").unwrap();
        assert_eq!(h.file_name(), "usage_2026-11-26-16.otoml");
        for bad in [
            "usage_2026-11-26-24.otoml",
            "usage_2026-11-26-16.toml",
            "usage_2026-11-26 16.otoml",
            "usage_2026-02-30-01.otoml",
            "usage_2026-11-26-6.otoml",
            "x_2026-11-26-16.otoml",
            "usage_2026-11-26-16.otoml.bak",
        ] {
            assert!(hour_of_file_name(bad).is_none(), "{bad}");
            assert!(bad_file_name(bad).is_some());
        }
        assert!(bad_node_name("node-7").is_none());
        assert!(bad_node_name(".hidden").is_some());
    }

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
