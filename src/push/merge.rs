//! The pure core of a push: merge an hour's pending records with what the
//! billing repository's file for that hour holds (man 1 hero_usage_push,
//! DESCRIPTION, step 5). The billing repository is the source of truth: a pending record
//! whose key is there with identical fields is done; with different fields
//! it is a conflict, never pushed.

use crate::otoml::parse_batch;
use crate::record::{HourBucket, UsageRecord};
use crate::spool::PendingId;
use std::collections::HashMap;

/// A pending record and its spool id.
pub type Pending = (PendingId, UsageRecord);

/// A pending record whose key the remote file holds with other fields.
#[derive(Debug)]
pub struct Conflict {
    pub id: PendingId,
    pub record: UsageRecord,
    /// The names of the fields that differ.
    pub fields: Vec<String>,
}

/// What merging one hour found.
#[derive(Debug, Default)]
pub struct HourMerge {
    /// Records the remote file lacks: the commit adds them.
    pub fresh: Vec<Pending>,
    /// Records the remote file holds identically: done, nothing to send.
    pub present: Vec<PendingId>,
    pub conflicts: Vec<Conflict>,
}

/// Sort `pending` against the `remote` file's records by idempotency key.
/// A key pending twice (it cannot be, the spool keys files by it) counts once.
pub fn merge_hour(remote: &[UsageRecord], pending: Vec<Pending>) -> HourMerge {
    let known: HashMap<&str, &UsageRecord> = remote
        .iter()
        .map(|r| (r.idempotency_key.as_str(), r))
        .collect();
    let mut merge = HourMerge::default();
    for (id, local) in pending {
        match known.get(local.idempotency_key.as_str()) {
            None => merge.fresh.push((id, local)),
            Some(there) => {
                let fields: Vec<String> = there
                    .differing_fields(&local, false)
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                if fields.is_empty() {
                    merge.present.push(id);
                } else {
                    merge.conflicts.push(Conflict {
                        id,
                        record: local,
                        fields,
                    });
                }
            }
        }
    }
    merge
}

/// The records of a remote hour file, all inside that hour (man 5
/// hero_usage_otoml); otherwise the file is not understood whole.
pub fn parse_hour_file(content: Vec<u8>, hour: HourBucket) -> Result<Vec<UsageRecord>, String> {
    let text = String::from_utf8(content).map_err(|_| "not UTF-8".to_string())?;
    let records = parse_batch(&text)?;
    match records.iter().find(|r| r.hour_bucket() != hour) {
        Some(r) => Err(format!(
            "record `{}` occurred at {}, outside the file's hour {hour}",
            r.idempotency_key, r.occurred_at
        )),
        None => Ok(records),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otoml::render_batch;
    use crate::record::UtcSecond;

    fn rec(key: &str, amount: u64) -> UsageRecord {
        UsageRecord {
            amount_cents: amount,
            description: String::new(),
            idempotency_key: key.to_string(),
            node_id: "n1".to_string(),
            occurred_at: UtcSecond::parse("2026-11-20 16:04:05").unwrap(),
            resource_kind: "cpu_hours".to_string(),
            user_sid: "0a1b".to_string(),
        }
    }

    fn pending(r: UsageRecord) -> Pending {
        (PendingId::for_key(&r.idempotency_key), r)
    }

    #[test]
    fn fresh_present_and_conflicting_records_are_told_apart() {
        let remote = [rec("a", 1), rec("b", 2)];
        let m = merge_hour(
            &remote,
            vec![
                pending(rec("a", 1)),
                pending(rec("b", 3)),
                pending(rec("c", 4)),
            ],
        );
        assert_eq!(m.present, vec![PendingId::for_key("a")]);
        assert_eq!(m.conflicts.len(), 1);
        assert_eq!(m.conflicts[0].id, PendingId::for_key("b"));
        assert_eq!(m.conflicts[0].fields, vec!["amount_cents"]);
        assert_eq!(m.fresh.len(), 1);
        assert_eq!(m.fresh[0].1.idempotency_key, "c");
    }

    #[test]
    fn an_empty_remote_takes_everything_and_nothing_pending_changes_nothing() {
        let m = merge_hour(&[], vec![pending(rec("a", 1))]);
        assert_eq!(
            (m.fresh.len(), m.present.len(), m.conflicts.len()),
            (1, 0, 0)
        );
        let m = merge_hour(&[rec("a", 1)], Vec::new());
        assert_eq!(
            (m.fresh.len(), m.present.len(), m.conflicts.len()),
            (0, 0, 0)
        );
    }

    #[test]
    fn an_hour_file_must_hold_only_its_hour() {
        let hour = rec("a", 1).hour_bucket();
        let ok = render_batch(&[rec("a", 1)]).into_bytes();
        assert_eq!(parse_hour_file(ok, hour).unwrap().len(), 1);
        let mut other = rec("b", 1);
        other.occurred_at = UtcSecond::parse("2026-11-20 17:00:00").unwrap();
        let bad = render_batch(&[other]).into_bytes();
        assert!(parse_hour_file(bad, hour).unwrap_err().contains("outside"));
        assert_eq!(parse_hour_file(vec![0xff], hour).unwrap_err(), "not UTF-8");
    }
}
