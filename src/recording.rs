//! The recording use case that `hero_usage_record` and the HTTP shim share:
//! a record's fields → validated → durably in the spool, one at a time
//! ([`record_validated`]) or in group commits ([`commit_groups`], which
//! [`record_lines`] runs over JSON lines and the shim over requests). Answers go to the caller (a sink,
//! a closure); printing and HTTP are theirs.

use crate::error::{Kind, fail};
use crate::record::{Defaults, RecordInput, Validated, describe};
use crate::spool::{CHUNK_RECORDS, RecordOutcome, Spool};
use anyhow::Result;
use chrono::Utc;
use std::io::BufRead;
use std::sync::mpsc::{Receiver, sync_channel};

/// Longest accepted JSON line (a record is far shorter).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// What became of one record: the outcome with the record's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    Recorded(String),
    Duplicate(String),
    Conflict(String, Vec<&'static str>),
    /// Not recorded: the key cannot be checked (a damaged ledger shard, or
    /// a damaged record file stored under it), with why; this record alone
    /// is held back (73).
    Unchecked(String, String),
}

impl Written {
    fn new(key: String, outcome: RecordOutcome) -> Written {
        match outcome {
            RecordOutcome::Recorded => Written::Recorded(key),
            RecordOutcome::Duplicate => Written::Duplicate(key),
            RecordOutcome::Conflict(fields) => Written::Conflict(key, fields),
            RecordOutcome::Unchecked(why) => Written::Unchecked(key, why),
        }
    }
}

/// The message for a key reused with different content.
pub fn conflict_message(key: &str, fields: &[&str]) -> String {
    format!(
        "idempotency key `{key}` was already recorded with different {}; nothing changed. \
         Use a new key for a new record, or repeat the original fields exactly",
        fields.join(", ")
    )
}

/// The defaults for a record arriving now on this node.
pub fn defaults_now(node: &str) -> Defaults {
    Defaults {
        node: node.to_string(),
        now: Utc::now(),
        occurred_at: None,
    }
}

/// Record one validated record durably.
pub fn record_validated(spool: &Spool, v: Validated) -> Result<Written> {
    let outcome = spool.record(&v)?;
    Ok(Written::new(v.record.idempotency_key, outcome))
}

/// Both ends of a group commit: what a queued item is, and where the
/// answers go.
pub trait GroupSink<I> {
    /// What identifies a record's asker (a line number, a connection).
    type Tag;
    /// The record to commit with its tag, or `None` when the item is not one
    /// and was handled here (a bad line reported, say).
    fn admit(&mut self, item: I) -> Result<Option<(Self::Tag, Validated)>>;
    /// A group's tags with what became of each, in order, or the one error
    /// that failed the whole group (nothing of it may be acknowledged).
    fn answer(&mut self, tags: Vec<Self::Tag>, written: Result<Vec<Written>>) -> Result<()>;
}

/// Group commit, the one loop `--stdin` and the shim share: block for one
/// item, take what else is queued (up to [`CHUNK_RECORDS`] records), record
/// them as one [`Spool::record_batch`] (one chunk, its fsync and the
/// directory's), then answer the group. No timer: what arrives during a
/// commit forms the next group, so a lone record is never held back.
/// Returns when the queue closes, or with the first error the sink returns.
pub fn commit_groups<I, S: GroupSink<I> + ?Sized>(
    spool: &Spool,
    queue: &Receiver<I>,
    sink: &mut S,
) -> Result<()> {
    let mut tags = Vec::new();
    let mut items = Vec::new();
    while let Ok(first) = queue.recv() {
        let mut next = Some(first);
        while let Some(item) = next.take() {
            if let Some((tag, v)) = sink.admit(item)? {
                tags.push(tag);
                items.push(v);
            }
            if items.len() < CHUNK_RECORDS {
                next = queue.try_recv().ok();
            }
        }
        if items.is_empty() {
            continue;
        }
        let written = spool.record_batch(&items).map(|outcomes| {
            items
                .drain(..)
                .zip(outcomes)
                .map(|(v, o)| Written::new(v.record.idempotency_key, o))
                .collect()
        });
        items.clear();
        sink.answer(std::mem::take(&mut tags), written)?;
    }
    Ok(())
}

/// Where the answers of [`record_lines`] go.
pub trait LineAnswers {
    /// Line `n` is not a valid record; nothing of it was written.
    fn bad_line(&mut self, n: usize, problem: &str);
    /// A group of lines, each with what became of its record: all durable.
    fn group(&mut self, lines: &[usize], written: &[Written]) -> Result<()>;
}

/// Record JSON lines from `input` (defaults: `node`, now): every good line
/// is recorded, each bad one reported.
///
/// A reader thread parses and validates lines while this one commits them
/// ([`commit_groups`]): a file is recorded in full chunks and a slow stream
/// line by line as it comes, never held back waiting for more. The reader is
/// not joined on an error: it may be blocked on an input that never ends,
/// and the process exits anyway.
pub fn record_lines(
    spool: &Spool,
    node: &str,
    input: Box<dyn BufRead + Send>,
    answers: &mut dyn LineAnswers,
) -> Result<()> {
    let (lines, reader) = spawn_reader(input, node.to_string());
    commit_groups(spool, &lines, &mut LineSink(answers))?;
    // The channel closed: the reader is done. Had it panicked, lines would
    // be left unread: never report that as success.
    if reader.join().is_err() {
        return Err(fail(
            Kind::Internal,
            "the stdin reader failed; lines after the last answered one were not recorded",
        ));
    }
    Ok(())
}

/// [`record_lines`]' side of [`commit_groups`]: a bad line is reported at
/// once, a group's answers once it is durable; a spool error ends the run.
struct LineSink<'a>(&'a mut dyn LineAnswers);

impl GroupSink<Result<Line>> for LineSink<'_> {
    type Tag = usize;

    fn admit(&mut self, line: Result<Line>) -> Result<Option<(usize, Validated)>> {
        match line? {
            Line::Good(n, v) => Ok(Some((n, v))),
            Line::Bad(n, problem) => {
                self.0.bad_line(n, &problem);
                Ok(None)
            }
        }
    }

    fn answer(&mut self, lines: Vec<usize>, written: Result<Vec<Written>>) -> Result<()> {
        self.0.group(&lines, &written?)
    }
}

/// The thread that reads, parses and validates lines, and the channel it
/// hands them over.
fn spawn_reader(
    input: Box<dyn BufRead + Send>,
    node: String,
) -> (Receiver<Result<Line>>, std::thread::JoinHandle<()>) {
    let (send, lines) = sync_channel::<Result<Line>>(2 * CHUNK_RECORDS);
    let reader = std::thread::spawn(move || {
        let mut reader = LineReader {
            input,
            line_no: 0,
            buf: Vec::with_capacity(1024),
        };
        loop {
            let next = reader.next_line(&|| defaults_now(&node));
            let more = matches!(next, Ok(Some(_)));
            // Stop at the end, after an error, or when nobody listens.
            let Some(line) = next.transpose() else { break };
            if send.send(line).is_err() || !more {
                break;
            }
        }
    });
    (lines, reader)
}

/// One input line: a valid record, or the problem that makes it bad.
enum Line {
    Good(usize, Validated),
    Bad(usize, String),
}

/// JSON lines, numbered.
struct LineReader {
    input: Box<dyn BufRead + Send>,
    line_no: usize,
    buf: Vec<u8>,
}

impl LineReader {
    /// The next line that is not blank; `None` at the end of the input.
    fn next_line(&mut self, defaults: &dyn Fn() -> Defaults) -> Result<Option<Line>> {
        loop {
            self.buf.clear();
            let (n, too_long) = read_line_bounded(&mut *self.input, &mut self.buf)?;
            if n == 0 {
                return Ok(None);
            }
            self.line_no += 1;
            let bad = |problem: String| Ok(Some(Line::Bad(self.line_no, problem)));
            if too_long {
                return bad(format!("longer than {MAX_LINE_BYTES} bytes"));
            }
            let Ok(text) = std::str::from_utf8(&self.buf) else {
                return bad("not UTF-8 text".into());
            };
            if text.trim().is_empty() {
                continue;
            }
            let rec = RecordInput::from_json_text(text);
            return match rec.and_then(|i| i.validate(&defaults()).map_err(|errs| describe(&errs))) {
                Ok(v) => Ok(Some(Line::Good(self.line_no, v))),
                Err(problem) => bad(problem),
            };
        }
    }
}

/// What `--stdin` makes of `input`, line by line, without a spool: each
/// line that is not blank, numbered, as its record or its problem.
pub fn read_lines(input: &[u8], defaults: &Defaults) -> Vec<(usize, Result<Validated, String>)> {
    let mut reader = LineReader {
        input: Box::new(std::io::Cursor::new(input.to_vec())),
        line_no: 0,
        buf: Vec::new(),
    };
    let mut out = Vec::new();
    while let Ok(Some(line)) = reader.next_line(&|| defaults.clone()) {
        out.push(match line {
            Line::Good(n, v) => (n, Ok(v)),
            Line::Bad(n, problem) => (n, Err(problem)),
        });
    }
    out
}

/// Read one line (without its newline) of at most [`MAX_LINE_BYTES`]; a
/// longer line is consumed and reported as too long. Returns (bytes read
/// from input, too long).
fn read_line_bounded(input: &mut dyn BufRead, buf: &mut Vec<u8>) -> Result<(usize, bool)> {
    let mut total = 0;
    let mut too_long = false;
    loop {
        let avail = input
            .fill_buf()
            .map_err(|e| fail(Kind::NoInput, format!("cannot read stdin: {e}")))?;
        if avail.is_empty() {
            break;
        }
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        let content = if done {
            &avail[..take - 1]
        } else {
            &avail[..take]
        };
        if !too_long && buf.len() + content.len() <= MAX_LINE_BYTES {
            buf.extend_from_slice(content);
        } else {
            too_long = true;
            buf.clear();
        }
        total += take;
        input.consume(take);
        if done {
            break;
        }
    }
    Ok((total, too_long))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::sample_record;

    /// A group's tags and what became of them (or the error).
    type Group = (Vec<usize>, std::result::Result<Vec<Written>, String>);

    /// Collects what [`commit_groups`] answers.
    #[derive(Default)]
    struct Collect(Vec<Group>);

    impl GroupSink<(usize, Validated)> for Collect {
        type Tag = usize;

        fn admit(&mut self, item: (usize, Validated)) -> Result<Option<(usize, Validated)>> {
            Ok(Some(item))
        }

        fn answer(&mut self, tags: Vec<usize>, written: Result<Vec<Written>>) -> Result<()> {
            self.0.push((tags, written.map_err(|e| format!("{e:#}"))));
            Ok(())
        }
    }

    fn queued(records: &[(&str, u64)]) -> Receiver<(usize, Validated)> {
        let (tx, rx) = std::sync::mpsc::channel();
        for (i, (key, cents)) in records.iter().enumerate() {
            let v = Validated {
                record: sample_record(key, *cents),
                occurred_at_given: true,
            };
            tx.send((i, v)).unwrap();
        }
        rx
    }

    #[test]
    fn one_group_decides_a_duplicate_and_a_conflict_per_record() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let mut got = Collect::default();
        let queue = queued(&[("a", 1), ("b", 2), ("a", 1), ("a", 9)]);
        commit_groups(&spool, &queue, &mut got).unwrap();
        assert_eq!(got.0.len(), 1, "one group");
        let (tags, written) = &got.0[0];
        assert_eq!(tags, &[0, 1, 2, 3]);
        let key = |k: &str| k.to_string();
        assert_eq!(
            written.as_ref().unwrap(),
            &[
                Written::Recorded(key("a")),
                Written::Recorded(key("b")),
                Written::Duplicate(key("a")),
                Written::Conflict(key("a"), vec!["amount_cents"]),
            ]
        );
    }

    #[test]
    fn an_error_fails_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        // Nothing can be linked into a pending/ that is a file.
        std::fs::remove_dir(dir.path().join("pending")).unwrap();
        std::fs::write(dir.path().join("pending"), "").unwrap();
        let mut got = Collect::default();
        commit_groups(&spool, &queued(&[("a", 1), ("b", 2)]), &mut got).unwrap();
        assert_eq!(got.0.len(), 1);
        assert_eq!(got.0[0].0, [0, 1]);
        assert!(got.0[0].1.is_err(), "{:?}", got.0[0].1);
    }

    #[test]
    fn long_lines_are_cut_and_skipped() {
        let data = format!("{}\nshort\nlast", "x".repeat(MAX_LINE_BYTES + 1));
        let mut r = std::io::BufReader::with_capacity(16, data.as_bytes());
        let mut buf = Vec::new();
        assert!(read_line_bounded(&mut r, &mut buf).unwrap().1);
        buf.clear();
        read_line_bounded(&mut r, &mut buf).unwrap();
        assert_eq!(buf, b"short");
        buf.clear();
        read_line_bounded(&mut r, &mut buf).unwrap();
        assert_eq!(buf, b"last");
        buf.clear();
        assert_eq!(read_line_bounded(&mut r, &mut buf).unwrap().0, 0);
    }
}
