//! The history rules, pure: every version of an hour file keeps every record
//! of the version before unchanged, and a commit touching a node's folder is
//! made by that node's push (man 1 hero_usage_push, DESCRIPTION, step 6:
//! the commit's author).

use super::check::Problem;
use super::findings::ViolationKind;
use crate::record::UsageRecord;
use std::collections::HashMap;

/// The author name and email `hero_usage_push` writes for `node`.
pub fn push_author(node: &str) -> (String, String) {
    (
        format!("hero_usage_push on {node}"),
        format!("{node}@hero-usage.invalid"),
    )
}

/// Why a commit by `name <email>` may not touch `node`'s folder (`None`: it may).
pub fn wrong_author(node: &str, name: &str, email: &str) -> Option<String> {
    let (want_name, want_email) = push_author(node);
    (name != want_name || email != want_email).then(|| {
        format!(
            "author is {:?} <{}>, but only {want_name:?} <{want_email}> writes this folder",
            name.chars().take(100).collect::<String>(),
            email.chars().take(100).collect::<String>()
        )
    })
}

/// Records of `old` missing from `new` or changed in it.
pub fn lost_records(old: &[UsageRecord], new: &[UsageRecord]) -> Vec<Problem> {
    let by_key: HashMap<&str, &UsageRecord> = new
        .iter()
        .map(|r| (r.idempotency_key.as_str(), r))
        .collect();
    let mut out = Vec::new();
    for r in old {
        let key = Some(r.idempotency_key.clone());
        match by_key.get(r.idempotency_key.as_str()) {
            None => out.push(Problem {
                kind: ViolationKind::RemovedRecord,
                key,
                detail: "the record was removed after it landed".into(),
            }),
            Some(n) if *n != r => out.push(Problem {
                kind: ViolationKind::ChangedRecord,
                key,
                detail: format!(
                    "the record changed after it landed: {}",
                    r.differing_fields(n, false).join(", ")
                ),
            }),
            Some(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, amount: u64) -> UsageRecord {
        crate::record::sample_record(key, amount)
    }

    #[test]
    fn appending_is_fine_changing_or_removing_is_not() {
        let old = [rec("a", 1), rec("b", 1)];
        assert!(lost_records(&old, &[rec("a", 1), rec("b", 1), rec("c", 1)]).is_empty());
        let p = lost_records(&old, &[rec("a", 2)]);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].kind, ViolationKind::ChangedRecord);
        assert!(p[0].detail.ends_with("amount_cents"));
        assert_eq!(p[1].kind, ViolationKind::RemovedRecord);
        assert_eq!(p[1].key.as_deref(), Some("b"));
    }

    #[test]
    fn only_the_nodes_push_writes_its_folder() {
        assert!(wrong_author("n1", "hero_usage_push on n1", "n1@hero-usage.invalid").is_none());
        assert!(wrong_author("n1", "hero_usage_push on n2", "n2@hero-usage.invalid").is_some());
        assert!(wrong_author("n1", "hero_usage_push on n1", "n1@example.org").is_some());
    }
}
