//! What every binary's `main` shares besides settings: clap parsing with the
//! contract's exit code for a bad command line (64, where clap uses 2) and
//! its error format (`<binary>: error: ...`).

use clap::Parser;

/// Parse the command line; `--help`/`--version` print and exit 0, errors
/// print `<binary>: error: ...` and exit 64.
pub fn parse<T: Parser>(binary: &str) -> T {
    if let Some(code) = completions::<T>(binary) {
        std::process::exit(code)
    }
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

/// `<binary> --completions bash|zsh|fish` (hidden; the install script
/// uses it): print the shell completion script and exit. Handled before
/// clap parses, so that it needs none of the binary's settings.
fn completions<T: clap::CommandFactory>(binary: &str) -> Option<i32> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != "--completions" {
        return None;
    }
    let shell = match args.next().and_then(|s| s.into_string().ok()).as_deref() {
        Some("bash") => clap_complete::Shell::Bash,
        Some("zsh") => clap_complete::Shell::Zsh,
        Some("fish") => clap_complete::Shell::Fish,
        _ => {
            eprintln!("{binary}: error: --completions takes bash, zsh or fish");
            return Some(64);
        }
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut T::command(), binary, &mut script);
    match out(&String::from_utf8_lossy(&script)) {
        Ok(()) => Some(0),
        Err(e) => {
            eprintln!("{binary}: error: cannot write the completion script: {e}");
            Some(74)
        }
    }
}
