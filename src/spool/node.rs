//! A spool belongs to one node (man 5 hero_usage_spool, NODE NAME):
//! its records must never be pushed into two node folders. The node name is
//! written into `state/node` on first use by a writer (record, push, shim);
//! every later run with another name is refused (exit 78).

use super::{Spool, cant};
use crate::error::{Kind, fail};
use crate::fsx;
use crate::record::check_node_name;
use anyhow::Result;
use std::fs;
use std::io;

/// The state file that names the spool's node.
pub const NODE_FILE: &str = "node";

impl Spool {
    /// Bind the spool to `node` on first use; refuse (78) a spool bound to
    /// another name. Two first users racing: `link(2)` lets one name win,
    /// and the other is compared with it.
    pub fn bind_node(&self, node: &str) -> Result<()> {
        if self.check_node(node)? {
            return Ok(());
        }
        let dir = self.state_dir();
        let tmp = self.dir("tmp").join(fsx::unique_name("node"));
        let target = dir.join(NODE_FILE);
        let linked = fsx::write_new_synced(&tmp, format!("{node}\n").as_bytes())
            .and_then(|()| fs::hard_link(&tmp, &target));
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(cant(|| format!("cannot write {}", target.display()))(e)),
        }
        fsx::sync_dir(&dir).map_err(cant(|| format!("cannot sync {}", dir.display())))?;
        match self.check_node(node)? {
            true => Ok(()),
            false => Err(fail(
                Kind::Internal,
                format!("{} vanished after it was written", target.display()),
            )),
        }
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
