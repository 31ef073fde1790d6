//! What every binary's `main` shares besides settings: clap parsing with the
//! contract's exit code for a bad command line (64, where clap uses 2).

use clap::Parser;

/// Parse the command line; `--help`/`--version` exit 0, errors exit 64.
pub fn parse<T: Parser>() -> T {
    match T::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 64 } else { 0 };
            let _ = e.print();
            std::process::exit(code)
        }
    }
}
