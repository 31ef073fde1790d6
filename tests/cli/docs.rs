//! Every flag of every binary is documented in its man page: the flags are
//! walked from each `Cli::command()`, the pages rendered with groff.

use crate::support::{repo_root, stdout};
use std::process::Command;

/// A man page rendered to plain text (no overstrike, no hyphenation), with
/// lines joined so that a flag broken over two lines is still found.
fn rendered(page: &str) -> String {
    let o = Command::new("groff")
        .args(["-man", "-Tutf8", "-P-c", "-P-b", "-P-u", "-rHY=0"])
        .arg(repo_root().join("man").join(page))
        .output()
        .expect("groff installed (.ci/run installs it)");
    assert!(o.status.success(), "groff failed on {page}");
    // groff may print U+2010 for a hyphen; compare in ASCII.
    stdout(&o).replace(['\u{2010}', '\u{2212}'], "-")
}

/// Every long flag (and `--help`, `--version`) of `cmd` that `--help`
/// shows, walked recursively.
fn long_flags(cmd: &clap::Command) -> Vec<String> {
    flags_where(cmd, |a| !a.is_hide_set())
}

/// Every long flag `cmd` takes, hidden ones too.
fn all_long_flags(cmd: &clap::Command) -> Vec<String> {
    flags_where(cmd, |_| true)
}

fn flags_where(cmd: &clap::Command, keep: fn(&clap::Arg) -> bool) -> Vec<String> {
    let mut cmd = cmd.clone();
    cmd.build();
    let mut flags: Vec<String> = cmd
        .get_arguments()
        .filter(|a| keep(a))
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    for sub in cmd.get_subcommands() {
        flags.extend(flags_where(sub, keep));
    }
    flags
}

#[track_caller]
fn every_flag_is_in(page: &str, cmd: clap::Command) {
    let text = rendered(page);
    let missing: Vec<String> = long_flags(&cmd)
        .into_iter()
        .filter(|f| f != "--help" && f != "--version")
        .filter(|f| !text.contains(f.as_str()))
        .collect();
    assert!(missing.is_empty(), "{page} does not document {missing:?}");
}

#[test]
fn every_flag_of_every_binary_is_in_its_man_page() {
    every_flag_is_in(
        "hero_usage_record.1",
        hero_usage::cmd::command::<hero_usage::cmd::record::Cli>(),
    );
    every_flag_is_in(
        "hero_usage_push.1",
        hero_usage::cmd::command::<hero_usage::cmd::push::Cli>(),
    );
    every_flag_is_in(
        "hero_usage_shim.1",
        hero_usage::cmd::command::<hero_usage::cmd::shim::Cli>(),
    );
    every_flag_is_in(
        "hero_usage_status.1",
        hero_usage::cmd::command::<hero_usage::cmd::status::Cli>(),
    );
    every_flag_is_in(
        "hero_usage_audit.1",
        hero_usage::cmd::command::<hero_usage::cmd::audit::Cli>(),
    );
}

#[test]
fn the_flag_walk_finds_flags_and_the_check_can_fail() {
    let flags = long_flags(&hero_usage::cmd::command::<hero_usage::cmd::push::Cli>());
    for f in [
        "--spool",
        "--forgejo-url",
        "--dry-run",
        "--print-schedule",
        "--completions",
    ] {
        assert!(flags.iter().any(|x| x == f), "{f} not walked: {flags:?}");
    }
    let text = rendered("hero_usage_status.1");
    assert!(!text.contains("--no-such-flag-anywhere"));
    assert!(text.contains("--max-age"));
}

/// DESIGN's "Binaries": the flags each binary takes (every binary takes
/// `--spool` and `--config`; "the forge settings" are these five).
const FORGE: [&str; 5] = [
    "--forgejo-url",
    "--token-file",
    "--repo",
    "--branch",
    "--ca-file",
];

#[test]
fn every_binary_takes_the_flags_the_contract_gives_it() {
    use hero_usage::cmd;
    let binaries: [(&str, clap::Command, &[&str]); 5] = [
        (
            "record",
            cmd::command::<cmd::record::Cli>(),
            &[
                "--idempotency-key",
                "--user-sid",
                "--amount-cents",
                "--resource-kind",
                "--description",
                "--occurred-at",
                "--node-id",
                "--stdin",
                "--node",
            ],
        ),
        (
            "push",
            cmd::command::<cmd::push::Cli>(),
            &[
                "--once",
                "--dry-run",
                "--json",
                "--max-records",
                "--max-request-bytes",
                "--max-seconds",
                "--retry-seconds",
                "--splay",
                "--retention-days",
                "--ledger-days",
                "--insecure-http",
                "--quiet",
                "--check",
                "--print-schedule",
                "--action-name",
                "--service-user",
                "--init-signing-key",
                "--print-public-key",
                "--adopt-node",
                "--node",
                "--signing-key-file",
            ],
        ),
        (
            "shim",
            cmd::command::<cmd::shim::Cli>(),
            &[
                "--listen",
                "--allow-remote",
                "--admin-secret-file",
                "--node",
            ],
        ),
        (
            "status",
            cmd::command::<cmd::status::Cli>(),
            &["--json", "--prometheus", "--max-age", "--node"],
        ),
        (
            "audit",
            cmd::command::<cmd::audit::Cli>(),
            &[
                "--git-dir",
                "--default-branch",
                "--node",
                "--from",
                "--to",
                "--json",
                "--totals",
                "--csv",
                "--state",
                "--allowed-signers",
            ],
        ),
    ];
    for (name, command, own) in binaries {
        let taken = all_long_flags(&command);
        let forge: &[&str] = if matches!(name, "push" | "shim" | "audit") {
            &FORGE
        } else {
            &[]
        };
        let missing: Vec<&str> = ["--spool", "--config", "--help", "--version"]
            .iter()
            .chain(own)
            .chain(forge)
            .filter(|f| !taken.iter().any(|t| t == *f))
            .copied()
            .collect();
        assert!(missing.is_empty(), "hero_usage_{name} lacks {missing:?}");
        // A secret is never a flag's value (it would show in `ps`): only
        // the file that holds it is.
        for f in taken
            .iter()
            .filter(|f| f.contains("token") || f.contains("secret"))
        {
            assert!(
                f.ends_with("-file"),
                "hero_usage_{name} takes a secret as {f}"
            );
        }
    }
}
