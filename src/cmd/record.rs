//! `hero_usage_record`: one record from flags, or many from JSON lines on
//! stdin in group-committed chunks. See `man 1 hero_usage_record`.

use crate::config::{Common, SpoolArgs};
use crate::console::err_line;
use crate::error::{Kind, fail};
use crate::record::{
    Defaults, Field, FieldError, RawValue, RecordInput, Validated, amount_from_flag, describe,
};
use crate::spool::{CHUNK_RECORDS, RecordOutcome, Spool};
use crate::text::escape_controls;
use anyhow::Result;
use chrono::Utc;
use clap::Parser;
use std::io::{BufRead, Write};
use std::process::ExitCode;

pub const BINARY: &str = "hero_usage_record";
/// Longest accepted `--stdin` line (a record is far shorter).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Validate a usage record and drop it durably into the local spool,
/// deduplicated by its idempotency key.
#[derive(Parser, Debug)]
#[command(name = BINARY, version, after_help = "See man 1 hero_usage_record.")]
pub struct Cli {
    #[command(flatten)]
    pub fields: FieldFlags,
    /// Read records as JSON lines from stdin (one object per line, the fields' own names)
    #[arg(long, conflicts_with = "record_fields")]
    pub stdin: bool,
    #[command(flatten)]
    pub spool: SpoolArgs,
}

/// The binary's `main`.
pub fn main() -> ExitCode {
    crate::cli::main_with(BINARY, || run(crate::cli::parse(BINARY)))
}

/// Record from the flags, or from JSON lines on stdin; returns the exit code.
pub fn run(cli: Cli) -> Result<i32> {
    if cli.stdin {
        let stdin = std::io::BufReader::with_capacity(64 * 1024, std::io::stdin());
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        run_stdin(&cli.spool, Box::new(stdin), &mut out)
    } else {
        run_fields(&cli.spool, &cli.fields)
    }
}

/// The record's fields as given on the command line: one flag per field,
/// named after it with dashes. Defined once here; the binary flattens it.
#[derive(clap::Args, Debug, Clone, Default)]
#[group(id = "record_fields", multiple = true)]
pub struct FieldFlags {
    /// Unique key of the usage event: 1 to 255 visible ASCII characters
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// The user's Hero SmartID: 4 to 6 of 0-9 a-z
    #[arg(long, value_name = "SID")]
    pub user_sid: Option<String>,
    /// Amount in cents: 0 to 10^12, digits only
    #[arg(long, value_name = "CENTS", allow_hyphen_values = true)]
    pub amount_cents: Option<String>,
    /// What was used: ^[a-z][a-z0-9_.-]*$, at most 64 characters
    #[arg(long, value_name = "KIND")]
    pub resource_kind: Option<String>,
    /// Free text, one line, at most 1024 characters [default: empty]
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub description: Option<String>,
    /// When: `YYYY-MM-DD HH:MM:SS` UTC or RFC 3339 with an offset [default: now]
    #[arg(long, value_name = "TIME")]
    pub occurred_at: Option<String>,
    /// Node of the record [default: the node name]
    #[arg(long, value_name = "NODE")]
    pub node_id: Option<String>,
}

impl FieldFlags {
    fn any(&self) -> bool {
        self.input().1 > 0
    }

    /// The flags of required fields that were not given.
    fn missing_required(&self) -> Vec<&'static str> {
        [
            ("--idempotency-key", &self.idempotency_key),
            ("--user-sid", &self.user_sid),
            ("--amount-cents", &self.amount_cents),
            ("--resource-kind", &self.resource_kind),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_none())
        .map(|(flag, _)| flag)
        .collect()
    }

    /// The flags as a record input, and how many were given.
    fn input(&self) -> (RecordInput, usize) {
        let mut i = RecordInput::default();
        let mut n = 0;
        for field in Field::ALL {
            let flag = match field {
                Field::AmountCents => &self.amount_cents,
                Field::Description => &self.description,
                Field::IdempotencyKey => &self.idempotency_key,
                Field::NodeId => &self.node_id,
                Field::OccurredAt => &self.occurred_at,
                Field::ResourceKind => &self.resource_kind,
                Field::UserSid => &self.user_sid,
            };
            if let Some(v) = flag {
                let raw = match field {
                    Field::AmountCents => amount_from_flag(v),
                    _ => RawValue::Str(v.clone()),
                };
                i.set(field.name(), raw);
                n += 1;
            }
        }
        (i, n)
    }
}

/// The worse of two outcomes (`None` is success): the exit code of a run
/// of many lines is that of its worst line.
fn worse(a: Option<Kind>, b: Option<Kind>) -> Option<Kind> {
    // Bad data is the mildest failure; anything else stops or fails a run.
    let rank = |k: Option<Kind>| match k {
        None => 0,
        Some(Kind::Data) => 1,
        Some(_) => 2,
    };
    if rank(b) > rank(a) { b } else { a }
}

/// The message for a key reused with different content.
pub fn conflict_message(key: &str, fields: &[&str]) -> String {
    format!(
        "idempotency key `{key}` was already recorded with different {}; nothing changed. \
         Use a new key for a new record, or repeat the original fields exactly",
        fields.join(", ")
    )
}

/// Record one record given by flags; returns the exit code.
pub fn run_fields(args: &SpoolArgs, flags: &FieldFlags) -> Result<i32> {
    if !flags.any() {
        return Err(fail(
            Kind::Usage,
            "give the record's fields as flags (--idempotency-key, --user-sid, --amount-cents, \
             --resource-kind, ...) or --stdin for JSON lines; see --help",
        ));
    }
    let common = Common::resolve(args)?;
    // Validate before the spool is touched: an invalid record writes nothing.
    let v = match flags.input().0.validate(&defaults_now(&common.node)) {
        Ok(v) => v,
        Err(errs) => {
            // A required flag left out is a bad command line, not bad data:
            // one usage error, not a line per missing field besides it.
            let missing = flags.missing_required();
            if !missing.is_empty() {
                let _ = err_line(&format!(
                    "{BINARY}: error: missing {}{}; see --help",
                    missing.join(", "),
                    also_invalid(&errs, &missing)
                ));
                return Ok(Kind::Usage.exit_code());
            }
            for e in &errs {
                let _ = err_line(&format!("{BINARY}: error: invalid record: {e}"));
            }
            return Ok(Kind::Data.exit_code());
        }
    };
    let spool = Spool::open(&common.spool)?;
    spool.bind_node(&common.node)?;
    let (line, stored) = match record_validated(&spool, v)? {
        Written::Recorded(key) => (format!("recorded {key}\n"), "the record was stored"),
        Written::Duplicate(key) => (
            format!("duplicate {key}\n"),
            "the record was already stored",
        ),
        Written::Conflict(key, fields) => {
            let _ = err_line(&format!(
                "{BINARY}: error: {}",
                conflict_message(&key, &fields)
            ));
            return Ok(Kind::Data.exit_code());
        }
    };
    crate::console::out(&line).map_err(|e| fail(Kind::Output, format!("{stored}, but {e:#}")))?;
    Ok(0)
}

/// The problems of the given flags, for the one usage error that names the
/// missing ones: `` (also: user_sid: ...)`` or nothing.
fn also_invalid(errs: &[FieldError], missing: &[&str]) -> String {
    let given: Vec<String> = errs
        .iter()
        .filter(|e| {
            let flag = format!("--{}", e.field.replace('_', "-"));
            !missing.contains(&flag.as_str())
        })
        .map(ToString::to_string)
        .collect();
    if given.is_empty() {
        String::new()
    } else {
        format!(" (also: {})", given.join("; "))
    }
}

/// What became of one record: the outcome with the record's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    Recorded(String),
    Duplicate(String),
    Conflict(String, Vec<&'static str>),
}

/// What validating and recording one input came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OneOutcome {
    /// Broken rules; nothing was written.
    Invalid(Vec<FieldError>),
    Written(Written),
}

/// The defaults for a record arriving now on this node.
fn defaults_now(node: &str) -> Defaults {
    Defaults {
        node: node.to_string(),
        now: Utc::now(),
        occurred_at: None,
    }
}

fn record_validated(spool: &Spool, v: Validated) -> Result<Written> {
    let outcome = spool.record(&v)?;
    let key = v.record.idempotency_key;
    Ok(match outcome {
        RecordOutcome::Recorded => Written::Recorded(key),
        RecordOutcome::Duplicate => Written::Duplicate(key),
        RecordOutcome::Conflict(fields) => Written::Conflict(key, fields),
    })
}

/// Validate one record (defaults: `node`, now) and record it durably: the
/// path from a record's fields to the spool that `hero_usage_record` and the
/// HTTP shim share. An invalid record writes nothing.
pub fn record_one(spool: &Spool, node: &str, input: &RecordInput) -> Result<OneOutcome> {
    match input.validate(&defaults_now(node)) {
        Ok(v) => Ok(OneOutcome::Written(record_validated(spool, v)?)),
        Err(errs) => Ok(OneOutcome::Invalid(errs)),
    }
}

/// Record JSON lines from `input`; every good line is recorded, each bad one
/// reported as `line N: <problem>`; returns the worst exit code.
///
/// A reader thread parses and validates lines while this one commits them:
/// each commit takes the lines that are ready (up to [`CHUNK_RECORDS`]), so a
/// file is recorded in full chunks and a slow stream line by line as it
/// comes, never held back waiting for more. The reader is not joined on an
/// error: it may be blocked on a stdin that never ends, and the process
/// exits anyway.
pub fn run_stdin(
    args: &SpoolArgs,
    input: Box<dyn BufRead + Send>,
    out: &mut dyn Write,
) -> Result<i32> {
    let common = Common::resolve(args)?;
    let spool = Spool::open(&common.spool)?;
    spool.bind_node(&common.node)?;
    let (lines, reader) = spawn_reader(input, common.node.clone());
    let mut worst: Option<Kind> = None;
    let mut line_nos = Vec::with_capacity(CHUNK_RECORDS);
    let mut items = Vec::with_capacity(CHUNK_RECORDS);
    // Block for one line, then take what else is ready.
    while let Ok(first) = lines.recv() {
        line_nos.clear();
        items.clear();
        let mut next = Some(first);
        while let Some(line) = next.take() {
            match line? {
                Line::Good(n, v) => {
                    line_nos.push(n);
                    items.push(v);
                }
                Line::Bad(n, problem) => {
                    // DESIGN: each bad line is reported as `line N: <problem>`.
                    let _ = err_line(&format!("line {n}: {}", escape_controls(&problem)));
                    worst = worse(worst, Some(Kind::Data));
                }
            }
            if items.len() < CHUNK_RECORDS {
                next = lines.try_recv().ok();
            }
        }
        if !items.is_empty() {
            worst = worse(worst, commit_lines(&spool, &line_nos, &items, out)?);
        }
    }
    // The channel closed: the reader is done. Had it panicked, lines would
    // be left unread: never report that as success.
    if reader.join().is_err() {
        return Err(fail(
            Kind::Internal,
            "the stdin reader failed; lines after the last answered one were not recorded",
        ));
    }
    Ok(worst.map_or(0, Kind::exit_code))
}

/// The thread that reads, parses and validates lines, and the channel it
/// hands them over.
fn spawn_reader(
    input: Box<dyn BufRead + Send>,
    node: String,
) -> (
    std::sync::mpsc::Receiver<Result<Line>>,
    std::thread::JoinHandle<()>,
) {
    let (send, lines) = std::sync::mpsc::sync_channel::<Result<Line>>(2 * CHUNK_RECORDS);
    let reader = std::thread::spawn(move || {
        let mut reader = LineReader {
            input,
            line_no: 0,
            buf: Vec::with_capacity(1024),
        };
        loop {
            let next = reader.next_line(&node);
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

/// Record one batch of valid lines as a group commit, then answer each:
/// every file and the directory are fsynced before any line is printed.
/// Returns the worst outcome (a conflict is bad data).
fn commit_lines(
    spool: &Spool,
    line_nos: &[usize],
    items: &[Validated],
    out: &mut dyn Write,
) -> Result<Option<Kind>> {
    let outcomes = spool.record_batch(items)?;
    let mut worst = None;
    let mut answers = String::new();
    for ((n, v), outcome) in line_nos.iter().zip(items).zip(outcomes) {
        let key = &v.record.idempotency_key;
        match outcome {
            RecordOutcome::Recorded => answers.push_str(&format!("recorded {key}\n")),
            RecordOutcome::Duplicate => answers.push_str(&format!("duplicate {key}\n")),
            RecordOutcome::Conflict(fields) => {
                let _ = err_line(&format!("line {n}: {}", conflict_message(key, &fields)));
                worst = Some(Kind::Data);
            }
        }
    }
    answer(out, &answers, line_nos.last().copied().unwrap_or(0))?;
    Ok(worst)
}

/// Write a batch's answers. The batch is stored by then: an output error
/// (74) says so. A reader that went away (`| head`) is not a failure.
fn answer(out: &mut dyn Write, answers: &str, last_line: usize) -> Result<()> {
    match out.write_all(answers.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(fail(
            Kind::Output,
            format!(
                "the records of lines 1 to {last_line} were handled (the good ones stored), \
                 but {:#}",
                crate::console::output_error("stdout", &e)
            ),
        )),
        Ok(()) => Ok(()),
    }
}

/// One input line: a valid record, or the problem that makes it bad.
enum Line {
    Good(usize, Validated),
    Bad(usize, String),
}

/// JSON lines from stdin, numbered.
struct LineReader {
    input: Box<dyn BufRead + Send>,
    line_no: usize,
    buf: Vec<u8>,
}

impl LineReader {
    /// The next line that is not blank; `None` at the end of the input.
    fn next_line(&mut self, node: &str) -> Result<Option<Line>> {
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
            return match rec.and_then(|i| {
                i.validate(&defaults_now(node))
                    .map_err(|errs| describe(&errs))
            }) {
                Ok(v) => Ok(Some(Line::Good(self.line_no, v))),
                Err(problem) => bad(problem),
            };
        }
    }
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

    #[test]
    fn worst_code_wins() {
        let (data, spool, temp) = (
            Some(Kind::Data),
            Some(Kind::CantCreate),
            Some(Kind::TempFail),
        );
        assert_eq!(worse(None, data), data);
        assert_eq!(worse(data, None), data);
        assert_eq!(worse(data, spool), spool);
        assert_eq!(worse(temp, data), temp);
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
