//! `hero_usage_record`: validate one record (or many JSON lines from stdin)
//! and drop it into the spool. See `man 1 hero_usage_record`.

use clap::Parser;
use hero_usage::config::SpoolArgs;
use hero_usage::error::main_with;
use hero_usage::recorder::{BINARY, FieldFlags, run_fields, run_stdin};

/// Validate a usage record and drop it durably into the local spool,
/// deduplicated by its idempotency key.
#[derive(Parser, Debug)]
#[command(name = "hero_usage_record", version, about)]
struct Cli {
    /// Unique key of the usage event: 1 to 255 visible ASCII characters
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// The user's Hero SmartID: 4 to 6 of 0-9 a-z
    #[arg(long, value_name = "SID")]
    user_sid: Option<String>,
    /// Amount in cents: 0 to 10^12
    #[arg(long, value_name = "CENTS", allow_hyphen_values = true)]
    amount_cents: Option<String>,
    /// What was used: ^[a-z][a-z0-9_.-]*$, at most 64 characters
    #[arg(long, value_name = "KIND")]
    resource_kind: Option<String>,
    /// Free text, one line, at most 1024 characters [default: empty]
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    description: Option<String>,
    /// When: `YYYY-MM-DD HH:MM:SS` UTC or RFC 3339 with an offset [default: now]
    #[arg(long, value_name = "TIME")]
    occurred_at: Option<String>,
    /// Node of the record [default: the node name]
    #[arg(long, value_name = "NODE")]
    node_id: Option<String>,
    /// Read records as JSON lines from stdin (one object per line, the fields' own names)
    #[arg(long, conflicts_with_all = [
        "idempotency_key", "user_sid", "amount_cents", "resource_kind",
        "description", "occurred_at", "node_id",
    ])]
    stdin: bool,
    #[command(flatten)]
    spool: SpoolArgs,
}

fn main() {
    let cli: Cli = hero_usage::cli::parse(BINARY);
    main_with(BINARY, || {
        if cli.stdin {
            let stdin = std::io::stdin();
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            run_stdin(&cli.spool, &mut stdin.lock(), &mut out)
        } else {
            let flags = FieldFlags {
                idempotency_key: cli.idempotency_key,
                user_sid: cli.user_sid,
                amount_cents: cli.amount_cents,
                resource_kind: cli.resource_kind,
                description: cli.description,
                occurred_at: cli.occurred_at,
                node_id: cli.node_id,
            };
            run_fields(&cli.spool, &flags)
        }
    })
}
