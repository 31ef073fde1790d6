//! `hero_usage_record`: one record from flags, or many from JSON lines on
//! stdin in group-committed chunks. See `man 1 hero_usage_record`.

use crate::console::err_line;
use crate::error::{Exit, Kind, fail};
use crate::record::{Field, FieldError, RawValue, RecordInput, amount_from_flag};
use crate::recording::{
    LineAnswers, Written, conflict_message, defaults_now, record_lines, record_validated,
};
use crate::settings::{ForgeArgs, Resolver, SpoolArgs};
use crate::spool::Spool;
use crate::text::escape_controls;
use anyhow::Result;
use clap::Parser;
use std::io::{BufRead, Write};
use std::process::ExitCode;

pub const BINARY: &str = "hero_usage_record";

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

/// Record from the flags, or from JSON lines on stdin; returns how the run ends.
pub fn run(cli: Cli) -> Result<Exit> {
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

/// The worse of two outcomes (`None` is success): the exit of a run
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

/// Record one record given by flags; returns how the run ends.
pub fn run_fields(args: &SpoolArgs, flags: &FieldFlags) -> Result<Exit> {
    if !flags.any() {
        return Err(fail(
            Kind::Usage,
            "give the record's fields as flags (--idempotency-key, --user-sid, --amount-cents, \
             --resource-kind, ...) or --stdin for JSON lines; see --help",
        ));
    }
    let common = Resolver::load(args, &ForgeArgs::default())?.common()?;
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
                return Ok(Exit::Failed(Kind::Usage));
            }
            for e in &errs {
                let _ = err_line(&format!("{BINARY}: error: invalid record: {e}"));
            }
            return Ok(Exit::Failed(Kind::Data));
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
            return Ok(Exit::Failed(Kind::Data));
        }
        Written::Unchecked(_, why) => return Err(fail(Kind::CantCreate, why)),
    };
    crate::console::out(&line).map_err(|e| fail(Kind::Output, format!("{stored}, but {e:#}")))?;
    Ok(Exit::Ok)
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

/// Record JSON lines from `input`; every good line is recorded, each bad one
/// reported as `line N: <problem>`; returns the worst exit.
pub fn run_stdin(
    args: &SpoolArgs,
    input: Box<dyn BufRead + Send>,
    out: &mut dyn Write,
) -> Result<Exit> {
    let common = Resolver::load(args, &ForgeArgs::default())?.common()?;
    let spool = Spool::open(&common.spool)?;
    spool.bind_node(&common.node)?;
    let mut printer = Printer { out, worst: None };
    record_lines(&spool, &common.node, input, &mut printer)?;
    Ok(Exit::of(printer.worst))
}

/// Prints the answers of `--stdin` and keeps the worst outcome.
struct Printer<'a> {
    out: &'a mut dyn Write,
    worst: Option<Kind>,
}

impl LineAnswers for Printer<'_> {
    fn bad_line(&mut self, n: usize, problem: &str) {
        // Each bad line is reported as `line N: <problem>` (man 1
        // hero_usage_record, DESCRIPTION).
        let _ = err_line(&format!("line {n}: {}", escape_controls(problem)));
        self.worst = worse(self.worst, Some(Kind::Data));
    }

    /// A group's answers: every file and the directory are fsynced before
    /// any line is printed. A conflict is bad data.
    fn group(&mut self, lines: &[usize], written: &[Written]) -> Result<()> {
        let mut answers = String::new();
        for (n, w) in lines.iter().zip(written) {
            match w {
                Written::Recorded(key) => answers.push_str(&format!("recorded {key}\n")),
                Written::Duplicate(key) => answers.push_str(&format!("duplicate {key}\n")),
                Written::Conflict(key, fields) => {
                    let _ = err_line(&format!("line {n}: {}", conflict_message(key, fields)));
                    self.worst = worse(self.worst, Some(Kind::Data));
                }
                // This line alone is held back (a damaged ledger shard).
                Written::Unchecked(_, why) => {
                    let _ = err_line(&format!("line {n}: {}", escape_controls(why)));
                    self.worst = worse(self.worst, Some(Kind::CantCreate));
                }
            }
        }
        answer(self.out, &answers, lines.last().copied().unwrap_or(0))
    }
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
}
