//! When the last push that exited 0 finished, for monitoring
//! (`hero_usage_last_success_timestamp_seconds`): a state file of its own,
//! since the outcome file is rewritten by every run, failed ones included.

use crate::spool::Spool;
use anyhow::Result;

/// `state/last_success`: `YYYY-MM-DD HH:MM:SS` (UTC).
pub const FILE: &str = "last_success";

/// Record that a push which finished at `finished_at` succeeded.
pub fn write(spool: &Spool, finished_at: &str) -> Result<()> {
    spool.write_state(FILE, finished_at.as_bytes())
}

/// The time recorded, if a push ever succeeded on this spool.
pub fn read(spool: &Spool) -> Option<String> {
    let bytes = spool.read_state(FILE).ok()??;
    Some(String::from_utf8_lossy(&bytes).trim().to_string())
}
