//! `hero_usage_push --check`: the effective settings and where each came
//! from (never the token), then a probe of the forge that changes nothing:
//! `/api/v1/version` (is this the Forgejo base URL?), `/user` (is the token
//! accepted?), the repository, and whether the token may write it or create
//! it. Exits with the code a push would get.
//!
//! The probes are the forge client's ([`ForgejoClient::version`],
//! [`ForgejoClient::probe_write`], ...); here each answer becomes a line
//! that says what it means and what to do.

use crate::error::{Exit, Kind, kind_of};
use crate::forgejo::{ForgeError, ForgejoClient, RepoRef, WriteAccess};
use crate::settings::{Common, ForgeSettings, Resolver, Setting, Source};
use crate::text::one_line;
use anyhow::Result;
use std::fmt::Write;
use std::time::Duration;

/// Longest remote text kept in a message.
const BODY_CHARS: usize = 300;

/// Run the check; print it; return the exit a push would get.
pub fn run(settings: &Resolver, common: &Common) -> Result<Exit> {
    let settings_in = settings;
    let table = settings.table();
    let mut report = settings_text(&table);
    if let Some(w) = settings.token_file_warning() {
        let _ = writeln!(report, "warning {w}");
    }
    if let Some(w) = unpinned_node_warning(&table) {
        let _ = writeln!(report, "warning {w}");
    }
    let exit = match settings.forge() {
        Err(e) => {
            let _ = writeln!(report, "FAIL settings: {}", one_line(&format!("{e:#}")));
            Exit::Failed(kind_of(&e))
        }
        Ok(settings) => {
            // A push opens the spool before it reaches the forge: its
            // failure is the code a push would get, the probe still runs.
            let spool_kind = spool_step(common, &mut report);
            let key_kind = signing_step(settings_in, common, &mut report);
            let (lines, kind) = probe(&settings);
            report.push_str(&lines);
            Exit::of(spool_kind.or(key_kind).or(kind))
        }
    };
    let _ = writeln!(report, "check: a push would exit {}", exit.code());
    crate::console::out(&report)?;
    Ok(exit)
}

/// A node name that is the host name by default: a rename of the host
/// would move the node's records to another folder (and the spool, bound
/// to the old name, refuses the new one).
fn unpinned_node_warning(table: &[Setting]) -> Option<String> {
    let node = table
        .iter()
        .find(|s| s.name == "node" && s.source == Source::Default)?;
    Some(format!(
        "node name {} is the host name by default: pin it (node = \"...\" in the config \
         file, or --node / HERO_NODE_ID), so that renaming the host does not move this node's \
         billing",
        one_line(node.value.as_deref().unwrap_or(""))
    ))
}

/// The spool as a push would find it: usable, and bound to this node name
/// (or to none yet). Read-only: a missing spool is fine (the first record
/// creates it), and nothing is created or bound.
fn spool_step(common: &Common, report: &mut String) -> Option<Kind> {
    let shown = crate::text::escape_controls(&common.spool.display().to_string());
    if std::fs::symlink_metadata(&common.spool)
        .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
    {
        let _ = writeln!(
            report,
            "ok   spool {shown} does not exist yet (the first record creates it)"
        );
        return None;
    }
    // A push by this user opens the spool to write: another user's is 73.
    let checked = crate::spool::Spool::open_read_only(&common.spool).and_then(|spool| {
        spool.refuse_another_owner()?;
        spool.check_node(&common.node)
    });
    match checked {
        Ok(bound) => {
            let how = if bound {
                "belongs to"
            } else {
                "is not bound yet; the first push binds it to"
            };
            let _ = writeln!(report, "ok   spool {shown} {how} node {}", common.node);
            None
        }
        Err(e) => {
            let _ = writeln!(report, "FAIL spool: {}", one_line(&format!("{e:#}")));
            Some(kind_of(&e))
        }
    }
}

/// The signing key as a push would load it: hour files signed (with the
/// node's allowed_signers line), unsigned without a key, or a key that
/// cannot be used (78).
fn signing_step(settings: &Resolver, common: &Common, report: &mut String) -> Option<Kind> {
    match settings.signer() {
        Ok(None) => {
            let _ = writeln!(
                report,
                "note hour files go unsigned: no signing key (hero_usage_push --init-signing-key makes one)"
            );
            None
        }
        Ok(Some(signer)) => {
            let _ = writeln!(
                report,
                "ok   signing key {}: hour files are signed; allowed_signers line: {}",
                crate::text::escape_controls(&signer.path().display().to_string()),
                signer.allowed_signers_line(&common.node)
            );
            None
        }
        Err(e) => {
            let _ = writeln!(report, "FAIL signing key: {}", one_line(&format!("{e:#}")));
            Some(kind_of(&e))
        }
    }
}

/// The settings as a table whose columns line up, whatever the longest name.
fn settings_text(settings: &[Setting]) -> String {
    let mut s = String::from("settings (flag > env > config > default):\n");
    let width = settings.iter().map(|st| st.name.len()).max().unwrap_or(0);
    for st in settings {
        let value = st.value.as_deref().unwrap_or(match st.name {
            "branch" => "(the repository's default branch)",
            "ca_file" => "(the system's trust store)",
            "signing_key_file" => "(none: hour files go unsigned)",
            _ => "(not set)",
        });
        let _ = writeln!(
            s,
            "  {:<width$} {:<9} {}",
            st.name,
            st.source.as_str(),
            one_line(value)
        );
    }
    s
}

/// A probe step's failure: the kind a push would exit with and why.
type Failed = (Kind, String);

/// A message on one line, cut.
fn cut(text: &str) -> String {
    let line = one_line(text);
    match line.char_indices().nth(BODY_CHARS) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None => line,
    }
}

/// A forge error as a failed step: the kind a push would exit with (an
/// answer the push does not expect is the setup's, 78, for a check) and
/// the error as it reads.
fn failed(e: &ForgeError) -> Failed {
    let kind = match e {
        ForgeError::Invalid { status, .. } if *status != 408 => Kind::Config,
        e => e.kind(),
    };
    (kind, cut(&e.to_string()))
}

fn probe(settings: &ForgeSettings) -> (String, Option<Kind>) {
    let mut lines = String::new();
    let result = probe_steps(settings, &mut lines);
    let kind = match result {
        Ok(()) => None,
        Err((kind, why)) => {
            let _ = writeln!(lines, "FAIL {}", one_line(&why));
            Some(kind)
        }
    };
    (lines, kind)
}

fn probe_steps(settings: &ForgeSettings, lines: &mut String) -> Result<(), Failed> {
    let mut config = settings.client_config();
    config.timeout = Duration::from_secs(30);
    let client = ForgejoClient::new(config).map_err(|e| failed(&e))?;
    let base = client.base_url().to_string();
    let path = base.splitn(4, '/').nth(3).unwrap_or("");
    if path.ends_with("api/v1") || path.ends_with("api") {
        return Err(failed(&client.not_the_api("the URL ends in /api/v1")));
    }
    // What the server says is shown escaped: never raw bytes to a terminal.
    let version = client.version().map_err(|e| failed(&e))?;
    let _ = writeln!(
        lines,
        "ok   forge at {base}: Forgejo API version {}",
        one_line(&version)
    );
    let login = client.current_user().map_err(|e| failed(&e))?;
    let _ = writeln!(
        lines,
        "ok   the token is accepted: user {}",
        one_line(&login)
    );
    let line = probe_repo(&client, settings, &login)?;
    let _ = writeln!(lines, "ok   {}", one_line(&line));
    Ok(())
}

/// The repository exists and the token may write it, or it is missing
/// and the token may create it.
fn probe_repo(client: &ForgejoClient, s: &ForgeSettings, login: &str) -> Result<String, Failed> {
    let repo = RepoRef::new(&s.owner, &s.repo);
    match client.get_repo(&repo) {
        Ok(found) => match found.read_only {
            Some(why) => Err((
                Kind::Config,
                format!(
                    "repository {repo} is {why}: Forgejo takes no commit to it; make it writable again or set --repo to the billing repository in use"
                ),
            )),
            None => probe_write(client, &repo, found.may_push),
        },
        Err(ForgeError::NotFound(_)) => probe_create(client, &repo, login),
        Err(e) => Err(failed(&e)),
    }
}

fn probe_write(
    client: &ForgejoClient,
    repo: &RepoRef,
    may_push: Option<bool>,
) -> Result<String, Failed> {
    if may_push == Some(false) {
        return Err((
            Kind::NoPerm,
            format!("repository {repo}: user may read but not write it; grant write access"),
        ));
    }
    match client.probe_write(repo) {
        Ok(WriteAccess::Granted) => Ok(format!("repository {repo} exists; the token may write it")),
        Ok(WriteAccess::Unknown) => Ok(format!(
            "repository {repo} exists; write access: this server has no many-files endpoint to probe (the push falls back to one file per request)"
        )),
        Err(ForgeError::Forbidden(m)) => Err((
            Kind::NoPerm,
            cut(&format!(
                "repository {repo}: the token may not write it (403): {m}; it needs the write:repository scope"
            )),
        )),
        Err(e) => Err(failed(&e)),
    }
}

fn probe_create(client: &ForgejoClient, repo: &RepoRef, login: &str) -> Result<String, Failed> {
    let mine = repo.owner.eq_ignore_ascii_case(login);
    let under = if mine {
        format!("user {login}")
    } else {
        format!("organisation {}", repo.owner)
    };
    match client.probe_create(&repo.owner, mine) {
        Ok(()) => Ok(format!(
            "repository {repo} does not exist yet; the token may create it under {under} (the first push does)"
        )),
        Err(ForgeError::NotFound(_)) if !mine => Err((
            Kind::Config,
            format!(
                "repository {repo} does not exist, and {} is neither an organisation nor the token's user ({login}): fix --repo",
                repo.owner
            ),
        )),
        Err(ForgeError::Forbidden(m)) => Err((
            Kind::NoPerm,
            cut(&format!(
                "repository {repo} does not exist, and the token may not create it under {under} (403): {m}; {}",
                if mine {
                    "it needs the write:repository scope"
                } else {
                    "it needs write:organization and the right to create repositories in the organisation"
                }
            )),
        )),
        Err(e) => Err(failed(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_table_lines_up_whatever_the_longest_name() {
        let row = |name, value: Option<&str>, source| Setting {
            name,
            value: value.map(String::from),
            source,
        };
        let text = settings_text(&[
            row("node", Some("n1"), Source::Flag),
            row("insecure_http", Some("false"), Source::Default),
            row("signing_key_file", None, Source::Default),
            row("repo", Some("o/r"), Source::Config),
        ]);
        // Every row's source starts in one column, and so does its value.
        let columns: Vec<(usize, usize)> = text
            .lines()
            .skip(1)
            .map(|line| {
                let source = line[2..].find(' ').map(|i| i + 2).unwrap();
                let source = source + line[source..].find(|c| c != ' ').unwrap();
                let value = source + line[source..].find(' ').unwrap();
                let value = value + line[value..].find(|c| c != ' ').unwrap();
                (source, value)
            })
            .collect();
        assert_eq!(columns.len(), 4, "{text}");
        assert!(
            columns.iter().all(|c| *c == columns[0]),
            "{columns:?}\n{text}"
        );
        assert!(
            text.contains("  signing_key_file default   (none: hour files go unsigned)\n"),
            "{text}"
        );
    }
}
