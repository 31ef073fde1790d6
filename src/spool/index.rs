//! A compact index of the pending records, for draining a large backlog:
//! one pass over `pending/` keeps each entry's hour, name and file (about 50
//! bytes a record, not the record), then each batch reads only the files of
//! the entries it takes. Re-reading every pending record for every batch of
//! `--max-records` made a drain quadratic in the backlog.

use super::{PendingByHour, PendingId, PendingLoad, Spool, files, of_node};
use crate::record::HourBucket;
use anyhow::Result;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::Path;

/// One pending entry: ordered by hour, then by name (as batches take them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IndexSlot {
    pub hour: HourBucket,
    /// The entry's name, `<hex>.toml`, as its 32 bytes.
    digest: [u8; 32],
    /// The inode its directory entry carried: entries of one chunk share it.
    ino: u64,
    /// Where the light read found its table in the file (start, end), so
    /// that a batch parses only its own tables; `(0, 0)`: unknown, the
    /// batch parses the file whole.
    table: (u32, u32),
}

impl IndexSlot {
    /// The slot of entry `id`; `None` for a name that is not lower-case
    /// hex (no record's key hashes to it: such an entry reads as damaged).
    fn new(hour: HourBucket, id: &PendingId, ino: u64) -> Option<IndexSlot> {
        Some(IndexSlot {
            hour,
            digest: digest_of(id.as_str())?,
            ino,
            table: (0, 0),
        })
    }

    fn name(&self) -> String {
        format!("{}.toml", crate::fsx::hex(&self.digest))
    }

    /// Where its table lies, when the light read found it.
    fn table(&self) -> Option<Range<usize>> {
        let (start, end) = self.table;
        (end > 0).then_some(start as usize..end as usize)
    }
}

/// The 32 bytes entry `id` names, `<hex>.toml`; `None` for a name that is
/// not lower-case hex (no record's key hashes to it).
fn digest_of(name: &str) -> Option<[u8; 32]> {
    let hex = name.strip_suffix(".toml")?.as_bytes();
    let mut digest = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (byte, pair) in digest.iter_mut().zip(hex.chunks(2)) {
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(digest)
}

/// The pending entries of one scan, oldest hour first, handed out batch by
/// batch; entries taken are not handed out again.
#[derive(Debug, Default)]
pub struct PendingIndex {
    slots: Vec<IndexSlot>,
    next: usize,
}

/// The slots of `names` (entries of inode `ino`) from the light read of
/// their file; `None` when an entry has no table there (the file is then
/// parsed whole, which tells why).
fn light_slots(tables: &[files::LightTable], names: &[String], ino: u64) -> Option<Vec<IndexSlot>> {
    let by_digest: HashMap<[u8; 32], &files::LightTable> =
        tables.iter().map(|t| (t.digest, t)).collect();
    names
        .iter()
        .map(|name| {
            let t = by_digest.get(&digest_of(name)?)?;
            Some(IndexSlot {
                hour: t.hour,
                digest: t.digest,
                ino,
                table: (
                    u32::try_from(t.body.start).ok()?,
                    u32::try_from(t.body.end).ok()?,
                ),
            })
        })
        .collect()
}

/// What [`Spool::index_pending`] found.
#[derive(Debug, Default)]
pub struct IndexScan {
    pub index: PendingIndex,
    /// Entries that are not valid records, with why (as in [`PendingLoad`]).
    pub damaged: Vec<(PendingId, String)>,
}

impl PendingIndex {
    pub fn new(mut slots: Vec<IndexSlot>) -> PendingIndex {
        slots.sort_unstable();
        PendingIndex { slots, next: 0 }
    }

    /// Entries not handed out yet.
    pub fn remaining(&self) -> usize {
        self.slots.len() - self.next
    }

    /// The next at most `max` entries, oldest hour first, skipping those of
    /// hours `skip` says are stuck (they stay pending; the index moves on).
    pub fn next_batch(&mut self, max: usize, skip: impl Fn(HourBucket) -> bool) -> Vec<IndexSlot> {
        let mut batch = Vec::new();
        while batch.len() < max && self.next < self.slots.len() {
            let slot = self.slots[self.next];
            self.next += 1;
            if !skip(slot.hour) {
                batch.push(slot);
            }
        }
        if self.next == self.slots.len() {
            // Used up: give the memory back before the next scan.
            self.slots = Vec::new();
            self.next = 0;
        }
        batch
    }
}

impl Spool {
    /// Every pending entry's hour, name, file and table, read in one pass
    /// over `pending/` (each file once, by its key and time lines where it
    /// can: see [`files::light_tables`]); damaged entries found are
    /// returned, not moved. Entries are checked when a batch reads them.
    pub fn index_pending(&self) -> Result<IndexScan> {
        let dir = self.dir("pending");
        let mut scan = IndexScan::default();
        let mut slots = Vec::new();
        for (ino, names) in files::names_by_inode(&dir)? {
            let Some((first, read)) = files::read_first(&dir, ino, &names)? else {
                continue;
            };
            let light = read.ok().and_then(|(bytes, _)| files::light_tables(&bytes));
            match light.and_then(|tables| light_slots(&tables, &names[first..], ino)) {
                Some(found) => slots.extend(found),
                None => self.index_parsed(&dir, ino, names, &mut slots, &mut scan.damaged)?,
            }
        }
        scan.index = PendingIndex::new(slots);
        Ok(scan)
    }

    /// Index the entries of one file by parsing it whole (a file the light
    /// read does not understand): damaged entries are found here.
    fn index_parsed(
        &self,
        dir: &Path,
        ino: u64,
        names: Vec<String>,
        slots: &mut Vec<IndexSlot>,
        damaged: &mut Vec<(PendingId, String)>,
    ) -> Result<()> {
        let bound = self.bound_node()?;
        files::read_grouped(dir, BTreeMap::from([(ino, names)]), |entry| {
            let slot = entry
                .record
                .and_then(|r| of_node(r, bound.as_deref()))
                .map_err(|reason| format!("damaged pending record: {reason}"))
                .and_then(|rec| {
                    IndexSlot::new(rec.hour_bucket(), &entry.id, ino)
                        .ok_or_else(|| "damaged pending record: not a record name".into())
                });
            match slot {
                Ok(slot) => slots.push(slot),
                Err(reason) => damaged.push((entry.id, reason)),
            }
            Ok(true)
        })
    }

    /// The records of `slots` (from [`Spool::index_pending`]), by hour, each
    /// hour in id order, reading each of their files once and parsing only
    /// their tables where the index knows them. Entries gone meanwhile are
    /// skipped; damaged ones are returned, not moved.
    pub fn load_indexed(&self, slots: &[IndexSlot]) -> Result<PendingLoad> {
        let mut by_inode: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        // Per file the tables of its slots; None once a slot's is unknown.
        let mut tables: HashMap<u64, Option<Vec<Range<usize>>>> = HashMap::new();
        for slot in slots {
            by_inode.entry(slot.ino).or_default().push(slot.name());
            let known = tables.entry(slot.ino).or_insert_with(|| Some(Vec::new()));
            match (known.as_mut(), slot.table()) {
                (Some(list), Some(table)) => list.push(table),
                _ => *known = None,
            }
        }
        let parse = |ino: u64, names: &[String], bytes: &[u8]| {
            files::parse_some(bytes, tables[&ino].as_deref(), names)
        };
        let mut hours = PendingByHour::new();
        let mut damaged = Vec::new();
        let bound = self.bound_node()?;
        files::read_grouped_with(&self.dir("pending"), by_inode, parse, |entry| {
            match entry.record.and_then(|r| of_node(r, bound.as_deref())) {
                Ok(rec) => hours
                    .entry(rec.hour_bucket())
                    .or_default()
                    .push((entry.id, rec)),
                Err(reason) => {
                    damaged.push((entry.id, format!("damaged pending record: {reason}")));
                }
            }
            Ok(true)
        })?;
        for records in hours.values_mut() {
            records.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        }
        Ok(PendingLoad { hours, damaged })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::UtcSecond;
    use crate::spool::file_name_for_key;

    fn hour(h: u32) -> HourBucket {
        UtcSecond::parse(&format!("2026-11-26 {h:02}:00:00"))
            .unwrap()
            .hour_bucket()
    }

    fn slot(h: u32, key: &str) -> IndexSlot {
        IndexSlot::new(hour(h), &PendingId::for_key(key), 7).unwrap()
    }

    #[test]
    fn a_slot_keeps_the_entry_name() {
        let s = slot(3, "job-1");
        assert_eq!(s.name(), file_name_for_key("job-1"));
        let upper = PendingId(
            file_name_for_key("job-1")
                .to_uppercase()
                .replace("TOML", "toml"),
        );
        assert!(IndexSlot::new(hour(3), &upper, 1).is_none());
    }

    #[test]
    fn batches_take_oldest_hours_first_each_entry_once() {
        let keys: Vec<(u32, String)> = (0..10).map(|i| (9 - i % 5, format!("k{i}"))).collect();
        let mut index = PendingIndex::new(keys.iter().map(|(h, k)| slot(*h, k)).collect());
        let mut seen = Vec::new();
        let mut last_hour = hour(0);
        while index.remaining() > 0 {
            let batch = index.next_batch(3, |_| false);
            assert!(batch.len() <= 3 && !batch.is_empty());
            for s in &batch {
                assert!(s.hour >= last_hour, "hours in order");
                last_hour = s.hour;
                seen.push(s.name());
            }
        }
        seen.sort();
        let mut want: Vec<String> = keys.iter().map(|(_, k)| file_name_for_key(k)).collect();
        want.sort();
        assert_eq!(seen, want);
        assert!(index.next_batch(3, |_| false).is_empty());
    }

    #[test]
    fn stuck_hours_are_skipped_and_do_not_count() {
        let mut index = PendingIndex::new(vec![
            slot(1, "a"),
            slot(1, "b"),
            slot(2, "c"),
            slot(2, "d"),
            slot(3, "e"),
        ]);
        let first = index.next_batch(1, |_| false);
        assert_eq!(first[0].hour, hour(1));
        // Hour 1 got stuck after its first record: its rest is skipped.
        let second = index.next_batch(2, |h| h == hour(1));
        assert_eq!(
            second.iter().map(|s| s.hour).collect::<Vec<_>>(),
            vec![hour(2); 2]
        );
        assert_eq!(index.next_batch(5, |_| false).len(), 1);
        assert_eq!(index.remaining(), 0);
    }
}
