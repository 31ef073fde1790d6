//! `hero_usage_record`: validate one record (or many JSON lines from stdin)
//! and drop it into the spool. See `man 1 hero_usage_record`.

use clap::Parser;
use hero_usage::config::SpoolArgs;
use hero_usage::error::main_with;
use hero_usage::recorder::{BINARY, FieldFlags, run_fields, run_stdin};

/// Validate a usage record and drop it durably into the local spool,
/// deduplicated by its idempotency key.
#[derive(Parser, Debug)]
#[command(name = "hero_usage_record", version)]
struct Cli {
    #[command(flatten)]
    fields: FieldFlags,
    /// Read records as JSON lines from stdin (one object per line, the fields' own names)
    #[arg(long, conflicts_with = "record_fields")]
    stdin: bool,
    #[command(flatten)]
    spool: SpoolArgs,
}

fn main() {
    let cli: Cli = hero_usage::cli::parse(BINARY);
    main_with(BINARY, || {
        if cli.stdin {
            let stdin = std::io::BufReader::with_capacity(64 * 1024, std::io::stdin());
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            run_stdin(&cli.spool, Box::new(stdin), &mut out)
        } else {
            run_fields(&cli.spool, &cli.fields)
        }
    })
}
