//! Canonical OTOML batch files (man 5 hero_usage_otoml): the bytes the
//! billing repository holds for one node and hour. Knows no files or network.
//!
//! The writer renders the fixed record shape directly instead of going through
//! a generic TOML value tree: the output is the same bytes as
//! `herolib_otoml::dump_otoml` (a conformance test proves it), at a fraction of
//! the allocations, which matters for backlogs of 100,000 records.

use crate::record::{Field, UsageRecord, Value};
use serde::Deserialize;
use std::fmt::Write;

/// The first line of every OTOML document.
pub(crate) const PREFIX: &str = "O:\n";

/// The canonical record order: by `occurred_at`, then `idempotency_key`.
pub fn canonical_order(a: &UsageRecord, b: &UsageRecord) -> std::cmp::Ordering {
    (a.occurred_at, &a.idempotency_key).cmp(&(b.occurred_at, &b.idempotency_key))
}

/// Render a batch (records in any order) as canonical OTOML. It takes the
/// records by reference, so that a push renders an hour's remote and new
/// records without copying them into one list.
pub fn render_batch<'a>(records: impl IntoIterator<Item = &'a UsageRecord>) -> String {
    let mut sorted: Vec<&UsageRecord> = records.into_iter().collect();
    sorted.sort_by(|a, b| canonical_order(a, b));
    let mut out = String::with_capacity(PREFIX.len() + sorted.len() * 240);
    out.push_str(PREFIX);
    if sorted.is_empty() {
        // What dump_otoml writes for an empty array; never pushed, but defined.
        out.push_str("records = []\n");
        return out;
    }
    for (i, r) in sorted.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str("[[records]]\n");
        // Keys in alphabetical order: the order of `Field::ALL`.
        for f in Field::ALL {
            match r.value(f) {
                Value::Int(n) => {
                    let _ = writeln!(out, "{} = {n}", f.name());
                }
                Value::Str(s) => push_kv(&mut out, f.name(), s),
                Value::Time(t) => {
                    let _ = writeln!(out, "{} = \"{t}\"", f.name());
                }
            }
        }
    }
    out
}

fn push_kv(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push_str(" = ");
    push_string(out, value);
    out.push('\n');
}

/// A basic TOML string: `"` `\` tab and CR escaped, other control characters
/// as `\u` and four uppercase hex digits. A newline, which valid records never hold, is
/// escaped too (the reference writer would switch to a multi-line string).
fn push_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    #[serde(default)]
    records: Vec<UsageRecord>,
}

/// Parse a batch file: canonical OTOML, or plain TOML without the `O:` line
/// (files written by older tools). Every record must pass the record rules
/// and keys must be unique, else the file is refused whole: rewriting a file
/// we do not fully understand could lose what it holds.
pub fn parse_batch(text: &str) -> Result<Vec<UsageRecord>, String> {
    let body = toml_body(text);
    let batch: Batch =
        toml::from_str(&body).map_err(|e| format!("not a usage batch: {}", e.message()))?;
    let mut seen = std::collections::HashSet::with_capacity(batch.records.len());
    for (i, r) in batch.records.iter().enumerate() {
        if let Err(errs) = r.check() {
            return Err(format!(
                "record {}: {}",
                i + 1,
                crate::record::describe(&errs)
            ));
        }
        if !seen.insert(r.idempotency_key.as_str()) {
            return Err(format!("record {}: idempotency_key appears twice", i + 1));
        }
    }
    Ok(batch.records)
}

/// The TOML of a batch file: without a leading UTF-8 byte order mark and
/// without its `O:` line, found after blank and comment lines and allowed
/// trailing white space or a comment (what an editor leaves; valid to a
/// human, so read, then rewritten canonically: comments are not kept).
fn toml_body(text: &str) -> std::borrow::Cow<'_, str> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            at += line.len();
            continue;
        }
        let is_prefix = t
            .strip_prefix("O:")
            .is_some_and(|rest| rest.trim().is_empty() || rest.trim_start().starts_with('#'));
        if is_prefix {
            return format!("{}{}", &text[..at], &text[at + line.len()..]).into();
        }
        break;
    }
    text.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::UtcSecond;

    fn rec(key: &str, at: &str) -> UsageRecord {
        UsageRecord {
            amount_cents: 250,
            description: "4 vCPU for 1 h".into(),
            idempotency_key: key.into(),
            node_id: "node-7".into(),
            occurred_at: UtcSecond::parse(at).unwrap(),
            resource_kind: "cpu_hours".into(),
            user_sid: "0a1b".into(),
        }
    }

    #[test]
    fn design_example_bytes() {
        let text = render_batch(&[rec("job-42-2026-11-26T16", "2026-11-26 16:04:05")]);
        assert_eq!(
            text,
            "O:\n[[records]]\namount_cents = 250\ndescription = \"4 vCPU for 1 h\"\n\
             idempotency_key = \"job-42-2026-11-26T16\"\nnode_id = \"node-7\"\n\
             occurred_at = \"2026-11-26 16:04:05\"\nresource_kind = \"cpu_hours\"\nuser_sid = \"0a1b\"\n"
        );
    }

    #[test]
    fn sorted_by_time_then_key_and_round_trips() {
        let records = vec![
            rec("b", "2026-11-26 16:00:01"),
            rec("a", "2026-11-26 16:00:01"),
            rec("c", "2026-11-26 16:00:00"),
        ];
        let text = render_batch(&records);
        let back = parse_batch(&text).unwrap();
        let keys: Vec<&str> = back.iter().map(|r| r.idempotency_key.as_str()).collect();
        assert_eq!(keys, ["c", "a", "b"]);
        assert!(text.contains("\n\n[[records]]\n"));
        // plain TOML without the O: line
        assert_eq!(
            parse_batch(text.strip_prefix(PREFIX).unwrap()).unwrap(),
            back
        );
    }

    #[test]
    fn reads_what_an_editor_leaves_a_bom_comments_and_trailing_space() {
        let good = render_batch(&[rec("a", "2026-11-26 16:00:01")]);
        let want = parse_batch(&good).unwrap();
        let body = good.strip_prefix(PREFIX).unwrap();
        for text in [
            format!("\u{feff}{good}"),
            format!("# billing, node-7\n\nO:\n{body}"),
            format!("O: \n{body}"),
            format!("O:\t# canonical\r\n{body}"),
            format!("\u{feff}# c\nO: \n{body}"),
        ] {
            assert_eq!(parse_batch(&text), Ok(want.clone()), "{text:?}");
        }
        // Only the first line that is not a comment can be the prefix.
        assert!(parse_batch(&format!("{body}O:\n")).is_err());
    }

    #[test]
    fn refuses_unknown_fields_bad_records_and_repeated_keys() {
        let good = render_batch(&[rec("a", "2026-11-26 16:00:01")]);
        assert!(parse_batch(&good.replace("user_sid", "user")).is_err());
        assert!(
            parse_batch(&good.replace("\"0a1b\"", "\"X\""))
                .unwrap_err()
                .contains("user_sid")
        );
        let twice = render_batch(&[
            rec("a", "2026-11-26 16:00:01"),
            rec("a", "2026-11-26 16:00:02"),
        ]);
        assert!(parse_batch(&twice).unwrap_err().contains("twice"));
    }
}
