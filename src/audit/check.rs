//! Checks of one hour file's bytes: it parses, it is canonical, every record
//! lies in the file's hour and node and passes the record rules. Pure.

use super::findings::ViolationKind;
use crate::otoml::{self, PREFIX};
use crate::record::{HourBucket, MAX_FUTURE_SECS, UsageRecord, UtcSecond, check_idempotency_key};
use chrono::NaiveDateTime;
use serde::Deserialize;

/// A problem in one file: which kind, the record's key if one is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ViolationKind,
    pub key: Option<String>,
    pub detail: String,
}

impl Problem {
    fn new(kind: ViolationKind, key: Option<&str>, detail: impl Into<String>) -> Problem {
        Problem {
            kind,
            key: key.map(str::to_string),
            detail: detail.into(),
        }
    }
}

/// The outcome of checking a file. `records` is empty when the file does not
/// parse: readers refuse such a file whole (so does the push job), and so
/// its records count nowhere.
#[derive(Debug, Default)]
pub struct FileCheck {
    pub records: Vec<UsageRecord>,
    pub problems: Vec<Problem>,
}

/// Check one hour file of `node` for `hour`; `now` bounds `occurred_at`.
pub fn check_file(node: &str, hour: HourBucket, bytes: &[u8], now: NaiveDateTime) -> FileCheck {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return refused(Problem::new(
            ViolationKind::Unparsable,
            None,
            "not UTF-8 text",
        ));
    };
    let (records, mut problems) = match parse_file(text) {
        Ok(parsed) => parsed,
        Err(problems) => {
            return FileCheck {
                records: Vec::new(),
                problems,
            };
        }
    };
    let earliest = UtcSecond::parse_exact("2000-01-01 00:00:00").map(|t| t.0);
    let bounds = (earliest, now + chrono::Duration::seconds(MAX_FUTURE_SECS));
    for r in &records {
        problems.extend(record_problems(r, node, hour, bounds));
    }
    FileCheck { records, problems }
}

/// The file's records, with a problem when its bytes are not canonical;
/// the reasons the parser refused it otherwise.
fn parse_file(text: &str) -> Result<(Vec<UsageRecord>, Vec<Problem>), Vec<Problem>> {
    if let Some(records) = fast_path(text) {
        return Ok((records, Vec::new()));
    }
    let records = otoml::parse_batch(text).map_err(|why| explain_refusal(text, &why))?;
    let mut problems = Vec::new();
    if let Some(line) = first_difference(text, &otoml::render_batch(&records)) {
        problems.push(Problem::new(
            ViolationKind::NotCanonical,
            None,
            format!("re-rendering it gives other bytes from line {line} on (sorting, spacing, quoting or the O: line)"),
        ));
    }
    Ok((records, problems))
}

/// What is wrong with one record of `node`'s file for `hour`; `occurred_at`
/// must lie within `(earliest, latest)`.
fn record_problems(
    r: &UsageRecord,
    node: &str,
    hour: HourBucket,
    (earliest, latest): (Option<NaiveDateTime>, NaiveDateTime),
) -> Vec<Problem> {
    let key = Some(r.idempotency_key.as_str());
    let mut problems = Vec::new();
    if r.hour_bucket() != hour {
        problems.push(Problem::new(
            ViolationKind::WrongHour,
            key,
            format!(
                "occurred_at {} is not in the file's hour {hour}",
                r.occurred_at
            ),
        ));
    }
    if r.node_id != node {
        problems.push(Problem::new(
            ViolationKind::WrongNode,
            key,
            format!("node_id {} is not the folder's node {node}", r.node_id),
        ));
    }
    if earliest.is_some_and(|e| r.occurred_at.0 < e) || r.occurred_at.0 > latest {
        problems.push(Problem::new(
            ViolationKind::BadRecord,
            key,
            "occurred_at: must lie between 2000-01-01 00:00:00 and 5 minutes from now",
        ));
    }
    problems
}

/// The records of one version of an hour file, or why it does not parse
/// (the history walk's reading: a file the readers refuse counts nowhere).
pub fn parse_version(bytes: &[u8]) -> Result<Vec<UsageRecord>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    match fast_path(text) {
        Some(records) => Ok(records),
        None => otoml::parse_batch(text),
    }
}

/// The records of a canonical file whose records all pass the rules with
/// unique keys: exactly what `parse_batch` would answer, found faster.
fn fast_path(text: &str) -> Option<Vec<UsageRecord>> {
    let records = super::fast::parse_canonical(text)?;
    let mut keys = std::collections::HashSet::with_capacity(records.len());
    let sound = records
        .iter()
        .all(|r| r.check().is_ok() && keys.insert(r.idempotency_key.as_str()));
    (sound && otoml::render_batch(&records) == text).then_some(records)
}

fn refused(p: Problem) -> FileCheck {
    FileCheck {
        records: Vec::new(),
        problems: vec![p],
    }
}

/// The line (from 1) where two texts first differ, `None` when equal.
fn first_difference(a: &str, b: &str) -> Option<usize> {
    if a == b {
        return None;
    }
    let same = a.lines().zip(b.lines()).take_while(|(x, y)| x == y).count();
    Some(same + 1)
}

/// The loose shape of a batch: any tables under `records`.
#[derive(Deserialize)]
struct Loose {
    #[serde(default)]
    records: Vec<toml::Table>,
}

/// The parser refused the file: find which records broke which rule, so that
/// each problem names its key; else report the parser's reason.
fn explain_refusal(text: &str, why: &str) -> Vec<Problem> {
    let body = text.strip_prefix(PREFIX).unwrap_or(text);
    let Ok(loose) = toml::from_str::<Loose>(body) else {
        return vec![Problem::new(ViolationKind::Unparsable, None, why)];
    };
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, table) in loose.records.into_iter().enumerate() {
        let key = table
            .get("idempotency_key")
            .and_then(toml::Value::as_str)
            .filter(|k| check_idempotency_key(k).is_ok())
            .map(str::to_string);
        let record = UsageRecord::deserialize(toml::Value::Table(table))
            .map_err(|e| e.message().to_string())
            .and_then(|r| {
                r.check()
                    .map(|()| r)
                    .map_err(|errs| crate::record::describe(&errs))
            });
        match record {
            Err(e) => problems.push(Problem::new(
                ViolationKind::BadRecord,
                key.as_deref(),
                format!("record {}: {e}", i + 1),
            )),
            Ok(r) if !seen.insert(r.idempotency_key.clone()) => problems.push(Problem::new(
                ViolationKind::DuplicateKey,
                key.as_deref(),
                format!("record {}: the key appears twice in this file", i + 1),
            )),
            Ok(_) => {}
        }
    }
    if problems.is_empty() {
        problems.push(Problem::new(ViolationKind::Unparsable, None, why));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otoml::render_batch;

    fn rec(key: &str, at: &str) -> UsageRecord {
        UsageRecord {
            amount_cents: 250,
            description: String::new(),
            idempotency_key: key.into(),
            node_id: "n1".into(),
            occurred_at: UtcSecond::parse(at).unwrap(),
            resource_kind: "cpu_hours".into(),
            user_sid: "0a1b".into(),
        }
    }

    fn hour() -> HourBucket {
        crate::layout::parse_hour("2026-11-26-16").unwrap()
    }

    fn now() -> NaiveDateTime {
        UtcSecond::parse("2026-11-27 00:00:00").unwrap().0
    }

    fn kinds(c: &FileCheck) -> Vec<ViolationKind> {
        c.problems.iter().map(|p| p.kind).collect()
    }

    #[test]
    fn a_canonical_file_passes() {
        let text = render_batch(&[
            rec("a", "2026-11-26 16:00:01"),
            rec("b", "2026-11-26 16:59:59"),
        ]);
        let c = check_file("n1", hour(), text.as_bytes(), now());
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(c.records.len(), 2);
    }

    #[test]
    fn hour_node_and_time_rules() {
        let mut other = rec("b", "2026-11-26 16:00:02");
        other.node_id = "n2".into();
        let text = render_batch(&[
            rec("a", "2026-11-26 17:00:00"),
            other,
            rec("c", "2026-11-28 16:00:00"),
        ]);
        let c = check_file(
            "n1",
            crate::layout::parse_hour("2026-11-26-17").unwrap(),
            text.as_bytes(),
            now(),
        );
        assert_eq!(
            kinds(&c),
            [
                ViolationKind::WrongHour,
                ViolationKind::WrongNode,
                ViolationKind::WrongHour,
                ViolationKind::BadRecord
            ]
        );
        assert_eq!(c.problems[1].key.as_deref(), Some("b"));
    }

    #[test]
    fn not_canonical_and_refused_files() {
        let text = render_batch(&[rec("a", "2026-11-26 16:00:01")]);
        let c = check_file("n1", hour(), text.replace("O:\n", "").as_bytes(), now());
        assert_eq!(kinds(&c), [ViolationKind::NotCanonical]);
        assert_eq!(c.records.len(), 1);

        let c = check_file("n1", hour(), b"O:\n[[records]\n", now());
        assert_eq!(kinds(&c), [ViolationKind::Unparsable]);
        assert!(c.records.is_empty());
        let c = check_file("n1", hour(), b"\xff", now());
        assert_eq!(kinds(&c), [ViolationKind::Unparsable]);

        let bad = text.replace("\"0a1b\"", "\"X\"");
        let c = check_file("n1", hour(), bad.as_bytes(), now());
        assert_eq!(kinds(&c), [ViolationKind::BadRecord]);
        assert_eq!(c.problems[0].key.as_deref(), Some("a"));
        assert!(c.problems[0].detail.contains("user_sid"));

        let twice = format!("{text}\n{}", text.strip_prefix("O:\n").unwrap());
        let c = check_file("n1", hour(), twice.as_bytes(), now());
        assert_eq!(kinds(&c), [ViolationKind::DuplicateKey]);
    }
}
