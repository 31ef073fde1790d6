//! `--state DIR`: what earlier clean runs proved, so that the next run
//! walks only newer commits and reads only newer files. It holds the tip of
//! every branch read, the spool ids per node, and per node the digests of
//! every key seen with its record's digest (so that a new record reusing
//! a proved key is still found). Written only by a run without violations.
//!
//! Layout: `DIR/state.json` (replaced atomically) and `DIR/keys/<node>.keys`
//! (pairs of little-endian u64: key digest, record digest; appended to,
//! and read only as far as `state.json` says, so that a run that died
//! while appending leaves nothing half-proved).

use super::spools::Spools;
use crate::error::{Kind, fail};
use crate::fsx;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const FORMAT: u32 = 1;
const STATE_FILE: &str = "state.json";
const MAX_STATE_BYTES: u64 = 64 * 1024 * 1024;
/// Bytes per key in a keys file.
const PAIR: usize = 16;

/// What one node has proved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// Records counted (each key once).
    pub records: u64,
    /// Pairs in its keys file that count.
    pub keys: u64,
}

/// `state.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub format: u32,
    /// Branch name to the commit its tip was.
    pub tips: BTreeMap<String, String>,
    pub spools: Spools,
    pub nodes: BTreeMap<String, NodeState>,
}

/// A node's proved keys: (key digest, record digest), sorted by key.
#[derive(Debug, Clone, Default)]
pub struct Proved(Vec<(u64, u64)>);

impl Proved {
    pub fn new(mut pairs: Vec<(u64, u64)>) -> Proved {
        pairs.sort_unstable();
        Proved(pairs)
    }

    /// The record digest proved with `key`, if any.
    pub fn get(&self, key: u64) -> Option<u64> {
        let i = self.0.partition_point(|(k, _)| *k < key);
        self.0.get(i).filter(|(k, _)| *k == key).map(|(_, d)| *d)
    }
}

/// The state directory.
pub struct StateDir {
    dir: PathBuf,
}

fn damaged(path: &Path, why: impl std::fmt::Display) -> anyhow::Error {
    fail(
        Kind::NoInput,
        format!(
            "cannot read the audit state {}: {why}; remove that directory to start over with a full audit",
            path.display()
        ),
    )
}

fn unwritable(path: &Path, e: std::io::Error) -> anyhow::Error {
    fail(
        Kind::CantCreate,
        format!(
            "cannot write the audit state {}: {e}; nothing was remembered, the next run proves the same again",
            path.display()
        ),
    )
}

impl StateDir {
    pub fn new(dir: &Path) -> StateDir {
        StateDir {
            dir: dir.to_path_buf(),
        }
    }

    fn keys_path(&self, node: &str) -> PathBuf {
        self.dir.join("keys").join(format!("{node}.keys"))
    }

    /// The state, `None` before the first clean run.
    pub fn load(&self) -> Result<Option<State>> {
        let path = self.dir.join(STATE_FILE);
        let bytes = match fsx::read_regular(&path, MAX_STATE_BYTES) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(damaged(&path, e)),
        };
        let state: State = serde_json::from_slice(&bytes).map_err(|e| damaged(&path, e))?;
        if state.format != FORMAT {
            return Err(damaged(
                &path,
                format!("format {} is not {FORMAT}", state.format),
            ));
        }
        Ok(Some(state))
    }

    /// A node's proved keys (as many as `state.json` counts).
    pub fn keys(&self, node: &str, st: &NodeState) -> Result<Proved> {
        let path = self.keys_path(node);
        let want = st.keys as usize * PAIR;
        let mut bytes = Vec::with_capacity(want);
        fsx::open_regular(&path, false)
            .and_then(|f| f.take(want as u64).read_to_end(&mut bytes))
            .map_err(|e| damaged(&path, e))?;
        if bytes.len() < want {
            return Err(damaged(
                &path,
                format!("{} bytes, {want} expected", bytes.len()),
            ));
        }
        let pairs = bytes[..want]
            .chunks_exact(PAIR)
            .map(|c| {
                let (k, d) = c.split_at(8);
                (
                    u64::from_le_bytes(k.try_into().unwrap_or_default()),
                    u64::from_le_bytes(d.try_into().unwrap_or_default()),
                )
            })
            .collect();
        Ok(Proved::new(pairs))
    }

    /// Append a node's new keys past what `old` counts (they count once
    /// [`save`](Self::save) records the new count: a run that finds a
    /// violation leaves them uncounted, and the next append cuts them).
    pub fn append_keys(&self, node: &str, old: &State, pairs: &[(u64, u64)]) -> Result<()> {
        if pairs.is_empty() {
            return Ok(());
        }
        let keys_dir = self.dir.join("keys");
        std::fs::create_dir_all(&keys_dir).map_err(|e| unwritable(&keys_dir, e))?;
        let path = self.keys_path(node);
        let before = old.nodes.get(node).map_or(0, |n| n.keys) * PAIR as u64;
        self.append(&path, before, pairs)
            .map_err(|e| unwritable(&path, e))
    }

    /// Replace `state.json` (after the keys it counts were appended).
    pub fn save(&self, state: &State) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| unwritable(&self.dir, e))?;
        let keys_dir = self.dir.join("keys");
        if keys_dir.is_dir() {
            fsx::sync_dir(&keys_dir).map_err(|e| unwritable(&keys_dir, e))?;
        }
        let path = self.dir.join(STATE_FILE);
        let bytes = serde_json::to_vec(state).map_err(|e| fail(Kind::Internal, e.to_string()))?;
        let tmp = self.dir.join(fsx::unique_name(".state.json"));
        fsx::write_new_synced(&tmp, &bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .and_then(|()| fsx::sync_dir(&self.dir))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                unwritable(&path, e)
            })
    }

    /// Append `pairs` after the first `before` bytes of `path` (cutting
    /// what a run that died left behind).
    fn append(&self, path: &Path, before: u64, pairs: &[(u64, u64)]) -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(path)?;
        f.set_len(before)?;
        f.seek(SeekFrom::Start(before))?;
        let mut buf = Vec::with_capacity(pairs.len() * PAIR);
        for (k, d) in pairs {
            buf.extend_from_slice(&k.to_le_bytes());
            buf.extend_from_slice(&d.to_le_bytes());
        }
        f.write_all(&buf)?;
        f.sync_all()
    }
}

impl State {
    pub fn empty() -> State {
        State {
            format: FORMAT,
            ..State::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_append_and_read_as_far_as_the_state_counts() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::new(dir.path());
        assert!(sd.load().unwrap().is_none());
        let mut st = State::empty();
        st.tips.insert("main".into(), "abc".into());
        st.nodes.insert(
            "n1".into(),
            NodeState {
                records: 2,
                keys: 2,
            },
        );
        sd.append_keys("n1", &State::empty(), &[(9, 1), (3, 2)])
            .unwrap();
        sd.save(&st).unwrap();
        assert_eq!(sd.load().unwrap().unwrap(), st);
        let p = sd.keys("n1", &st.nodes["n1"]).unwrap();
        assert_eq!((p.get(3), p.get(9), p.get(4)), (Some(2), Some(1), None));
        // A run that died after appending: its keys do not count.
        sd.append(&sd.keys_path("n1"), 32, &[(4, 4)]).unwrap();
        assert_eq!(sd.keys("n1", &st.nodes["n1"]).unwrap().get(4), None);
        let mut next = st.clone();
        next.nodes.insert(
            "n1".into(),
            NodeState {
                records: 3,
                keys: 3,
            },
        );
        sd.append_keys("n1", &st, &[(5, 5)]).unwrap();
        sd.save(&next).unwrap();
        let p = sd.keys("n1", &next.nodes["n1"]).unwrap();
        assert_eq!((p.get(5), p.get(4), p.get(3)), (Some(5), None, Some(2)));
    }
}
