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
            let _ = out(&e.to_string());
            std::process::exit(0)
        }
        Err(e) => {
            // clap's rendering starts with "error: ".
            eprint!("{binary}: {}", e.render());
            std::process::exit(64)
        }
    }
}

/// Write normal output to stdout. A reader that went away (`| head`) is not
/// the program's failure: the rest is dropped silently; other errors count.
pub fn out(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
