//! Properties of the readers of outside input, as functions of the input's
//! bytes that panic when a property breaks. The fuzz targets (`fuzz/`) call
//! them with what the fuzzer makes, and `tests/cli/fuzz_corpora.rs` replays
//! the corpora through them: one piece of code per property. Pure: no file,
//! no socket, a fixed "now". Each returns how many records (or settings
//! files) it accepted, so that a replay can tell that its corpus reaches
//! past the refusals.

use crate::otoml::{canonical_order, parse_batch, render_batch};
use crate::push::merge::parse_hour_file;
use crate::record::{Defaults, UsageRecord};
use crate::settings::file::ConfigFile;
use crate::spool::{LedgerEntry, parse_drop, record_in_file, render_chunk, render_single};
use chrono::{DateTime, TimeZone, Utc};
use std::path::Path;

/// The node the inputs are read for.
pub const NODE: &str = "node-7";

/// "Now" for every property: fixed, so that a corpus replays alike.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap()
}

fn defaults(occurred_at: Option<DateTime<Utc>>) -> Defaults {
    Defaults {
        node: NODE.to_string(),
        now: now(),
        occurred_at,
    }
}

/// `--stdin` and the record validator: every line `hero_usage_record
/// --stdin` accepts reads back unchanged everywhere.
pub fn stdin_lines(data: &[u8]) -> usize {
    let mut accepted = 0;
    for (line, read) in crate::recording::read_lines(data, &defaults(None)) {
        if let Ok(v) = read {
            assert_eq!(v.record.node_id, NODE, "line {line}: another node's record");
            accepted_reads_back(&v.record);
            accepted += 1;
        }
    }
    accepted
}

/// The drop reader: a drop it accepts reads back unchanged everywhere.
pub fn drop_file(data: &[u8]) -> usize {
    let mtime = Utc.with_ymd_and_hms(2026, 11, 30, 8, 30, 0).unwrap();
    let Ok(v) = parse_drop(data.to_vec(), NODE, now(), Some(mtime)) else {
        return 0;
    };
    assert_eq!(v.record.node_id, NODE, "another node's record");
    accepted_reads_back(&v.record);
    1
}

/// What validation accepts reads back unchanged: spool file written → read
/// (a single record and a chunk), OTOML rendered → parsed → rendered (the
/// same bytes), read as the hour file of its own hour, and the ledger sees
/// no difference.
pub fn accepted_reads_back(rec: &UsageRecord) {
    if let Err(errs) = rec.check() {
        panic!("accepted, yet breaks the record rules: {errs:?}: {rec:?}");
    }
    let key = &rec.idempotency_key;
    let single = render_single(rec).expect("a record renders as TOML");
    assert_eq!(
        record_in_file(single.as_bytes(), key).as_ref(),
        Ok(rec),
        "{single}"
    );
    let chunk = render_chunk([rec].into_iter()).expect("a record renders as a chunk");
    assert_eq!(
        record_in_file(chunk.as_bytes(), key).as_ref(),
        Ok(rec),
        "{chunk}"
    );
    let text = render_batch([rec]);
    let back = parse_batch(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(back.as_slice(), std::slice::from_ref(rec), "{text}");
    assert_eq!(render_batch(&back), text);
    let hour = parse_hour_file(text.clone().into_bytes(), rec.hour_bucket());
    assert_eq!(hour.as_deref(), Ok(std::slice::from_ref(rec)));
    let entry = LedgerEntry::of(rec, 0);
    assert!(entry.differing_fields(rec, false).is_empty(), "{rec:?}");
}

/// The reader of remote hour files: it refuses, or yields valid records with
/// unique keys whose canonical rendering parses back to them and renders
/// again to the same bytes.
pub fn hour_file(data: &[u8]) -> usize {
    let Ok(text) = std::str::from_utf8(data) else {
        return 0;
    };
    let Ok(records) = parse_batch(text) else {
        return 0;
    };
    let mut keys = std::collections::HashSet::new();
    for r in &records {
        if let Err(errs) = r.check() {
            panic!("read, yet breaks the record rules: {errs:?}: {r:?}");
        }
        assert!(keys.insert(&r.idempotency_key), "key twice: {r:?}");
    }
    let canonical = render_batch(&records);
    let mut sorted = records.clone();
    sorted.sort_by(canonical_order);
    let back = parse_batch(&canonical).unwrap_or_else(|e| panic!("{e}: {canonical}"));
    assert_eq!(back, sorted, "{canonical}");
    assert_eq!(render_batch(&back), canonical);
    // A file the push would merge (every record in one hour) reads alike.
    if let Some(first) = records.first() {
        let hour = first.hour_bucket();
        if records.iter().all(|r| r.hour_bucket() == hour) {
            assert_eq!(parse_hour_file(data.to_vec(), hour).as_ref(), Ok(&records));
        }
    }
    records.len()
}

/// The config file: an unknown key or an empty path is refused; what is
/// accepted has every path absolute, with `~/` expanded.
pub fn config_file(data: &[u8]) -> usize {
    let Ok(text) = std::str::from_utf8(data) else {
        return 0;
    };
    let path = Path::new("/etc/hero_usage/hero_usage.toml");
    let parsed = ConfigFile::parse(text, path);
    if let Ok(table) = text.parse::<toml::Table>() {
        let known = [
            "spool",
            "node",
            "forgejo_url",
            "token_file",
            "repo",
            "branch",
            "admin_secret_file",
            "listen",
            "ca_file",
            "insecure_http",
            "signing_key_file",
        ];
        if let Some(unknown) = table.keys().find(|k| !known.contains(&k.as_str())) {
            assert!(parsed.is_err(), "unknown key `{unknown}` accepted");
        }
        let empty = |v: &toml::Value| v.as_str() == Some("");
        if let Some((key, _)) = table
            .iter()
            .find(|(k, v)| k.ends_with("_file") && empty(v) || *k == "spool" && empty(v))
        {
            assert!(parsed.is_err(), "empty path `{key}` accepted");
        }
    }
    let Ok(file) = parsed else {
        return 0;
    };
    for (key, p) in file.paths() {
        if let Some(p) = p {
            assert!(p.is_absolute(), "{key} = {p:?} is not absolute");
            assert!(!p.starts_with("~"), "{key} = {p:?} is not expanded");
        }
    }
    1
}

/// The shim's request parser: a head it accepts ends within the limit and
/// holds at most one valid `Content-Length` within the body limit and no
/// `Transfer-Encoding`; it is the same whatever follows it, and no shorter
/// prefix is a complete head. A refusal is a 400, 413 or 431; an incomplete
/// head is one shorter than the limit.
pub fn shim_request(data: &[u8]) -> usize {
    use crate::shim::http::{MAX_BODY, MAX_HEAD, Seen, parse_head};
    let mut seen = Seen::default();
    let (head, end) = match parse_head(data, &mut seen) {
        Ok(Some(found)) => found,
        Ok(None) => {
            assert!(data.len() < MAX_HEAD, "a head past the limit still read");
            return 0;
        }
        Err(answer) => {
            assert!(
                matches!(answer.status, 400 | 413 | 431),
                "refused with {}",
                answer.status
            );
            return 0;
        }
    };
    assert!(end <= data.len().min(MAX_HEAD), "head ends at {end}");
    assert!(head.header_count("transfer-encoding") == 0);
    assert!(head.header_count("content-length") <= 1);
    assert!(head.content_length.is_none_or(|n| n <= MAX_BODY));
    assert!(!head.path.contains('?'), "query kept in {:?}", head.path);
    assert_eq!((&seen.method, &seen.path), (&head.method, &head.path));
    let mut alone = Seen::default();
    let again = parse_head(&data[..end], &mut alone);
    assert!(
        matches!(&again, Ok(Some((h, e))) if *e == end && format!("{h:?}") == format!("{head:?}")),
        "the head alone reads otherwise: {again:?}"
    );
    let shorter = parse_head(&data[..end - 1], &mut Seen::default());
    assert!(
        !matches!(shorter, Ok(Some(_))),
        "a shorter prefix is a head"
    );
    1
}
