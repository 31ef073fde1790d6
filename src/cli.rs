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
pub fn main_with(binary: &str, run: impl FnOnce() -> anyhow::Result<Exit>) -> ExitCode {
    survive_file_size_limit();
    let exit = run().unwrap_or_else(|err| report(binary, &err));
    ExitCode::from(exit.code())
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
            // clap's rendering starts with "error: " and ends with a newline.
            let text = format!("{binary}: {}", e.render());
            let _ = err_line(text.trim_end());
            exit_now(Exit::Failed(Kind::Usage))
        }
    }
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
