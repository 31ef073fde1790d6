//! One node, one spool (man 1 hero_usage_push, ONE NODE, ONE SPOOL): before an hour file that exists is
//! changed, the commit that wrote it last is read (once per commit) for the
//! spool it names. Another spool of this node wrote it: two spools push as
//! one node, which bills retried keys twice across hours, so the run stops
//! (78) unless `--adopt-node` takes the node over.

use super::Drain;
use crate::error::{Kind, fail};
use crate::forgejo::forge_err;
use crate::outcome::PushSummary;
use crate::trailer;
use anyhow::Result;

impl Drain<'_, '_> {
    /// Check who wrote `path` last (`last_commit`, from the read): this
    /// spool, a spool it adopted, or a commit without the trailer pass.
    pub(super) fn check_writer(
        &mut self,
        path: &str,
        last_commit: Option<&str>,
        summary: &mut PushSummary,
    ) -> Result<()> {
        let Some(sha) = last_commit.filter(|s| !s.is_empty()) else {
            return Ok(());
        };
        let writer = match self.writers.get(sha) {
            Some(w) => w.clone(),
            None => {
                let (repo, commit) = (self.repo.clone(), sha.to_string());
                let message = self
                    .retrying(summary, |c| c.commit_message(&repo, &commit))
                    .map_err(forge_err)?;
                let w = trailer::read(&message).spool;
                self.writers.insert(sha.to_string(), w.clone());
                w
            }
        };
        let Some(other) = writer else {
            return Ok(()); // an older tool's commit binds nothing
        };
        if self.ctx.spool_id.as_ref() == Some(&other)
            || self.adopted.contains(&other)
            || self.adopted_before.contains(&other)
        {
            return Ok(());
        }
        let node = &self.ctx.opts.node;
        if self.ctx.opts.adopt_node {
            self.note(
                summary,
                format!(
                    "--adopt-node: node {node} taken over from spool {other} (last writer of {path}); this run's commits say so ({}: {other})",
                    trailer::ADOPTS
                ),
            );
            self.adopted.insert(other);
            return Ok(());
        }
        let own = self.ctx.spool_id.as_deref().unwrap_or("(none yet)");
        let host = crate::settings::resolve::host_name().unwrap_or_else(|_| "?".to_string());
        Err(fail(
            Kind::Config,
            format!(
                "{path} was last written by spool {other} of node {node} (commit {sha}), not by this \
                 spool {own} (host {host}, spool {}): two spools are pushing as node {node} (a cloned \
                 machine, two hosts with one HERO_NODE_ID, a node moved without stopping the old \
                 one), which bills retried keys twice. Nothing was pushed for it. Stop the other \
                 spool; then, to move the node here deliberately, run hero_usage_push --adopt-node \
                 once, or give this host a node name of its own (man 7 hero_usage, MOVING A NODE)",
                self.ctx.spool.root().display()
            ),
        ))
    }
}
