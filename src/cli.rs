//! What every binary's `main` shares besides settings: clap parsing with the
//! contract's exit code for a bad command line (64, where clap uses 2), its
//! error format (`<binary>: error: ...`), and the one place a run's error
//! becomes an exit status ([`main_with`]). Only `cmd/` uses it.

use crate::console::{err_line, out};
use crate::error::{Exit, Kind, kind_of};
use crate::text::one_line;
use clap::Parser;
use std::process::ExitCode;

/// Print `<binary>: error: <chain>` on stderr and return how the run ends:
/// the one place every binary turns an error into an exit. A stderr that
/// cannot take the message does not change the code: the error is the news.
pub fn report(binary: &str, err: &anyhow::Error) -> Exit {
    let _ = err_line(&format!(
        "{binary}: error: {}",
        one_line(&format!("{err:#}"))
    ));
    Exit::Failed(kind_of(err))
}

/// Run a binary's `run()` and return the process status its outcome maps to.
/// A panic is a bug: 70, like any internal error (Rust's own is 101).
pub fn main_with(binary: &'static str, run: impl FnOnce() -> anyhow::Result<Exit>) -> ExitCode {
    survive_file_size_limit();
    report_panics(binary);
    let exit = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(done) => done.unwrap_or_else(|err| report(binary, &err)),
        // The hook has said what and where.
        Err(_) => Exit::Failed(Kind::Internal),
    };
    ExitCode::from(exit.code())
}

/// A panic, in any thread, as one error line: `<binary>: error: internal
/// error (a bug): <message> at <file:line>; please report it` (Rust's
/// default is several lines in another shape). The shim answers 500 for a
/// handler's panic and goes on; this line is its log of it.
fn report_panics(binary: &'static str) {
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_string());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let _ = err_line(&format!(
            "{binary}: error: internal error (a bug): {}{at}; please report it",
            one_line(&message)
        ));
    }));
}

/// Leave the process now (where clap or `--completions` ends it early).
fn exit_now(exit: Exit) -> ! {
    std::process::exit(i32::from(exit.code()))
}

/// Parse the command line; `--help`/`--version` and `--completions SHELL`
/// print and exit 0, errors print `<binary>: error: ...` and exit 64.
pub fn parse<T: Parser>(binary: &str) -> T {
    let parsed = command::<T>()
        .try_get_matches()
        .and_then(|mut m| Ok((completions_shell(&m), T::from_arg_matches_mut(&mut m)?)));
    match parsed {
        Ok((Some(shell), _)) => exit_now(print_completions::<T>(binary, shell)),
        Ok((None, cli)) => cli,
        Err(e) if !e.use_stderr() => match out(&e.to_string()) {
            Ok(()) => exit_now(Exit::Ok),
            Err(_) => exit_now(Exit::Failed(Kind::Output)),
        },
        Err(e) => {
            let _ = err_line(&usage_error_line(binary, &e.render().to_string()));
            exit_now(Exit::Failed(Kind::Usage))
        }
    }
}

/// clap's rendering of a bad command line (an `error: ...` line, details,
/// a usage block, a pointer to `--help`, over several lines) as the one
/// line every error is: `<binary>: error: <what>; see --help`. One line, so
/// that the journal keeps it as one entry at the error priority.
fn usage_error_line(binary: &str, rendered: &str) -> String {
    let mut lines = rendered
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"));
    let first = lines.next().unwrap_or("bad command line");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let details: Vec<&str> = lines.collect();
    let what = match (details.is_empty(), first.ends_with(':')) {
        (true, _) => first.to_string(),
        (false, true) => format!("{first} {}", details.join(", ")),
        (false, false) => format!("{first}; {}", details.join("; ")),
    };
    format!("{binary}: error: {}; see --help", one_line(&what))
}

/// A binary's command line: its own flags and `--completions SHELL`, which
/// every binary shares (the install script and the package use it).
pub fn command<T: clap::CommandFactory>() -> clap::Command {
    T::command().arg(
        clap::Arg::new("completions")
            .long("completions")
            .value_name("SHELL")
            .value_parser(["bash", "zsh", "fish"])
            .help("Print the completion script for SHELL (bash, zsh, fish), then exit"),
    )
}

fn completions_shell(m: &clap::ArgMatches) -> Option<clap_complete::Shell> {
    match m.get_one::<String>("completions")?.as_str() {
        "bash" => Some(clap_complete::Shell::Bash),
        "zsh" => Some(clap_complete::Shell::Zsh),
        _ => Some(clap_complete::Shell::Fish),
    }
}

/// Print the completion script for `shell`; how that ends.
fn print_completions<T: clap::CommandFactory>(binary: &str, shell: clap_complete::Shell) -> Exit {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command::<T>(), binary, &mut script);
    match out(&String::from_utf8_lossy(&script)) {
        Ok(()) => Exit::Ok,
        Err(e) => {
            let _ = err_line(&format!(
                "{binary}: error: cannot write the completion script: {e:#}"
            ));
            Exit::Failed(Kind::Output)
        }
    }
}

/// Under a file size limit (`ulimit -f`), a write past it raises SIGXFSZ,
/// whose default action kills the process mid-write (exit 153, a tmp file
/// left behind). With a handler installed the write fails with EFBIG
/// instead, which the spool reports (73) after removing its tmp file.
pub fn survive_file_size_limit() {
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Should registering fail, the default stays: nothing else changes.
    let _ = signal_hook::flag::register(signal_hook::consts::SIGXFSZ, seen);
}

#[cfg(test)]
mod tests {
    use super::usage_error_line;

    #[test]
    fn a_usage_error_is_one_error_line() {
        let rendered = "error: unexpected argument '--jsn' found\n\n  tip: a similar argument \
                        exists: '--json'\n\nUsage: hero_usage_status --json\n\nFor more \
                        information, try '--help'.\n";
        assert_eq!(
            usage_error_line("hero_usage_status", rendered),
            "hero_usage_status: error: unexpected argument '--jsn' found; tip: a similar \
             argument exists: '--json'; see --help"
        );
        let rendered = "error: the argument '--stdin' cannot be used with:\n  --user-sid <SID>\n  \
                        --node-id <NODE>\n\nUsage: hero_usage_record --stdin\n";
        assert_eq!(
            usage_error_line("hero_usage_record", rendered),
            "hero_usage_record: error: the argument '--stdin' cannot be used with: \
             --user-sid <SID>, --node-id <NODE>; see --help"
        );
    }
}
