//! What every binary's `main` shares besides settings: clap parsing with the
//! contract's exit code for a bad command line (64, where clap uses 2) and
//! its error format (`<binary>: error: ...`).

use clap::Parser;

/// Parse the command line; `--help`/`--version` print and exit 0, errors
/// print `<binary>: error: ...` and exit 64.
pub fn parse<T: Parser>(binary: &str) -> T {
    match T::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // `--help | head` closes the pipe early: not an error worth a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), e.to_string().as_bytes());
            std::process::exit(0)
        }
        Err(e) => {
            // clap's rendering starts with "error: ".
            eprint!("{binary}: {}", e.render());
            std::process::exit(64)
        }
    }
}
