//! Conformance: our canonical writer is byte-identical to the reference
//! implementation `herolib_otoml::dump_otoml`, its output loads back, and
//! a push writes DESIGN's example file as printed there.

use hero_usage::otoml::{parse_batch, render_batch};
use hero_usage::record::{UsageRecord, UtcSecond};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Batch {
    records: Vec<UsageRecord>,
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const DESCRIPTIONS: &[&str] = &[
    "",
    "4 vCPU for 1 h",
    "quote \" inside",
    "back\\slash \\\\ twice",
    "tab\there",
    "cr\rhere",
    "bell\u{7} and del\u{7f} and c1\u{85}",
    "ünïcödé — 日本語 — emoji 🦀",
    "'single' and \"double\" and `tick`",
    "trailing space ",
];

const KEYS: &[&str] = &[
    "job-1",
    "a\"b",
    "c\\d",
    "x=1;y=2",
    "#hash",
    "[br]",
    "~!@$%^&*()",
];

fn batch(g: &mut Gen, n: usize) -> Vec<UsageRecord> {
    (0..n)
        .map(|i| UsageRecord {
            amount_cents: g.next() % 1_000_000_000_001,
            description: g.pick(DESCRIPTIONS).to_string(),
            idempotency_key: format!("{}-{i}", g.pick(KEYS)),
            node_id: g.pick(&["node-7", "n.1", "A_b-c"]).to_string(),
            occurred_at: UtcSecond::parse(&format!(
                "2026-11-26 16:{:02}:{:02}",
                g.next() % 60,
                g.next() % 60
            ))
            .unwrap(),
            resource_kind: g
                .pick(&["cpu_hours", "gpu.a100", "net-egress_gb"])
                .to_string(),
            user_sid: g.pick(&["0a1b", "abcdef", "z9z9z"]).to_string(),
        })
        .collect()
}

fn assert_conforms(mut records: Vec<UsageRecord>) {
    let ours = render_batch(&records);
    records.sort_by(hero_usage::otoml::canonical_order);
    let reference = herolib_otoml::dump_otoml(&Batch {
        records: records.clone(),
    })
    .expect("reference dump");
    assert_eq!(
        ours, reference,
        "bytes differ from herolib_otoml::dump_otoml"
    );
    let loaded: Batch = herolib_otoml::load_otoml(&ours).expect("reference load");
    assert_eq!(loaded.records, records);
    assert!(ours.ends_with('\n'));
}

#[test]
fn one_record_matches_reference() {
    assert_conforms(batch(&mut Gen(7), 1));
}

#[test]
fn generated_batches_match_reference() {
    let mut g = Gen(0x5eed_1234_abcd_ef01);
    for n in [2, 3, 10, 57] {
        assert_conforms(batch(&mut g, n));
    }
}

#[test]
fn many_records_match_reference() {
    assert_conforms(batch(&mut Gen(42), 2_000));
}

#[test]
fn every_special_description_matches_reference() {
    let mut g = Gen(99);
    for d in DESCRIPTIONS {
        let mut records = batch(&mut g, 2);
        records[0].description = d.to_string();
        assert_conforms(records);
    }
}

#[test]
fn reader_accepts_plain_toml_and_our_own_output() {
    let records = batch(&mut Gen(3), 5);
    let text = render_batch(&records);
    let plain = text.strip_prefix("O:\n").unwrap();
    let mut expected = records.clone();
    expected.sort_by(hero_usage::otoml::canonical_order);
    // Valid records only: the generator's control characters are not, so use clean ones.
    let clean: Vec<UsageRecord> = expected
        .into_iter()
        .map(|mut r| {
            r.description = "clean".into();
            r.idempotency_key = r.idempotency_key.replace(' ', "_");
            r
        })
        .collect();
    let text = render_batch(&clean);
    assert_eq!(parse_batch(&text).unwrap(), clean);
    assert_eq!(
        parse_batch(text.strip_prefix("O:\n").unwrap()).unwrap(),
        clean
    );
    assert!(plain.starts_with("[[records]]"));
}

/// DESIGN's example, end to end: the record given to `hero_usage_record`
/// on node-7 and pushed is that very file, at that very path.
#[test]
fn the_contracts_example_hour_file_is_what_a_push_writes() {
    use crate::support::Run;
    use crate::support::forge::{Node, OWNER, REPO, file, start};
    let forge = start();
    let node = Node::named(&forge, "node-7", &format!("{OWNER}/{REPO}"));
    node.record(&UsageRecord {
        amount_cents: 250,
        description: "4 vCPU for 1 h".into(),
        idempotency_key: "job-42-2026-11-26T16".into(),
        node_id: "node-7".into(),
        occurred_at: UtcSecond::parse("2026-11-26 16:04:05").unwrap(),
        resource_kind: "cpu_hours".into(),
        user_sid: "0a1b".into(),
    });
    node.push(&[]).exit(0);
    let expected = "O:
[[records]]
amount_cents = 250
description = \"4 vCPU for 1 h\"
idempotency_key = \"job-42-2026-11-26T16\"
node_id = \"node-7\"
occurred_at = \"2026-11-26 16:04:05\"
resource_kind = \"cpu_hours\"
user_sid = \"0a1b\"
";
    assert_eq!(
        file(&forge, "nodes/node-7/usage_2026-11-26-16.otoml").as_deref(),
        Some(expected)
    );
}
