//! `hero_usage_test_forge`: run the test forge as a process for scripts and
//! the demo. Prints its base URL on stdout when ready; runs until SIGTERM,
//! SIGINT or SIGHUP, then removes its temporary directory.
//!
//! Flags: `--root DIR` (bare repositories; default: a temporary directory),
//! `--token-file FILE` (required), `--read-only-token-file FILE`,
//! `--listen ADDR` (default 127.0.0.1:0, loopback only), `--user LOGIN`,
//! `--org NAME` (repeatable), `--prefix /PATH`, `--max-blob-size BYTES`,
//! `--legacy-422`, `--no-multi-file` (with `--no-multi-file-status 404|405`,
//! default 405, and `--no-multi-file-after N`: many-files requests served
//! before the endpoint goes missing), `--commit-ms N` (writes race as on
//! Forgejo: N ms outside the lock, the loser gets 500), `--race-403` (the
//! loser gets 403 `PushRejected` instead), `--max-body-bytes N` (a proxy's
//! body limit: 413 without reading the body). `GET /_testforge/stats`
//! answers the counters (requests, commits, lost races, 413s) without a token.

use hero_usage_test_forge::{ForgeOptions, TestForge};
use std::io::Write;
use std::path::PathBuf;

const USAGE: &str = "usage: hero_usage_test_forge --token-file FILE [--root DIR] [--listen ADDR] \
[--user LOGIN] [--org NAME]... [--prefix /PATH] [--read-only-token-file FILE] \
[--max-blob-size BYTES] [--legacy-422] [--no-multi-file] [--no-multi-file-status 404|405] \
[--no-multi-file-after N] [--commit-ms N] [--race-403] \
[--max-body-bytes N]";

fn read_token(path: &str) -> String {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_string(),
        Ok(_) => die(&format!("token file {path} is empty")),
        Err(e) => die(&format!("cannot read token file {path}: {e}")),
    }
}

fn die(msg: &str) -> ! {
    eprintln!("hero_usage_test_forge: error: {msg}");
    std::process::exit(64)
}

fn main() {
    let mut opts = ForgeOptions {
        orgs: Vec::new(),
        ..ForgeOptions::default()
    };
    let mut orgs_given = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| {
            args.next()
                .unwrap_or_else(|| die(&format!("{name} needs a value\n{USAGE}")))
        };
        match a.as_str() {
            "--root" => opts.root = Some(PathBuf::from(val("--root"))),
            "--token-file" => opts.token = Some(read_token(&val("--token-file"))),
            "--read-only-token-file" => {
                opts.read_only_token = Some(read_token(&val("--read-only-token-file")))
            }
            "--listen" => opts.listen = val("--listen"),
            "--user" => opts.user = val("--user"),
            "--org" => {
                orgs_given = true;
                opts.orgs.push(val("--org"))
            }
            "--prefix" => opts.prefix = val("--prefix"),
            "--max-blob-size" => {
                opts.max_blob_size = val("--max-blob-size")
                    .parse()
                    .unwrap_or_else(|_| die("--max-blob-size takes a number of bytes"))
            }
            "--commit-ms" => {
                opts.commit_ms = val("--commit-ms")
                    .parse()
                    .unwrap_or_else(|_| die("--commit-ms takes a number of milliseconds"))
            }
            "--race-403" => opts.race_403 = true,
            "--max-body-bytes" => {
                opts.max_body_bytes = Some(
                    val("--max-body-bytes")
                        .parse()
                        .unwrap_or_else(|_| die("--max-body-bytes takes a number of bytes")),
                )
            }
            "--legacy-422" => opts.legacy_422 = true,
            "--no-multi-file" => opts.no_multi_file = true,
            "--no-multi-file-status" => {
                opts.no_multi_file_status = match val("--no-multi-file-status").as_str() {
                    "404" => 404,
                    "405" => 405,
                    _ => die("--no-multi-file-status takes 404 or 405"),
                }
            }
            "--no-multi-file-after" => {
                opts.no_multi_file_after = val("--no-multi-file-after")
                    .parse()
                    .unwrap_or_else(|_| die("--no-multi-file-after takes a number of requests"))
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => die(&format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if opts.token.is_none() {
        die(&format!("--token-file is required\n{USAGE}"));
    }
    if !orgs_given {
        opts.orgs = ForgeOptions::default().orgs;
    }
    // Signals are caught before the forge makes its scratch directory, so
    // that `kill` (the README's tour ends with one) never leaves it behind.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .unwrap_or_else(|e| die(&format!("cannot handle signals: {e}")));
    let forge = TestForge::try_start(opts).unwrap_or_else(|e| die(&e));
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{}", forge.base_url());
    let _ = out.flush();
    signals.forever().next();
    // Dropping the forge stops it and removes its scratch repositories.
    drop(forge);
}
