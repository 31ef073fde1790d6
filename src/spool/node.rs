//! A spool belongs to one node (man 5 hero_usage_spool, NODE NAME):
//! its records must never be pushed into two node folders. The node name is
//! written into `state/node` on first use by a writer (record, push, shim);
//! every later run with another name is refused (exit 78).

use super::{Spool, cant};
use crate::error::{Kind, fail};
use crate::fsx;
use crate::record::check_node_name;
use crate::trailer::is_spool_id;
use anyhow::Result;
use std::fs;
use std::io;

/// The state file that names the spool's node.
pub const NODE_FILE: &str = "node";
/// The state file that holds the spool's id: 128 random bits in hex, made
/// when the spool is bound (an older spool gets one on first use). Its
/// commits carry it (`Hero-Usage-Spool:`), so that two spools pushing as
/// one node are told apart (man 1 hero_usage_push, ONE NODE, ONE SPOOL).
pub const SPOOL_ID_FILE: &str = "spool_id";
/// The state file listing the spool ids this spool adopted, one a line.
pub const ADOPTED_FILE: &str = "adopted";

impl Spool {
    /// Bind the spool to `node` on first use; refuse (78) a spool bound to
    /// another name. Two first users racing: `link(2)` lets one name win,
    /// and the other is compared with it.
    /// The spool gets its id then too (see [`SPOOL_ID_FILE`]).
    pub fn bind_node(&self, node: &str) -> Result<()> {
        if !self.check_node(node)? {
            self.write_state_once(NODE_FILE, &format!("{node}\n"))?;
            if !self.check_node(node)? {
                return Err(fail(
                    Kind::Internal,
                    format!("state/{NODE_FILE} vanished after it was written"),
                ));
            }
        }
        self.spool_id().map(drop)
    }

    /// Write `state/<name>` unless it exists (`link(2)` lets the first of
    /// two writers win, never clobbered), fsynced.
    fn write_state_once(&self, name: &str, text: &str) -> Result<()> {
        let dir = self.state_dir();
        let tmp = self.dir("tmp").join(fsx::unique_name(name));
        let target = dir.join(name);
        let linked = fsx::write_new_synced(&tmp, text.as_bytes())
            .and_then(|()| fs::hard_link(&tmp, &target));
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(cant(|| format!("cannot write {}", target.display()))(e)),
        }
        fsx::sync_dir(&dir).map_err(cant(|| format!("cannot sync {}", dir.display())))
    }

    /// The spool's id, made now when it has none (128 random bits, hex).
    pub fn spool_id(&self) -> Result<String> {
        if let Some(id) = self.existing_spool_id()? {
            return Ok(id);
        }
        self.write_state_once(SPOOL_ID_FILE, &format!("{}\n", random_id()?))?;
        self.existing_spool_id()?.ok_or_else(|| {
            fail(
                Kind::Internal,
                format!("state/{SPOOL_ID_FILE} vanished after it was written"),
            )
        })
    }

    /// The spools whose node this spool took over (`--adopt-node`), as
    /// `state/adopted` lists them: hour files they wrote last are this
    /// spool's to change from then on.
    pub fn adopted_spools(&self) -> Result<Vec<String>> {
        let path = self.state_dir().join(ADOPTED_FILE);
        match self.read_state(ADOPTED_FILE) {
            Ok(Some(bytes)) => Ok(String::from_utf8_lossy(&bytes)
                .lines()
                .map(str::trim)
                .filter(|l| is_spool_id(l))
                .map(str::to_string)
                .collect()),
            Ok(None) => Ok(Vec::new()),
            Err(e) => Err(cant(|| format!("cannot read {}", path.display()))(e)),
        }
    }

    /// Remember `ids` as adopted (after a commit that names them landed).
    pub fn add_adopted_spools<'a>(&self, ids: impl IntoIterator<Item = &'a String>) -> Result<()> {
        let mut all = self.adopted_spools()?;
        for id in ids {
            if !all.contains(id) {
                all.push(id.clone());
            }
        }
        let text: String = all.iter().map(|id| format!("{id}\n")).collect();
        self.write_state(ADOPTED_FILE, text.as_bytes())
    }

    /// The spool's id, if it has one (read only: a dry run, status).
    pub fn existing_spool_id(&self) -> Result<Option<String>> {
        let path = self.state_dir().join(SPOOL_ID_FILE);
        let bytes = match self.read_state(SPOOL_ID_FILE) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(e) => return Err(cant(|| format!("cannot read {}", path.display()))(e)),
        };
        std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.strip_suffix('\n'))
            .filter(|s| is_spool_id(s))
            .map(|s| Some(s.to_string()))
            .ok_or_else(|| {
                fail(
                    Kind::CantCreate,
                    format!(
                        "{} does not hold a spool id (32 hex digits and a newline); restore it \
                         from a backup, or remove it to give this spool a new id, which then \
                         needs hero_usage_push --adopt-node once (man 7 hero_usage, MOVING A NODE)",
                        path.display()
                    ),
                )
            })
    }

    /// [`Spool::bind_node`], or in a dry run (which changes nothing) only
    /// [`Spool::check_node`].
    pub fn bind_node_unless_dry(&self, node: &str, dry_run: bool) -> Result<()> {
        if dry_run {
            self.check_node(node).map(drop)
        } else {
            self.bind_node(node)
        }
    }

    /// The node the spool is bound to, if any (a valid name only).
    pub fn bound_node(&self) -> Result<Option<String>> {
        let path = self.state_dir().join(NODE_FILE);
        match self.read_state(NODE_FILE) {
            Ok(Some(bytes)) => Ok(std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.strip_suffix('\n'))
                .filter(|s| check_node_name(s).is_ok())
                .map(str::to_string)),
            Ok(None) => Ok(None),
            Err(e) => Err(cant(|| format!("cannot read {}", path.display()))(e)),
        }
    }

    /// Read-only check (for a dry run): Ok(true) when the spool is bound to
    /// `node`, Ok(false) when it is bound to no node yet, 78 when it is
    /// bound to another.
    pub fn check_node(&self, node: &str) -> Result<bool> {
        let path = self.state_dir().join(NODE_FILE);
        let bytes = match self.read_state(NODE_FILE) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(false),
            Err(e) => return Err(cant(|| format!("cannot read {}", path.display()))(e)),
        };
        let bound = std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.strip_suffix('\n'))
            .filter(|s| check_node_name(s).is_ok())
            .ok_or_else(|| {
                fail(
                    Kind::Config,
                    format!(
                        "{} does not hold a node name; write the node name this spool's \
                         records were pushed under into it (one line), see man 5 hero_usage_spool",
                        path.display()
                    ),
                )
            })?;
        if bound == node {
            return Ok(true);
        }
        Err(fail(Kind::Config, mismatch(self, bound, node)))
    }
}

fn mismatch(spool: &Spool, bound: &str, node: &str) -> String {
    format!(
        "spool {} belongs to node `{bound}`, but the node name is now `{node}`; its records \
         must never be pushed under two node names. Run with the node name `{bound}` \
         (--node, HERO_NODE_ID or `node` in the config), or move to `{node}` deliberately: \
         push everything with the old name until `hero_usage_status` shows nothing pending, \
         then move this spool aside and start a new one (man 5 hero_usage_spool, NODE NAME)",
        spool.root().display()
    )
}

/// 128 random bits from the kernel, as hex.
fn random_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| fail(Kind::Internal, format!("cannot read /dev/urandom: {e}")))?;
    Ok(fsx::hex(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spool_gets_one_random_id_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.existing_spool_id().unwrap(), None);
        spool.bind_node("n1").unwrap();
        let id = spool.existing_spool_id().unwrap().unwrap();
        assert!(is_spool_id(&id), "{id}");
        assert_eq!(spool.spool_id().unwrap(), id);
        spool.bind_node("n1").unwrap();
        assert_eq!(spool.spool_id().unwrap(), id, "never replaced");
        let other = tempfile::tempdir().unwrap();
        let other = Spool::open(other.path()).unwrap();
        assert_ne!(other.spool_id().unwrap(), id);
        fs::write(dir.path().join("state").join(SPOOL_ID_FILE), "x\n").unwrap();
        assert!(
            spool.spool_id().is_err(),
            "a damaged id is refused, not replaced"
        );
    }
}
