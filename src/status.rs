//! What the spool holds and how the last push went (man 1
//! hero_usage_status), for people, scripts (`--json`) and monitoring
//! (`--prometheus`). Read-only: a missing spool reads as empty; anything
//! else that is not a directory is an error (73).

use crate::error::{Kind, fail};
use crate::outcome::read_json as read_outcome;
use crate::spool::{Spool, SpoolCounts};
use crate::text::{escape_controls, one_line};
use anyhow::Result;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;
use std::fmt::Write;
use std::io;
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
    /// How long the oldest record waiting in the spool has waited, in
    /// seconds: a pending record since it was accepted, or a drop in
    /// `incoming/` since it was renamed there (its ctime), whichever is older.
    pub oldest_pending_age_seconds: Option<i64>,
    pub oldest_pending_occurred_at: Option<String>,
    /// The last push's summary (`hero_usage_push --json`), if any ran.
    pub last_push: Option<serde_json::Value>,
    /// When the last push that exited 0 finished (UTC), if any did.
    pub last_success_at: Option<String>,
    /// Why the last push's outcome file cannot be read, when it is there
    /// but broken (`last_push` is then null, which alone would read as
    /// "never ran").
    pub last_push_unreadable: Option<String>,
    /// The oldest pending record and the oldest drop, each on its own, for
    /// the text (the JSON keeps its keys: the age above counts both).
    #[serde(skip)]
    pub oldest_accepted: Option<Waiting>,
    #[serde(skip)]
    pub oldest_dropped: Option<Waiting>,
}

/// The oldest of one kind of waiting file: since when (UTC) and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub since: String,
    pub age_seconds: i64,
}

impl Waiting {
    fn new(since: DateTime<Utc>, now: DateTime<Utc>) -> Waiting {
        Waiting {
            since: since.format(crate::record::TIME_FORMAT).to_string(),
            age_seconds: (now - since).num_seconds().max(0),
        }
    }
}

impl StatusReport {
    pub fn gather(spool_dir: &Path, node: &str, now: DateTime<Utc>) -> Result<StatusReport> {
        let cannot = |why: String| {
            fail(
                Kind::CantCreate,
                format!(
                    "cannot read spool {}: {why}; check --spool / HERO_USAGE_SPOOL",
                    spool_dir.display()
                ),
            )
        };
        // Only a spool that does not exist yet reads as empty: anything else
        // in its place (a file, a dangling symbolic link, a path through a
        // file) is a mistake to report, never an empty spool.
        let mut last_success_at = None;
        let (counts, outcome) = match std::fs::metadata(spool_dir) {
            Ok(m) if m.is_dir() => {
                // Read-only: status creates nothing in the spool.
                let spool =
                    Spool::open_read_only(spool_dir).map_err(|e| not_the_owner(spool_dir, e))?;
                // A spool of another node: its figures labelled with this
                // name would mislead the monitoring; every binary refuses it.
                spool.check_node(node)?;
                last_success_at = crate::outcome::last_success(&spool);
                let counts = spool.counts().map_err(|e| not_the_owner(spool_dir, e))?;
                (counts, read_outcome(&spool))
            }
            Ok(_) => return Err(cannot("it is not a directory".into())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if std::fs::symlink_metadata(spool_dir).is_ok() {
                    return Err(cannot("it is a symbolic link to nothing".into()));
                }
                (SpoolCounts::default(), Ok(None))
            }
            // A directory on the way that this user may not enter: the
            // spool of another user, most likely (a service user's).
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(cannot(format!(
                    "{e}: a directory on the way to it is closed to this user; \
                     run as the spool's owner (sudo -u OWNER hero_usage_status), \
                     or read the metrics its status timer writes (--out)"
                )));
            }
            Err(e) => return Err(cannot(e.to_string())),
        };
        let (last_push, last_push_unreadable) = match outcome {
            Ok(summary) => (summary, None),
            Err(why) => (None, Some(why)),
        };
        let oldest_accepted = counts.oldest_pending_mtime.map(|t| Waiting::new(t, now));
        let oldest_dropped = counts.oldest_incoming_ctime.map(|t| Waiting::new(t, now));
        Ok(StatusReport {
            spool: spool_dir.display().to_string(),
            node: node.to_string(),
            pending: counts.pending,
            incoming: counts.incoming,
            sent: counts.sent,
            rejected: counts.rejected,
            oldest_pending_accepted_at: oldest_accepted.as_ref().map(|w| w.since.clone()),
            oldest_pending_age_seconds: [&oldest_accepted, &oldest_dropped]
                .into_iter()
                .flatten()
                .map(|w| w.age_seconds)
                .max(),
            oldest_pending_occurred_at: counts.oldest_pending_occurred_at.map(|t| t.to_string()),
            last_push,
            last_success_at,
            last_push_unreadable,
            oldest_accepted,
            oldest_dropped,
        })
    }

    /// True when the oldest pending record or drop has waited longer than `max_age` seconds.
    pub fn too_old(&self, max_age: u64) -> bool {
        // Compared as u64: a limit of 2^63 or more must not wrap negative.
        self.oldest_pending_age_seconds
            .and_then(|age| u64::try_from(age).ok())
            .is_some_and(|age| age > max_age)
    }

    fn last(&self, key: &str) -> Option<&serde_json::Value> {
        self.last_push.as_ref().and_then(|v| v.get(key))
    }

    /// For people.
    pub fn text(&self) -> String {
        let mut s = String::new();
        // A path or a message may hold control characters: never raw.
        let _ = writeln!(
            s,
            "spool     {} (node {})",
            escape_controls(&self.spool),
            self.node
        );
        let mut count = |label: &str, n: usize, oldest: &Option<Waiting>, how: &str| {
            let _ = write!(s, "{label:<10}{n}");
            if let Some(w) = oldest {
                let _ = write!(
                    s,
                    " (oldest {how} {} UTC, {} s ago)",
                    w.since, w.age_seconds
                );
            }
            s.push('\n');
        };
        count("pending", self.pending, &self.oldest_accepted, "accepted");
        count("incoming", self.incoming, &self.oldest_dropped, "dropped");
        let _ = writeln!(
            s,
            "sent      {} (kept for duplicate detection)\nrejected  {}",
            self.sent, self.rejected
        );
        match (&self.last_push, &self.last_push_unreadable) {
            (_, Some(why)) => {
                let _ = writeln!(s, "last push unreadable outcome file {}", one_line(why));
            }
            (None, None) => s.push_str("last push never ran on this spool\n"),
            (Some(_), None) => {
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
                        .map(|e| format!("; error: {}", one_line(e)))
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
        for (name, help, value) in self.spool_gauges().into_iter().chain(self.push_gauges()) {
            gauge(name, help, value);
        }
        s
    }

    /// The spool's gauges: name, help and value.
    fn spool_gauges(&self) -> [Gauge; 5] {
        [
            (
                "pending_records",
                "Records accepted and waiting for a push.",
                Some(self.pending as f64),
            ),
            (
                "incoming_files",
                "Raw drops waiting in incoming/.",
                Some(self.incoming as f64),
            ),
            (
                "sent_records",
                "Pushed records kept for duplicate detection.",
                Some(self.sent as f64),
            ),
            (
                "rejected_files",
                "Files quarantined in rejected/.",
                Some(self.rejected as f64),
            ),
            (
                "oldest_pending_age_seconds",
                "How long the oldest pending record or incoming drop has waited.",
                Some(self.oldest_pending_age_seconds.unwrap_or(0) as f64),
            ),
        ]
    }

    /// The last push's gauges (`None`: not exposed, no push yet).
    fn push_gauges(&self) -> [Gauge; 5] {
        let num = |k: &str| self.last(k).and_then(serde_json::Value::as_f64);
        let finished = self
            .last("finished_at")
            .and_then(|v| v.as_str())
            .and_then(unix_seconds);
        [
            (
                "last_push_outcome_unreadable",
                "1 when the last push's outcome file is there but cannot be read.",
                Some(f64::from(u8::from(self.last_push_unreadable.is_some()))),
            ),
            (
                "last_push_exit_code",
                "Exit code of the last push.",
                num("exit_code"),
            ),
            (
                "last_push_pushed_records",
                "Records committed by the last push.",
                num("pushed"),
            ),
            (
                "last_push_timestamp_seconds",
                "When the last push finished (Unix time).",
                finished,
            ),
            (
                "last_success_timestamp_seconds",
                "When the last push that exited 0 finished (Unix time; 0: never).",
                Some(
                    self.last_success_at
                        .as_deref()
                        .and_then(unix_seconds)
                        .unwrap_or(0.0),
                ),
            ),
        ]
    }
}

/// A Prometheus gauge's name (after `hero_usage_`), help and value.
type Gauge = (&'static str, &'static str, Option<f64>);

/// `YYYY-MM-DD HH:MM:SS` (UTC) as Unix seconds.
fn unix_seconds(t: &str) -> Option<f64> {
    NaiveDateTime::parse_from_str(t, crate::record::TIME_FORMAT)
        .ok()
        .map(|t| t.and_utc().timestamp() as f64)
}

/// A spool this user cannot read because another user owns it (a spool
/// of mode 0700 that a service user writes): say whose it is and what to
/// run instead, rather than a bare "permission denied".
fn not_the_owner(spool_dir: &Path, err: anyhow::Error) -> anyhow::Error {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(spool_dir) else {
        return err;
    };
    let (me, _) = crate::users::current_ids();
    if meta.uid() == me || me == 0 {
        return err;
    }
    let owner = crate::users::user_name(meta.uid());
    let dir = crate::text::shell_word(&spool_dir.display().to_string());
    fail(
        Kind::CantCreate,
        format!(
            "cannot read spool {}: it belongs to user {owner} (mode {:o}) and this is user {}: \
             run as its owner (sudo -u {owner} hero_usage_status --spool {dir}), or read the \
             metrics its status timer writes (hero_usage_status --prometheus --out FILE); \
             never loosen the spool's mode ({err:#})",
            escape_controls(&spool_dir.display().to_string()),
            meta.mode() & 0o7777,
            crate::users::user_name(me),
        ),
    )
}
