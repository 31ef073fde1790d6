//! What each scheduler needs to run the push job hourly (DESIGN.md,
//! "Scheduling"). The minute past the hour is derived from the node name so
//! that many nodes do not all reach the forge at :00.

use crate::config::{Common, ConfigFile, SpoolArgs, given};
use sha2::{Digest, Sha256};

/// The schedulers `--print-schedule` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scheduler {
    #[value(name = "hero_proc")]
    HeroProc,
    Systemd,
    Cron,
}

/// The name of the hero_proc action.
pub const ACTION_NAME: &str = "hero_usage_billing_cron";
/// One hour.
pub const INTERVAL_MS: u64 = 3_600_000;

/// The push job's command line for a scheduler. The scheduler's environment
/// is not this shell's: name the spool, the node and the config file (none of
/// them secret) on the line.
pub fn push_command(args: &SpoolArgs, common: &Common) -> anyhow::Result<Vec<String>> {
    let mut command = vec![
        std::env::current_exe()?.display().to_string(),
        "--once".into(),
        "--spool".into(),
        common.spool.display().to_string(),
        "--node".into(),
        common.node.clone(),
    ];
    if let Some(config) = ConfigFile::locate(given(&args.config).as_deref()) {
        command.extend(["--config".into(), config.display().to_string()]);
    }
    Ok(command)
}

/// The minute past the hour this node pushes at: stable per node, spread
/// evenly over 0..60.
pub fn minute_for(node: &str) -> u32 {
    let digest = Sha256::digest(node.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % 60
}

/// A word that needs no quoting anywhere (shell, systemd, cron).
fn is_plain(w: &str) -> bool {
    !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:,+@".contains(c))
}

/// Join words into one shell command line, quoting those that need it.
pub fn command_line(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if is_plain(w) {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Join words into a systemd `ExecStart=` line. systemd is no shell: a
/// word is double-quoted whole with C escapes, and `%` (a specifier) and
/// `$` (a variable) are doubled.
fn systemd_command_line(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if is_plain(w) {
                return w.clone();
            }
            let mut q = String::from("\"");
            for c in w.chars() {
                match c {
                    '\\' => q.push_str("\\\\"),
                    '"' => q.push_str("\\\""),
                    '\n' => q.push_str("\\n"),
                    '%' => q.push_str("%%"),
                    '$' => q.push_str("$$"),
                    c => q.push(c),
                }
            }
            q.push('"');
            q
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The text to install for `scheduler`; `words` is the push command (the
/// binary's absolute path, `--once` and any settings), quoted here as each
/// scheduler needs.
pub fn render(scheduler: Scheduler, node: &str, words: &[String]) -> String {
    let minute = minute_for(node);
    let push = command_line(words);
    match scheduler {
        Scheduler::HeroProc => {
            let action = serde_json::json!({
                "name": ACTION_NAME,
                "kind": "action",
                "script": push,
                "description": "hourly push of usage records to the billing repository (one-shot; non-zero exit is the failure signal)",
                "schedule_policy": { "interval_ms": INTERVAL_MS },
            });
            format!(
                "{}\n",
                serde_json::to_string_pretty(&action).expect("static json")
            )
        }
        Scheduler::Systemd => format!(
            "# /etc/systemd/system/hero_usage_push.service\n\
             [Unit]\n\
             Description=Push usage records to the billing repository\n\
             Wants=network-online.target\n\
             After=network-online.target\n\
             \n\
             [Service]\n\
             Type=oneshot\n\
             ExecStart={}\n\
             # Exit 75 is a temporary failure: the next run retries, nothing is lost.\n\
             \n\
             # /etc/systemd/system/hero_usage_push.timer\n\
             [Unit]\n\
             Description=Hourly usage push for node {node}\n\
             \n\
             [Timer]\n\
             OnCalendar=*-*-* *:{minute:02}:00\n\
             Persistent=true\n\
             \n\
             [Install]\n\
             WantedBy=timers.target\n",
            systemd_command_line(words)
        ),
        // cron turns an unescaped % into a newline.
        Scheduler::Cron => format!("{minute} * * * * {}\n", push.replace('%', "\\%")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_quote_what_needs_it() {
        let words = ["/bin/p".to_string(), "--spool".into(), "/a b/it's".into()];
        assert_eq!(command_line(&words), "/bin/p --spool '/a b/it'\\''s'");
    }

    #[test]
    fn each_scheduler_gets_its_own_quoting() {
        let words = [
            "/bin/p".to_string(),
            "--spool".into(),
            r#"/s p/50%$x"'"#.into(),
        ];
        let systemd = render(Scheduler::Systemd, "n", &words);
        assert!(
            systemd.contains(r#"ExecStart=/bin/p --spool "/s p/50%%$$x\"'""#),
            "{systemd}"
        );
        let cron = render(Scheduler::Cron, "n", &words);
        let want = concat!(r#" /bin/p --spool '/s p/50\%$x"'\'''"#, "\n");
        assert!(cron.ends_with(want), "{cron}");
        let hero_proc = render(Scheduler::HeroProc, "n", &words);
        let v: serde_json::Value = serde_json::from_str(&hero_proc).unwrap();
        assert_eq!(v["script"], command_line(&words));
    }

    #[test]
    fn minute_is_stable_and_spread() {
        assert_eq!(minute_for("node-7"), minute_for("node-7"));
        let distinct: std::collections::HashSet<u32> =
            (0..200).map(|i| minute_for(&format!("node-{i}"))).collect();
        assert!(distinct.len() > 40, "minutes cluster: {}", distinct.len());
        assert!(distinct.iter().all(|m| *m < 60));
    }
}
