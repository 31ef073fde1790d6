//! What the audit found: violations (exit 65) and notes (worth a look, not
//! wrong), each naming the file, the record key and the commit.

use crate::text::escape_controls;
use serde::Serialize;
use std::collections::BTreeMap;

/// Violations kept in full per kind; beyond that only counted, so that a
/// badly broken repository cannot exhaust memory.
pub const KEEP_PER_KIND: usize = 1000;

/// One kind of broken rule (see `man 1 hero_usage_audit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViolationKind {
    /// A path under `nodes/` outside `nodes/<node>/usage_<YYYY-MM-DD-HH>.otoml`.
    BadName,
    /// The file is not a usage batch (not UTF-8, not TOML, wrong shape).
    Unparsable,
    /// It parses, but re-rendering it does not give the same bytes.
    NotCanonical,
    /// A record breaks a field rule.
    BadRecord,
    /// A record's `occurred_at` lies outside its file's hour.
    WrongHour,
    /// A record's `node_id` is not its folder's node.
    WrongNode,
    /// An idempotency key twice within one node.
    DuplicateKey,
    /// A record changed after it landed.
    ChangedRecord,
    /// A record removed after it landed.
    RemovedRecord,
    /// A commit touching `nodes/<node>/` not made by that node's push.
    WrongAuthor,
    /// A commit on branch `usage/<node>` touching another node's folder.
    ForeignNode,
    /// A version of an hour file in history that does not parse.
    UnparsableVersion,
    /// A `refs/replace/*` reference: replacement objects rewrite history.
    ReplaceRef,
    /// A tree holding one name twice.
    DuplicateEntry,
    /// Two names in one folder that differ only in case.
    CaseCollision,
    /// An hour file whose mode is not 100644 (executable, link, submodule).
    BadMode,
    /// An hour file over the size limit, read no further.
    TooLarge,
    /// Two spool ids writing one node without an adoption between them.
    TwoSpools,
    /// A branch whose tip remembered by `--state` is no ancestor of its tip now.
    RewrittenBranch,
    /// A branch remembered by `--state` that is gone.
    DeletedBranch,
    /// `--allowed-signers`: an hour file written unsigned after its node signed.
    Unsigned,
    /// `--allowed-signers`: a signature that does not verify, or by another key.
    BadSignature,
    /// `--allowed-signers`: a signature without its hour file.
    OrphanSignature,
}

impl ViolationKind {
    pub fn name(self) -> &'static str {
        match self {
            ViolationKind::BadName => "bad-name",
            ViolationKind::Unparsable => "unparsable",
            ViolationKind::NotCanonical => "not-canonical",
            ViolationKind::BadRecord => "bad-record",
            ViolationKind::WrongHour => "wrong-hour",
            ViolationKind::WrongNode => "wrong-node",
            ViolationKind::DuplicateKey => "duplicate-key",
            ViolationKind::ChangedRecord => "changed-record",
            ViolationKind::RemovedRecord => "removed-record",
            ViolationKind::WrongAuthor => "wrong-author",
            ViolationKind::ForeignNode => "foreign-node",
            ViolationKind::UnparsableVersion => "unparsable-version",
            ViolationKind::ReplaceRef => "replace-ref",
            ViolationKind::DuplicateEntry => "duplicate-entry",
            ViolationKind::CaseCollision => "case-collision",
            ViolationKind::BadMode => "bad-mode",
            ViolationKind::TooLarge => "too-large",
            ViolationKind::TwoSpools => "two-spools",
            ViolationKind::RewrittenBranch => "rewritten-branch",
            ViolationKind::DeletedBranch => "deleted-branch",
            ViolationKind::Unsigned => "unsigned",
            ViolationKind::BadSignature => "bad-signature",
            ViolationKind::OrphanSignature => "orphan-signature",
        }
    }
}

/// Where something was seen: a branch and its commit (`None` when the
/// source cannot tell, e.g. a forge without a branch list).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Place {
    pub branch: String,
    pub commit: Option<String>,
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub kind: ViolationKind,
    pub file: String,
    pub key: Option<String>,
    pub branch: String,
    pub commit: Option<String>,
    /// The other commit involved (the version before, for history checks).
    pub other_commit: Option<String>,
    pub detail: String,
}

impl Violation {
    pub fn new(kind: ViolationKind, file: &str, place: &Place, detail: impl Into<String>) -> Self {
        Violation {
            kind,
            file: file.to_string(),
            key: None,
            branch: place.branch.clone(),
            commit: place.commit.clone(),
            other_commit: None,
            detail: detail.into(),
        }
    }

    pub fn key(mut self, key: Option<&str>) -> Self {
        self.key = key.map(str::to_string);
        self
    }

    /// One line for people: kind, file, key, commit(s), what is wrong.
    /// Control characters (a file name may hold any) are escaped.
    pub fn line(&self) -> String {
        let mut s = format!("{}: {}", self.kind.name(), escape_controls(&self.file));
        if let Some(k) = &self.key {
            s.push_str(&format!(" key {k}"));
        }
        if let Some(o) = &self.other_commit {
            s.push_str(&format!(" commit {o} then"));
        }
        match &self.commit {
            Some(c) => s.push_str(&format!(" commit {c} ({})", self.branch)),
            None => s.push_str(&format!(" branch {}", self.branch)),
        }
        format!("{s}: {}", escape_controls(&self.detail))
    }
}

/// A key found in two or more nodes: allowed (keys are unique per node),
/// but worth a look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    pub key: String,
    pub nodes: Vec<String>,
}

/// Violations, counted by kind, the first [`KEEP_PER_KIND`] of each kept.
#[derive(Debug, Default, Clone)]
pub struct Findings {
    pub counts: BTreeMap<ViolationKind, u64>,
    pub kept: Vec<Violation>,
}

impl Findings {
    pub fn push(&mut self, v: Violation) {
        let n = self.counts.entry(v.kind).or_insert(0);
        *n += 1;
        if *n as usize <= KEEP_PER_KIND {
            self.kept.push(v);
        }
    }

    pub fn merge(&mut self, other: Findings) {
        for v in other.kept {
            self.push(v);
        }
        for (kind, n) in other.counts {
            let kept = other_kept(n);
            *self.counts.entry(kind).or_insert(0) += n - kept;
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// `3 (duplicate-key 1, not-canonical 2)`
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .counts
            .iter()
            .map(|(k, n)| format!("{} {n}", k.name()))
            .collect();
        if parts.is_empty() {
            "0".to_string()
        } else {
            format!("{} ({})", self.total(), parts.join(", "))
        }
    }
}

/// How many of `n` violations of one kind the other side kept (and pushed here).
fn other_kept(n: u64) -> u64 {
    n.min(KEEP_PER_KIND as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(kind: ViolationKind) -> Violation {
        Violation::new(kind, "nodes/a/x", &Place::default(), "d")
    }

    #[test]
    fn counts_every_violation_and_keeps_a_bounded_number() {
        let mut a = Findings::default();
        let mut b = Findings::default();
        for _ in 0..KEEP_PER_KIND + 5 {
            b.push(v(ViolationKind::BadName));
        }
        a.push(v(ViolationKind::BadName));
        a.merge(b);
        assert_eq!(a.counts[&ViolationKind::BadName], KEEP_PER_KIND as u64 + 6);
        assert_eq!(a.kept.len(), KEEP_PER_KIND);
        assert_eq!(
            a.summary(),
            format!("{} (bad-name {})", KEEP_PER_KIND + 6, KEEP_PER_KIND + 6)
        );
    }

    #[test]
    fn a_line_names_file_key_and_commits() {
        let mut x = v(ViolationKind::ChangedRecord).key(Some("k1"));
        x.commit = Some("bbb".into());
        x.other_commit = Some("aaa".into());
        x.branch = "main".into();
        assert_eq!(
            x.line(),
            "changed-record: nodes/a/x key k1 commit aaa then commit bbb (main): d"
        );
        x.file = "nodes/a/b\nc".into();
        assert!(x.line().starts_with("changed-record: nodes/a/b\\nc key"));
    }
}
