//! The fuzz targets' corpora (`fuzz/corpus/TARGET/`: seeds and every crash
//! ever found) replayed through the same properties the targets check
//! (`hero_usage::props`), so that CI needs no fuzzer.

use hero_usage::props;
use std::path::Path;

/// Run every file of `target`'s corpus through `property`; all failures
/// are named at once. At least `accepted` inputs must pass the reader, or
/// the corpus only tests refusals.
fn replay(target: &str, property: fn(&[u8]) -> usize, accepted: usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "{}: {} files",
        dir.display(),
        files.len()
    );
    let mut failed = Vec::new();
    let mut passed = 0;
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        match std::panic::catch_unwind(|| property(&bytes)) {
            Ok(n) => passed += n,
            Err(_) => failed.push(path.display().to_string()),
        }
    }
    assert!(failed.is_empty(), "the property breaks on {failed:#?}");
    assert!(passed >= accepted, "{target}: only {passed} accepted");
}

#[test]
fn stdin_lines_corpus() {
    replay("stdin_lines", props::stdin_lines, 20);
}

#[test]
fn drop_file_corpus() {
    replay("drop_file", props::drop_file, 12);
}

#[test]
fn hour_file_corpus() {
    replay("hour_file", props::hour_file, 10);
}

#[test]
fn config_file_corpus() {
    replay("config_file", props::config_file, 6);
}

/// The properties can fail: a record the validator accepted that the spool
/// read back otherwise would be caught.
#[test]
fn a_broken_property_is_caught() {
    use hero_usage::record::{UsageRecord, UtcSecond};
    let rec = UsageRecord {
        amount_cents: 1,
        description: String::new(),
        idempotency_key: "k".into(),
        node_id: props::NODE.into(),
        occurred_at: UtcSecond::parse("2026-11-26 16:04:05").unwrap(),
        resource_kind: "cpu".into(),
        user_sid: "X".into(), // not a SmartID
    };
    assert!(std::panic::catch_unwind(|| props::accepted_reads_back(&rec)).is_err());
}

#[test]
fn shim_request_corpus() {
    replay("shim_request", props::shim_request, 8);
}
