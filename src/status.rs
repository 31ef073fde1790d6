//! What the spool holds and how the last push went (DESIGN.md,
//! `hero_usage_status`), for people, scripts (`--json`) and monitoring
//! (`--prometheus`). Read-only: a missing spool reads as empty.

use crate::push::read_outcome;
use crate::spool::{Spool, SpoolCounts};
use anyhow::Result;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use std::fmt::Write;
use std::path::Path;

/// The facts `hero_usage_status` prints (and the shim's `GET /status` serves).
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub spool: String,
    pub node: String,
    pub pending: usize,
    pub incoming: usize,
    pub sent: usize,
    pub rejected: usize,
    /// When the oldest pending record was accepted into the spool (UTC).
    pub oldest_pending_accepted_at: Option<String>,
    /// How long it has waited, in seconds.
    pub oldest_pending_age_seconds: Option<i64>,
    pub oldest_pending_occurred_at: Option<String>,
    /// The last push's summary (`hero_usage_push --json`), if any ran.
    pub last_push: Option<serde_json::Value>,
}

impl StatusReport {
    pub fn gather(spool_dir: &Path, node: &str, now: DateTime<Utc>) -> Result<StatusReport> {
        let (counts, last_push) = if spool_dir.is_dir() {
            let spool = Spool::open(spool_dir)?;
            (spool.counts()?, read_outcome(&spool))
        } else {
            (SpoolCounts::default(), None)
        };
        let fmt = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
        Ok(StatusReport {
            spool: spool_dir.display().to_string(),
            node: node.to_string(),
            pending: counts.pending,
            incoming: counts.incoming,
            sent: counts.sent,
            rejected: counts.rejected,
            oldest_pending_accepted_at: counts.oldest_pending_mtime.map(fmt),
            oldest_pending_age_seconds: counts
                .oldest_pending_mtime
                .map(|t| (now - t).num_seconds().max(0)),
            oldest_pending_occurred_at: counts.oldest_pending_occurred_at.map(|t| t.to_string()),
            last_push,
        })
    }

    /// True when the oldest pending record has waited longer than `max_age` seconds.
    pub fn too_old(&self, max_age: u64) -> bool {
        self.oldest_pending_age_seconds
            .is_some_and(|age| age > max_age as i64)
    }

    fn last(&self, key: &str) -> Option<&serde_json::Value> {
        self.last_push.as_ref().and_then(|v| v.get(key))
    }

    /// For people.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "spool     {} (node {})", self.spool, self.node);
        let _ = write!(s, "pending   {}", self.pending);
        if let (Some(at), Some(age)) = (
            &self.oldest_pending_accepted_at,
            self.oldest_pending_age_seconds,
        ) {
            let _ = write!(s, " (oldest accepted {at} UTC, {age} s ago)");
        }
        s.push('\n');
        let _ = writeln!(
            s,
            "incoming  {}\nsent      {} (kept for duplicate detection)\nrejected  {}",
            self.incoming, self.sent, self.rejected
        );
        match &self.last_push {
            None => s.push_str("last push never ran on this spool\n"),
            Some(_) => {
                let get = |k| {
                    self.last(k)
                        .map(|v| v.to_string().trim_matches('"').to_string())
                        .unwrap_or_default()
                };
                let _ = writeln!(
                    s,
                    "last push {} at {} UTC, exit {}: {} pushed, {} quarantined{}",
                    get("outcome"),
                    get("finished_at"),
                    get("exit_code"),
                    get("pushed"),
                    self.last("quarantined")
                        .and_then(|q| q.as_array())
                        .map_or(0, Vec::len),
                    self.last("error")
                        .and_then(|e| e.as_str())
                        .map(|e| format!("; error: {e}"))
                        .unwrap_or_default()
                );
            }
        }
        s
    }

    /// Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let mut s = String::new();
        let node = self.node.replace('\\', "\\\\").replace('"', "\\\"");
        let mut gauge = |name: &str, help: &str, value: Option<f64>| {
            if let Some(v) = value {
                let _ = writeln!(s, "# HELP hero_usage_{name} {help}");
                let _ = writeln!(s, "# TYPE hero_usage_{name} gauge");
                let _ = writeln!(s, "hero_usage_{name}{{node=\"{node}\"}} {v}");
            }
        };
        gauge(
            "pending_records",
            "Records accepted and waiting for a push.",
            Some(self.pending as f64),
        );
        gauge(
            "incoming_files",
            "Raw drops waiting in incoming/.",
            Some(self.incoming as f64),
        );
        gauge(
            "sent_records",
            "Pushed records kept for duplicate detection.",
            Some(self.sent as f64),
        );
        gauge(
            "rejected_files",
            "Files quarantined in rejected/.",
            Some(self.rejected as f64),
        );
        gauge(
            "oldest_pending_age_seconds",
            "How long the oldest pending record has waited.",
            Some(self.oldest_pending_age_seconds.unwrap_or(0) as f64),
        );
        let num = |k: &str| self.last(k).and_then(serde_json::Value::as_f64);
        gauge(
            "last_push_exit_code",
            "Exit code of the last push.",
            num("exit_code"),
        );
        gauge(
            "last_push_pushed_records",
            "Records committed by the last push.",
            num("pushed"),
        );
        let finished = self
            .last("finished_at")
            .and_then(|v| v.as_str())
            .and_then(|t| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S").ok())
            .map(|t| t.and_utc().timestamp() as f64);
        gauge(
            "last_push_timestamp_seconds",
            "When the last push finished (Unix time).",
            finished,
        );
        s
    }
}
