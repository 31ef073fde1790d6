//! The audit's report: what was read, what was found, the totals; as text
//! for people and as one JSON object for scripts.

use super::findings::{Findings, Note, Violation};
use super::spools::Spools;
use super::totals::{Row, Totals};
use serde::Serialize;
use std::collections::BTreeMap;

/// Everything the audit tells.
#[derive(Debug)]
pub struct Report {
    /// `git <path>` or `forge <url> <owner/repo>`.
    pub source: String,
    /// Why the history was not walked (the API source, `--no-history`);
    /// `None`: it was.
    pub no_history_because: Option<String>,
    pub branches: Vec<String>,
    pub ignored_branches: Vec<String>,
    pub nodes: usize,
    pub files: usize,
    pub records: u64,
    pub commits: usize,
    /// The spool ids that wrote each node (history walk only).
    pub spools: Spools,
    /// With `--state`: how many branches an earlier run proved.
    pub remembered: Option<usize>,
    pub findings: Findings,
    pub notes: Vec<Note>,
    /// How many keys two or more nodes share (notes name at most a few).
    pub shared_keys: usize,
    pub totals: Option<Totals>,
    /// With `--allowed-signers`: what the signature checks found.
    pub signatures: Option<super::signed::Signatures>,
}

#[derive(Serialize)]
struct Json<'a> {
    source: &'a str,
    history_checked: bool,
    branches: &'a [String],
    ignored_branches: &'a [String],
    nodes: usize,
    files: usize,
    records: u64,
    commits: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    remembered_branches: Option<usize>,
    spools: BTreeMap<&'a str, &'a [String]>,
    violation_count: u64,
    violation_counts: BTreeMap<&'static str, u64>,
    violations: &'a [Violation],
    shared_keys: usize,
    notes: &'a [Note],
    #[serde(skip_serializing_if = "Option::is_none")]
    totals: Option<JsonTotals>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signatures: Option<&'a super::signed::Signatures>,
}

/// Unsigned files named in the text report; the rest are counted.
const NAMED_UNSIGNED: usize = 20;

#[derive(Serialize)]
struct JsonTotals {
    period: &'static str,
    rows: Vec<Row>,
}

impl Report {
    pub fn clean(&self) -> bool {
        self.findings.total() == 0
    }

    pub fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string(&Json {
            source: &self.source,
            history_checked: self.no_history_because.is_none(),
            branches: &self.branches,
            ignored_branches: &self.ignored_branches,
            nodes: self.nodes,
            files: self.files,
            records: self.records,
            commits: self.commits,
            remembered_branches: self.remembered,
            spools: self
                .spools
                .0
                .iter()
                .map(|(n, s)| (n.as_str(), s.ids.as_slice()))
                .collect(),
            violation_count: self.findings.total(),
            violation_counts: self
                .findings
                .counts
                .iter()
                .map(|(k, n)| (k.name(), *n))
                .collect(),
            violations: &self.findings.kept,
            shared_keys: self.shared_keys,
            notes: &self.notes,
            totals: self.totals.as_ref().map(|t| JsonTotals {
                period: t.period.name(),
                rows: t.rows(),
            }),
            signatures: self.signatures.as_ref(),
        })
    }

    pub fn text(&self) -> String {
        let mut out = format!("source: {}\n", self.source);
        out.push_str(&format!("branches: {}\n", self.branches.join(", ")));
        if !self.ignored_branches.is_empty() {
            out.push_str(&format!(
                "ignored branches (neither default nor usage/*): {}\n",
                self.ignored_branches.join(", ")
            ));
        }
        let history = match &self.no_history_because {
            None => format!("{} commits walked", self.commits),
            Some(why) => format!("no history checks ({why})"),
        };
        out.push_str(&format!(
            "read: {} nodes, {} files, {} records; {history}\n",
            self.nodes, self.files, self.records
        ));
        if let Some(n) = self.remembered {
            out.push_str(&format!(
                "state: {n} branches proved before; only newer commits and files read, records counted in all\n"
            ));
        }
        for (node, s) in &self.spools.0 {
            out.push_str(&format!("spools of {node}: {}\n", s.ids.join(", ")));
        }
        if let Some(s) = &self.signatures {
            out.push_str(&format!(
                "signatures: {} hour files verified; {} written before their node first signed\n",
                s.verified,
                s.unsigned_before_signing.len()
            ));
            for f in s.unsigned_before_signing.iter().take(NAMED_UNSIGNED) {
                out.push_str(&format!(
                    "note unsigned, written before its node signed: {f}\n"
                ));
            }
            if s.unsigned_before_signing.len() > NAMED_UNSIGNED {
                out.push_str(&format!(
                    "... {} more unsigned files written before their node signed\n",
                    s.unsigned_before_signing.len() - NAMED_UNSIGNED
                ));
            }
        }
        out.push_str(&format!("violations: {}\n", self.findings.summary()));
        for v in &self.findings.kept {
            out.push_str(&format!("violation {}\n", v.line()));
        }
        let shown: u64 = self.findings.kept.len() as u64;
        if self.findings.total() > shown {
            out.push_str(&format!(
                "... {} more violations counted, not listed\n",
                self.findings.total() - shown
            ));
        }
        if self.shared_keys > 0 {
            out.push_str(&format!(
                "notes: {} keys are used by two or more nodes (allowed: keys are unique per node)\n",
                self.shared_keys
            ));
        }
        for n in &self.notes {
            out.push_str(&format!(
                "note shared-key: key {} in nodes {}\n",
                n.key,
                n.nodes.join(", ")
            ));
        }
        if let Some(t) = &self.totals {
            out.push_str(&format!("totals per {}:\n", t.period.name()));
            out.push_str(&t.table());
        }
        out
    }
}
