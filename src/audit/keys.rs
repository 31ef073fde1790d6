//! Idempotency keys: no key twice within a node (across its hours and
//! branches), and keys shared between nodes found apart. Kept as digests,
//! not strings, so that millions of keys fit in little memory.

use crate::record::UsageRecord;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// 128 bits of SHA-256: collisions are out of reach.
pub type KeyDigest = u128;

/// 64 bits, for the fleet-wide comparison of keys between nodes: a chance
/// collision (about 10^-6 at 7 million keys) only adds a note.
pub type ShortDigest = u64;

pub fn short(d: KeyDigest) -> ShortDigest {
    (d >> 64) as u64
}

pub fn key_digest(key: &str) -> KeyDigest {
    let d = Sha256::digest(key.as_bytes());
    u128::from_be_bytes(d[..16].try_into().unwrap_or([0; 16]))
}

/// The 64-bit digests `--state` remembers of a record: its key's and its
/// fields' (the same key with other fields is another record).
pub fn state_pair(r: &UsageRecord) -> (u64, u64) {
    (
        short(key_digest(&r.idempotency_key)),
        (record_digest(r) >> 64) as u64,
    )
}

/// A digest of every field: tells the same record from a changed one.
fn record_digest(r: &UsageRecord) -> u128 {
    let mut h = Sha256::new();
    h.update(r.amount_cents.to_be_bytes());
    for s in [
        r.description.as_str(),
        &r.idempotency_key,
        &r.node_id,
        &r.resource_kind,
        &r.user_sid,
    ] {
        h.update((s.len() as u64).to_be_bytes());
        h.update(s.as_bytes());
    }
    h.update(r.occurred_at.0.and_utc().timestamp().to_be_bytes());
    u128::from_be_bytes(h.finalize()[..16].try_into().unwrap_or([0; 16]))
}

/// What a sighting of a record's key means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sighting {
    /// First time: count it.
    New,
    /// The same record at the same path (another branch holds the file too).
    Same,
    /// The key was seen before elsewhere or with other fields: a violation.
    Duplicate { first_path: String },
}

/// One node's keys.
#[derive(Debug, Default)]
pub struct NodeKeys {
    seen: HashMap<KeyDigest, (u128, u32)>,
    paths: Vec<String>,
}

impl NodeKeys {
    /// Register a record found at `path`.
    pub fn see(&mut self, r: &UsageRecord, path: &str) -> Sighting {
        let path_index = match self.paths.last() {
            Some(p) if p == path => self.paths.len() - 1,
            _ => {
                self.paths.push(path.to_string());
                self.paths.len() - 1
            }
        } as u32;
        let digest = record_digest(r);
        let key = key_digest(&r.idempotency_key);
        match self.seen.get(&key) {
            None => {
                self.seen.insert(key, (digest, path_index));
                Sighting::New
            }
            Some(&(d, p)) if d == digest && self.paths[p as usize] == path => Sighting::Same,
            Some(&(_, p)) => Sighting::Duplicate {
                first_path: self.paths[p as usize].clone(),
            },
        }
    }

    /// The node's keys as short digests, sorted (for [`shared_keys`]).
    pub fn into_sorted_digests(self) -> Vec<ShortDigest> {
        let mut v: Vec<ShortDigest> = self.seen.into_keys().map(short).collect();
        v.sort_unstable();
        v
    }
}

/// Digests present in two or more of the sorted lists, with the indexes
/// of the lists holding each.
pub fn shared_keys(lists: &[Vec<ShortDigest>]) -> Vec<(ShortDigest, Vec<usize>)> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut heap: BinaryHeap<Reverse<(ShortDigest, usize, usize)>> = lists
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.first().map(|&d| Reverse((d, i, 0))))
        .collect();
    let mut out: Vec<(ShortDigest, Vec<usize>)> = Vec::new();
    while let Some(Reverse((d, i, pos))) = heap.pop() {
        match out.last_mut() {
            Some((last, holders)) if *last == d => holders.push(i),
            _ => out.push((d, vec![i])),
        }
        if let Some(&next) = lists[i].get(pos + 1) {
            heap.push(Reverse((next, i, pos + 1)));
        }
        // Keep only shared digests behind the current one.
        let n = out.len();
        if n >= 2 && out[n - 2].1.len() < 2 {
            out.remove(n - 2);
        }
    }
    out.retain(|(_, holders)| holders.len() >= 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, amount: u64) -> UsageRecord {
        crate::record::sample_record(key, amount)
    }

    #[test]
    fn same_record_on_two_branches_is_no_duplicate() {
        let mut k = NodeKeys::default();
        assert_eq!(k.see(&rec("a", 1), "p1"), Sighting::New);
        assert_eq!(k.see(&rec("b", 1), "p1"), Sighting::New);
        assert_eq!(k.see(&rec("a", 1), "p1"), Sighting::Same);
        assert_eq!(
            k.see(&rec("a", 2), "p1"),
            Sighting::Duplicate {
                first_path: "p1".into()
            }
        );
        assert_eq!(
            k.see(&rec("b", 1), "p2"),
            Sighting::Duplicate {
                first_path: "p1".into()
            }
        );
        assert_eq!(k.into_sorted_digests().len(), 2);
    }

    #[test]
    fn shared_keys_across_lists() {
        let lists = vec![vec![1, 3, 5, 9], vec![2, 3, 9], vec![9, 10], vec![]];
        assert_eq!(
            shared_keys(&lists),
            vec![(3, vec![0, 1]), (9, vec![0, 1, 2])]
        );
        assert!(shared_keys(&[vec![1, 2], vec![3]]).is_empty());
    }
}
