//! One node's head checks: read each of its hour files, check it, register
//! its keys, add its records to the totals.

use super::check::check_file;
use super::findings::{Findings, Violation, ViolationKind};
use super::keys::{NodeKeys, ShortDigest, Sighting, key_digest, short, state_pair};
use super::state::Proved;
use super::totals::Totals;
use super::walk::FileRef;
use anyhow::Result;
use chrono::NaiveDateTime;
use std::collections::{BTreeSet, HashSet};

/// Reads a file's bytes.
pub type Reader<'a> = dyn FnMut(&FileRef) -> Result<Vec<u8>> + 'a;

/// What one node's files came to.
#[derive(Debug)]
pub struct NodeOutcome {
    pub findings: Findings,
    /// The node's keys, for the fleet-wide comparison.
    pub keys: Vec<ShortDigest>,
    /// Records counted: each key once, and not those an earlier run proved.
    pub records: u64,
    /// The new records' (key, record) digests, for `--state` (appended to
    /// its keys file as soon as the node is done, then dropped).
    pub new_pairs: Vec<(u64, u64)>,
    /// How many digests `--state` took.
    pub new_keys: u64,
}

/// What earlier runs proved of a node (`--state`), and whether to keep the
/// digests of its new records.
#[derive(Debug, Default, Clone, Copy)]
pub struct Memory<'a> {
    pub proved: Option<&'a Proved>,
    pub remember: bool,
}

/// Check every file of one node (all `files` belong to it); add its records
/// to `totals` (shared by the nodes a thread checks, so that memory holds
/// one table per thread, not one per node).
pub fn audit_node(
    files: &[FileRef],
    read: &mut Reader,
    now: NaiveDateTime,
    totals: &mut Option<Totals>,
    memory: Memory,
) -> Result<NodeOutcome> {
    let mut findings = Findings::default();
    let mut keys = NodeKeys::default();
    let mut records = 0;
    let mut new_pairs = Vec::new();
    for f in files {
        let bytes = read(f)?;
        let check = check_file(&f.node, f.hour, &bytes, now);
        drop(bytes);
        for p in check.problems {
            findings
                .push(Violation::new(p.kind, &f.path, &f.place, p.detail).key(p.key.as_deref()));
        }
        for r in &check.records {
            match keys.see(r, &f.path) {
                Sighting::New => {
                    let pair = state_pair(r);
                    match memory.proved.and_then(|p| p.get(pair.0)) {
                        Some(d) if d == pair.1 => {
                            // Proved before, and here still: counted then.
                            if let Some(t) = totals.as_mut() {
                                t.add(r);
                            }
                            continue;
                        }
                        Some(_) => {
                            findings.push(
                                Violation::new(
                                    ViolationKind::DuplicateKey,
                                    &f.path,
                                    &f.place,
                                    "an earlier audit (--state) proved another record of this node with this key",
                                )
                                .key(Some(&r.idempotency_key)),
                            );
                            continue;
                        }
                        None => {}
                    }
                    if memory.remember {
                        new_pairs.push(pair);
                    }
                    records += 1;
                    if let Some(t) = totals.as_mut() {
                        t.add(r);
                    }
                }
                Sighting::Same => {}
                Sighting::Duplicate { first_path } => findings.push(
                    Violation::new(
                        ViolationKind::DuplicateKey,
                        &f.path,
                        &f.place,
                        duplicate_detail(&first_path, &f.path),
                    )
                    .key(Some(&r.idempotency_key)),
                ),
            }
        }
    }
    Ok(NodeOutcome {
        findings,
        keys: keys.into_sorted_digests(),
        records,
        new_pairs,
        new_keys: 0,
    })
}

fn duplicate_detail(first: &str, here: &str) -> String {
    if first == here {
        "the key is here twice (on two branches, with different fields)".to_string()
    } else {
        format!("the key is also in {first}")
    }
}

/// The keys among `files` whose short digest is in `wanted` (to name the
/// keys two nodes share; parse failures were reported already).
pub fn keys_with_digests(
    files: &[FileRef],
    read: &mut Reader,
    wanted: &HashSet<ShortDigest>,
) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for f in files {
        let bytes = read(f)?;
        let Ok(records) = std::str::from_utf8(&bytes)
            .map_err(|e| e.to_string())
            .and_then(crate::otoml::parse_batch)
        else {
            continue;
        };
        for r in records {
            if wanted.contains(&short(key_digest(&r.idempotency_key))) {
                out.insert(r.idempotency_key);
            }
        }
    }
    Ok(out)
}
