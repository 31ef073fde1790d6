//! The billing repository's layout, both ways: where a node's hour file
//! and its signature live, and which hour a name there stands for. The one
//! place that knows `nodes/<node>/usage_<YYYY-MM-DD-HH>.otoml` and
//! `signatures/<node>/usage_<YYYY-MM-DD-HH>.otoml.sig` (man 5
//! hero_usage_otoml). Pure.

use crate::record::{HourBucket, UtcSecond, check_node_name};

/// The folder every node's hour files live under.
pub const NODES: &str = "nodes";
/// The folder every node's signatures live under.
pub const SIGNATURES: &str = "signatures";

const HOUR_PREFIX: &str = "usage_";
const HOUR_SUFFIX: &str = ".otoml";
const SIGNATURE_SUFFIX: &str = ".sig";

/// `usage_<YYYY-MM-DD-HH>.otoml`
pub fn hour_file_name(hour: HourBucket) -> String {
    format!("{HOUR_PREFIX}{hour}{HOUR_SUFFIX}")
}

/// `nodes/<node>/usage_<YYYY-MM-DD-HH>.otoml`; `node` must be a valid node name.
pub fn hour_file_path(node: &str, hour: HourBucket) -> String {
    format!("{NODES}/{node}/{}", hour_file_name(hour))
}

/// `usage_<YYYY-MM-DD-HH>.otoml.sig`: the signature of an hour file.
pub fn signature_file_name(hour: HourBucket) -> String {
    format!("{}{SIGNATURE_SUFFIX}", hour_file_name(hour))
}

/// `signatures/<node>/usage_<YYYY-MM-DD-HH>.otoml.sig`; `node` must be a
/// valid node name.
pub fn signature_path(node: &str, hour: HourBucket) -> String {
    format!("{SIGNATURES}/{node}/{}", signature_file_name(hour))
}

/// `usage_<YYYY-MM-DD-HH>.otoml`: the hour a file name stands for, if it is one.
pub fn hour_of_file_name(name: &str) -> Option<HourBucket> {
    let hour = name.strip_prefix(HOUR_PREFIX)?.strip_suffix(HOUR_SUFFIX)?;
    parse_hour(hour)
}

/// `usage_<YYYY-MM-DD-HH>.otoml.sig`: the hour a signature's name stands
/// for, if it is one.
pub fn hour_of_signature_name(name: &str) -> Option<HourBucket> {
    hour_of_file_name(name.strip_suffix(SIGNATURE_SUFFIX)?)
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
        format!(
            "not an hour file: the only names allowed in a node folder are \
             {HOUR_PREFIX}YYYY-MM-DD-HH{HOUR_SUFFIX}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_file_names_both_ways() {
        let h = hour_of_file_name("usage_2026-11-26-16.otoml").unwrap();
        assert_eq!(hour_file_name(h), "usage_2026-11-26-16.otoml");
        assert_eq!(
            hour_file_path("n1", h),
            "nodes/n1/usage_2026-11-26-16.otoml"
        );
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
    fn signature_names_both_ways() {
        let h = parse_hour("2026-11-26-16").unwrap();
        assert_eq!(
            signature_path("n1", h),
            "signatures/n1/usage_2026-11-26-16.otoml.sig"
        );
        assert_eq!(hour_of_signature_name(&signature_file_name(h)), Some(h));
        assert_eq!(hour_of_signature_name("usage_2026-11-26-16.otoml"), None);
        assert_eq!(hour_of_signature_name("usage_2026-11-26-16.sig"), None);
    }
}
