//! The outcome of a push run: the summary `hero_usage_push` prints (a line,
//! or `--json`), and the two state files `hero_usage_status` reads to tell
//! how the last push went (`last_push.json`) and when one last succeeded
//! (`last_success`). One typed struct, written by push and read by status,
//! so that status needs neither push nor the forge client.

use crate::error::{Exit, Kind};
use crate::forgejo::FileOp;
use crate::spool::Spool;
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// The file `hero_usage_status` reads, inside the spool's state directory.
pub const OUTCOME_FILE: &str = "last_push.json";

/// When the last push that exited 0 finished, `YYYY-MM-DD HH:MM:SS` (UTC),
/// for monitoring (`hero_usage_last_success_timestamp_seconds`): a state
/// file of its own, since the outcome file is rewritten by every run,
/// failed ones included.
pub const LAST_SUCCESS_FILE: &str = "last_success";

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// At least one commit landed.
    Pushed,
    #[default]
    NothingToPush,
    /// Another push holds the spool's push lock.
    Locked,
    DryRun,
    Failed,
}

/// One hour file the run would write or wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FilePlan {
    pub path: String,
    /// Records this run adds to the file.
    pub new_records: usize,
    /// Records in the file after the change.
    pub total_records: usize,
    pub operation: FileOp,
}

/// A record, file or hour set aside, with why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Problem {
    pub what: String,
    pub reason: String,
}

/// What one run did.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct PushSummary {
    pub outcome: Outcome,
    pub node: String,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: u64,
    pub ingested: usize,
    pub ingest_duplicates: usize,
    /// Records committed by this run.
    pub pushed: usize,
    /// Pending records the billing repository already held identically.
    pub already_present: usize,
    pub files: Vec<FilePlan>,
    /// The last commit this run made (or found its records in, after a lost reply).
    pub commit: Option<String>,
    /// Commits this run made.
    pub commits: usize,
    /// Requests that tried to commit (more than `commits` after lost races).
    pub attempts: u32,
    /// Bad drops and conflicting records moved to `rejected/`.
    pub quarantined: Vec<Problem>,
    /// Hours left pending because their remote file could not be parsed,
    /// or was too large for the server to take.
    pub unreadable_hours: Vec<Problem>,
    /// Records still pending after the run.
    pub pending_after: usize,
    pub pruned: usize,
    /// What the run failed with, or set aside (65); none when it ended
    /// well. Shown as the exit code it maps to.
    #[serde(rename = "exit_code", with = "exit_code")]
    pub failure: Option<Kind>,
    pub error: Option<String>,
    /// Retries and other notes of the run, for the operator's log.
    pub notes: Vec<String>,
}

impl PushSummary {
    /// How the run ends.
    pub fn exit(&self) -> Exit {
        Exit::of(self.failure)
    }

    /// What the push binary prints: the summary line, and for a dry run the
    /// file each commit would write. A failure's error is not in it: the
    /// binary prints that on stderr, once.
    pub fn text(&self) -> String {
        let mut text = format!("{}\n", self.line_with(ErrorText::OnStderr));
        if self.outcome == Outcome::DryRun {
            for f in &self.files {
                text.push_str(&format!(
                    "would {} {}: {} new, {} in all\n",
                    f.operation, f.path, f.new_records, f.total_records
                ));
            }
        }
        text
    }

    /// The one summary line, a failure's error in it (the shim's log).
    pub fn line(&self) -> String {
        self.line_with(ErrorText::Inline)
    }

    fn line_with(&self, error: ErrorText) -> String {
        let mut s = match self.outcome {
            Outcome::Locked => return "another push holds the lock; nothing done".to_string(),
            Outcome::DryRun => format!(
                "dry run: would push {} records in {} file(s) ({} already present)",
                self.pushed,
                self.files.len(),
                self.already_present
            ),
            Outcome::NothingToPush => {
                format!("nothing to push ({} already present)", self.already_present)
            }
            Outcome::Failed => format!(
                "push failed{}: {}",
                if self.attempts > 1 {
                    format!(" after {} attempts", self.attempts)
                } else {
                    String::new()
                },
                match error {
                    ErrorText::Inline => self.error.as_deref().unwrap_or("unknown error"),
                    ErrorText::OnStderr => "the error is on stderr",
                }
            ),
            Outcome::Pushed => format!(
                "pushed {} records in {} file(s), {}commit {} ({} already present)",
                self.pushed,
                self.files.len(),
                if self.commits > 1 {
                    format!("{} commits, last ", self.commits)
                } else {
                    String::new()
                },
                self.commit.as_deref().map(short).unwrap_or("none"),
                self.already_present
            ),
        };
        // Drops are counted alike in a dry run (what a push would ingest)
        // and a push: new ones, and duplicates (removed, nothing changed).
        s.push_str(&format!(
            "; {} {}, duplicate drops {}, quarantined {}, unreadable hours {}, pending {}, pruned {}",
            if self.outcome == Outcome::DryRun {
                "would ingest"
            } else {
                "ingested"
            },
            self.ingested,
            self.ingest_duplicates,
            self.quarantined.len(),
            self.unreadable_hours.len(),
            self.pending_after,
            self.pruned
        ));
        s
    }
}

/// Where a failed run's error is told: in the summary line, or on stderr
/// beside it (never both).
#[derive(Clone, Copy)]
enum ErrorText {
    Inline,
    OnStderr,
}

/// A summary's failure as its exit code, in the JSON that scripts read.
mod exit_code {
    use crate::error::{Exit, Kind};
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(failure: &Option<Kind>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(Exit::of(*failure).code())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Kind>, D::Error> {
        let code = u8::deserialize(d)?;
        match Exit::from_code(code) {
            Some(Exit::Ok) => Ok(None),
            Some(Exit::Failed(kind)) => Ok(Some(kind)),
            _ => Err(D::Error::custom(format!("{code} is no push's exit code"))),
        }
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// Write the outcome file atomically (tmp + rename). A run that exited 0
/// (and was not merely locked out) also leaves its time for monitoring
/// ([`LAST_SUCCESS_FILE`]).
pub fn write(spool: &Spool, summary: &PushSummary) -> Result<()> {
    spool.write_state(OUTCOME_FILE, &serde_json::to_vec_pretty(summary)?)?;
    if summary.failure.is_none() && summary.outcome != Outcome::Locked {
        spool.write_state(LAST_SUCCESS_FILE, summary.finished_at.as_bytes())?;
    }
    Ok(())
}

/// When a push last succeeded on this spool, if one ever did.
pub fn last_success(spool: &Spool) -> Option<String> {
    let bytes = spool.read_state(LAST_SUCCESS_FILE).ok()??;
    Some(String::from_utf8_lossy(&bytes).trim().to_string())
}

/// The last run's summary: `Ok(None)` when no push ran on this spool,
/// `Err(why)` when the file is there but is no summary: monitoring must not
/// take a broken file for a push that never ran.
pub fn read(spool: &Spool) -> std::result::Result<Option<PushSummary>, String> {
    let path = spool.state_dir().join(OUTCOME_FILE);
    let bytes = match spool.read_state(OUTCOME_FILE) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let value = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(v) if v.is_object() => v,
        Ok(_) => return Err(format!("{}: not a JSON object", path.display())),
        Err(e) => return Err(format!("{}: not valid JSON ({e})", path.display())),
    };
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| format!("{}: not a push summary ({e})", path.display()))
}

/// [`read`], as the JSON object `hero_usage_status --json` shows.
pub fn read_json(spool: &Spool) -> std::result::Result<Option<serde_json::Value>, String> {
    read(spool)?
        .map(|s| serde_json::to_value(s).map_err(|e| e.to_string()))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_keep_their_json_names() {
        let names: Vec<String> = [
            Outcome::Pushed,
            Outcome::NothingToPush,
            Outcome::Locked,
            Outcome::DryRun,
            Outcome::Failed,
        ]
        .iter()
        .map(|o| serde_json::to_string(o).unwrap())
        .collect();
        assert_eq!(
            names,
            [
                "\"pushed\"",
                "\"nothing-to-push\"",
                "\"locked\"",
                "\"dry-run\"",
                "\"failed\""
            ]
        );
        let failed = PushSummary {
            failure: Some(crate::error::Kind::TempFail),
            ..Default::default()
        };
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!(json["exit_code"], 75);
        let back: PushSummary = serde_json::from_value(json).unwrap();
        assert_eq!(back.exit(), Exit::Failed(crate::error::Kind::TempFail));
        let mut done = serde_json::to_value(PushSummary::default()).unwrap();
        assert_eq!(done["exit_code"], 0);
        done["exit_code"] = 2.into();
        assert!(serde_json::from_value::<PushSummary>(done).is_err());
        let plan = FilePlan {
            path: "p".into(),
            new_records: 1,
            total_records: 2,
            operation: FileOp::Update,
        };
        assert!(
            serde_json::to_string(&plan)
                .unwrap()
                .contains("\"operation\":\"update\"")
        );
    }
}
