//! What each scheduler needs to run the push job hourly (man 7 hero_usage,
//! SCHEDULING): the text to install, the commands that install it, and
//! notes when a setting the job needs would not reach the scheduler. The
//! minute past the hour is derived from the node name, and every schedule
//! splays (`--splay 3600`, or systemd's `RandomizedDelaySec` with
//! `FixedRandomDelay`), so that a fleet does not hit the forge at once.

use crate::error::{Kind, fail};
use crate::settings::{Common, Resolved, Resolver, SecretSource, Source};
use crate::text::shell_word;
use anyhow::Result;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The schedulers `--print-schedule` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scheduler {
    #[value(name = "hero_proc")]
    HeroProc,
    Systemd,
    Cron,
}

/// The name of the hero_proc action when `--action-name` is not given.
pub const ACTION_NAME: &str = "hero_usage_billing_cron";
/// One hour.
pub const INTERVAL_MS: u64 = 3_600_000;
/// The splay every printed schedule uses: spread over the whole hour.
pub const SPLAY_SECONDS: u32 = 3600;
/// Marks the crontab line, so that installing it again replaces it.
pub const CRON_MARK: &str = "# hero_usage_push";

/// Who the systemd units run as: `--service-user`, or the user who
/// printed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunAs {
    /// System units (`/etc/systemd/system`) with `User=` (and `Group=` when
    /// root printed them for itself; a service user's is its own group).
    System { user: String, group: Option<String> },
    /// Anyone else prints user units (`~/.config/systemd/user`).
    User { user: String },
}

/// Everything a schedule is rendered from.
#[derive(Debug, Clone)]
pub struct Job {
    /// The node name; `None` when the config file names it at run time
    /// (the Debian package's units).
    pub node: Option<String>,
    /// The push command: the binary's absolute path and its settings.
    pub push: Vec<String>,
    /// The shim command (systemd only).
    pub shim: Vec<String>,
    /// A minutely status run for node_exporter (systemd only).
    pub status: Option<StatusJob>,
    pub action_name: String,
    pub run_as: RunAs,
    /// The spool (absolute): the one directory the services write.
    pub spool: PathBuf,
    /// A path the job reads or writes is under /home, /root or /run/user.
    pub home_paths: bool,
    /// The units start only when this file exists (the package's config).
    pub condition: Option<PathBuf>,
}

/// `hero_usage_status --prometheus --out FILE`, every minute.
#[derive(Debug, Clone)]
pub struct StatusJob {
    pub command: Vec<String>,
    pub textfile: PathBuf,
}

/// Where the Debian package puts things: its units are [`debian_job`]'s,
/// rendered into `debian/units/` by the test `debian_units_are_rendered`
/// (the package ships those files; the test fails when they differ).
#[cfg(test)]
pub mod debian {
    pub const BIN_DIR: &str = "/usr/bin";
    pub const CONFIG: &str = "/etc/hero_usage/hero_usage.toml";
    pub const SPOOL: &str = "/var/lib/hero_usage/queue";
    pub const USER: &str = "hero-usage";
    /// node_exporter's textfile directory on Debian (prometheus-node-exporter).
    pub const TEXTFILE: &str = "/var/lib/prometheus/node-exporter/hero_usage.prom";
}

/// The job the Debian package's units run: binaries in /usr/bin, the
/// system user `hero-usage`, the config in /etc (which names the node and
/// the forge), the spool in /var/lib; nothing starts before the config exists.
/// Home directories stay visible (read-only): the units cannot know
/// whether the config names a signing key, token or CA file there.
#[cfg(test)]
pub fn debian_job() -> Job {
    let bin = |b: &str| format!("{}/{b}", debian::BIN_DIR);
    let where_ = ["--spool", debian::SPOOL, "--config", debian::CONFIG].map(String::from);
    let with = |words: Vec<String>| [words, where_.to_vec()].concat();
    Job {
        node: None,
        push: with(vec![bin("hero_usage_push"), "--once".into()]),
        shim: with(vec![bin("hero_usage_shim")]),
        status: Some(StatusJob {
            command: with(
                [
                    bin("hero_usage_status"),
                    "--prometheus".into(),
                    "--out".into(),
                ]
                .into_iter()
                .chain([debian::TEXTFILE.to_string()])
                .collect(),
            ),
            textfile: PathBuf::from(debian::TEXTFILE),
        }),
        action_name: ACTION_NAME.into(),
        run_as: RunAs::System {
            user: debian::USER.into(),
            group: None,
        },
        spool: PathBuf::from(debian::SPOOL),
        home_paths: true,
        condition: Some(PathBuf::from(debian::CONFIG)),
    }
}

/// One file of a schedule: its name and where it is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleFile {
    pub name: String,
    pub content: String,
}

/// The minute past the hour this node pushes at: stable per node, spread
/// evenly over 0..60.
pub fn minute_for(node: &str) -> u32 {
    let digest = Sha256::digest(node.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % 60
}

/// Join words into one shell command line, quoting those that need it.
pub fn command_line(words: &[String]) -> String {
    words
        .iter()
        .map(|w| shell_word(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Refuse a control character in anything a schedule prints: a newline in
/// a path would start a second crontab line or unit directive.
pub fn refuse_control(what: &str, value: &str, kind: Kind) -> Result<()> {
    if value.chars().any(char::is_control) {
        return Err(fail(
            kind,
            format!(
                "{what} {value:?} contains a control character; a schedule cannot carry it \
                 (it would split the line): rename it"
            ),
        ));
    }
    Ok(())
}

/// An action name hero_proc can key on: letters, digits, `_ . -`.
pub fn check_action_name(name: &str) -> Result<()> {
    refuse_control("--action-name", name, Kind::Usage)?;
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        return Err(fail(
            Kind::Usage,
            format!("--action-name {name:?}: use 1 to 64 of letters, digits, _ . -"),
        ));
    }
    Ok(())
}

/// The push command with the splay (hero_proc, cron; systemd splays itself).
fn splayed(push: &[String]) -> Vec<String> {
    let mut words = push.to_vec();
    let at = 2.min(words.len()); // after the binary and --once
    words.splice(at..at, ["--splay".to_string(), SPLAY_SECONDS.to_string()]);
    words
}

/// The files to install for `scheduler`.
pub fn render(scheduler: Scheduler, job: &Job) -> Vec<ScheduleFile> {
    match scheduler {
        Scheduler::HeroProc => vec![hero_proc_action(job)],
        Scheduler::Systemd => super::systemd::units(job),
        Scheduler::Cron => vec![ScheduleFile {
            name: "hero_usage_push.cron".into(),
            content: format!("{}\n", cron_line(job)),
        }],
    }
}

fn hero_proc_action(job: &Job) -> ScheduleFile {
    let action = serde_json::json!({
        "name": job.action_name,
        "kind": "action",
        "script": command_line(&splayed(&job.push)),
        "description": "hourly push of usage records to the billing repository (one-shot; non-zero exit is the failure signal)",
        "schedule_policy": { "interval_ms": INTERVAL_MS },
    });
    let text = serde_json::to_string_pretty(&action).unwrap_or_default();
    ScheduleFile {
        name: format!("{}.json", job.action_name),
        content: format!("{text}\n"),
    }
}

/// The crontab line: `--quiet` so that cron mails only a failure; cron
/// turns an unescaped `%` into a newline. The mark at its end (a shell
/// comment) lets the install command replace an earlier line.
pub fn cron_line(job: &Job) -> String {
    let mut words = splayed(&job.push);
    words.insert(4.min(words.len()), "--quiet".into());
    let command = command_line(&words).replace('%', "\\%");
    let minute = job.node.as_deref().map_or(0, minute_for);
    format!("{minute} * * * * {command} {CRON_MARK}")
}

/// The commands that install the files (read from `dir` when they were
/// written there by `--out`).
pub fn install_commands(scheduler: Scheduler, job: &Job, dir: Option<&Path>) -> Vec<String> {
    let at = |name: &str| match dir {
        Some(d) => shell_word(&d.join(name).display().to_string()),
        None => name.to_string(),
    };
    match scheduler {
        Scheduler::HeroProc => vec![format!(
            "hero_proc action add --file {}    # hero_proc's CLI: see its --help for your version",
            at(&format!("{}.json", job.action_name))
        )],
        Scheduler::Cron => {
            let add = match dir {
                Some(_) => format!("cat {}", at("hero_usage_push.cron")),
                None => format!("printf '%s\\n' {}", shell_word(&cron_line(job))),
            };
            vec![format!(
                "(crontab -l 2>/dev/null | grep -vF {}; {add}) | crontab -",
                shell_word(CRON_MARK)
            )]
        }
        Scheduler::Systemd => super::systemd::install_commands(job, &at),
    }
}

/// The user (and group) this process runs as, by name where the system
/// databases know it (systemd also takes a number).
pub fn current_run_as() -> RunAs {
    use crate::users::name_of;
    let (uid, gid) = crate::users::current_ids();
    let user = name_of("/etc/passwd", uid)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| uid.to_string());
    if uid == 0 {
        let group = name_of("/etc/group", gid).unwrap_or_else(|| gid.to_string());
        RunAs::System {
            user,
            group: Some(group),
        }
    } else {
        RunAs::User { user }
    }
}

/// A schedule ready to print: the job, and notes for stderr on settings
/// that would not reach the scheduler.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub job: Job,
    pub notes: Vec<String>,
}

/// What `--print-schedule` is asked for besides the scheduler.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub scheduler: Scheduler,
    /// `--action-name` (hero_proc).
    pub action_name: &'a str,
    /// `--service-user` (systemd): system units running as this user.
    pub service_user: Option<&'a str>,
    /// `--status-out` (systemd): a minutely status timer writing this file.
    pub status_out: Option<&'a Path>,
}

/// Build the job from the settings in force. A scheduler's environment is
/// not this shell's: spool, node and config file go on the command line,
/// and so does every forge setting that only this shell has (none of them
/// secret); a token that only this shell's environment holds, or a missing
/// URL or token, is a note with the fix.
pub fn prepare(req: &Request, settings: &Resolver, common: &Common) -> Result<Prepared> {
    check_action_name(req.action_name)?;
    if let Some(user) = req.service_user {
        check_user_name(user)?;
    }
    let exe = std::env::current_exe()?;
    let config = settings.config_path().map(Path::to_path_buf);
    let spool_dir = std::path::absolute(&common.spool)?;
    let mut where_ = vec![
        "--spool".into(),
        spool_dir.display().to_string(),
        "--node".into(),
        common.node.clone(),
    ];
    if let Some(c) = &config {
        where_.extend(["--config".into(), c.display().to_string()]);
    }
    let mut push = [
        vec![exe.display().to_string(), "--once".into()],
        where_.clone(),
    ]
    .concat();
    let mut shim = [
        vec![sibling(&exe, "hero_usage_shim").display().to_string()],
        where_.clone(),
    ]
    .concat();
    let (forge_words, mut notes) = forge_words(settings, config.as_deref());
    push.extend_from_slice(&forge_words);
    shim.extend_from_slice(&forge_words);
    let shim_note = admin_secret_note(&mut shim, settings);
    notes.extend(shim_note.filter(|_| req.scheduler == Scheduler::Systemd));
    let status = req.status_out.map(|out| {
        let textfile = std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
        let command = [
            vec![
                sibling(&exe, "hero_usage_status").display().to_string(),
                "--prometheus".into(),
                "--out".into(),
                textfile.display().to_string(),
            ],
            where_.clone(),
        ]
        .concat();
        StatusJob { command, textfile }
    });
    for w in push
        .iter()
        .chain(&shim)
        .chain(status.iter().flat_map(|s| &s.command))
    {
        refuse_control("a path or setting", w, Kind::Config)?;
    }
    let run_as = match req.service_user {
        Some(user) => RunAs::System {
            user: user.to_string(),
            group: None,
        },
        None => current_run_as(),
    };
    notes.extend(run_as_notes(req, settings, &run_as, &spool_dir));
    let mut read = vec![spool_dir.clone()];
    read.extend(config.clone());
    read.extend(status.iter().map(|s| s.textfile.clone()));
    for secret in [settings.token(), settings.admin_secret()]
        .into_iter()
        .flatten()
    {
        if let SecretSource::File(p) = secret.value {
            read.push(std::path::absolute(&p).unwrap_or(p));
        }
    }
    // The signing key and the CA file must stay readable in the sandbox too.
    read.extend(
        [settings.signing_key(), settings.ca_file()]
            .into_iter()
            .flatten()
            .map(|k| std::path::absolute(&k.value).unwrap_or(k.value)),
    );
    let job = Job {
        node: Some(common.node.clone()),
        push,
        shim,
        status,
        action_name: req.action_name.to_string(),
        run_as,
        spool: spool_dir,
        home_paths: read.iter().any(|p| under_home(p)),
        condition: None,
    };
    Ok(Prepared { job, notes })
}

/// Under a directory `ProtectHome=yes` would hide.
fn under_home(p: &Path) -> bool {
    ["/home", "/root", "/run/user"]
        .iter()
        .any(|h| p.starts_with(h))
}

/// A user name systemd and useradd accept: `[a-z_][a-z0-9_-]*`, at most 32.
fn check_user_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = name.len() <= 32
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c));
    if !ok {
        return Err(fail(
            Kind::Usage,
            format!(
                "--service-user {name:?}: use 1 to 32 of a-z 0-9 _ -, starting with a letter or _"
            ),
        ));
    }
    Ok(())
}

/// Notes on who the units run as: root without `--service-user`, and a
/// service user whose spool is the printing user's default.
fn run_as_notes(req: &Request, settings: &Resolver, run_as: &RunAs, spool: &Path) -> Vec<String> {
    if req.scheduler != Scheduler::Systemd {
        return Vec::new();
    }
    let mut notes = Vec::new();
    match (run_as, req.service_user) {
        (RunAs::System { user, .. }, None) if user == "root" => notes.push(
            "the units run as root; --service-user NAME runs them as a dedicated user \
             (useradd --system NAME), which is what the sandbox is made for"
                .to_string(),
        ),
        (_, Some(user)) => {
            let default_spool = settings
                .table()
                .iter()
                .any(|s| s.name == "spool" && s.source == Source::Default);
            if default_spool {
                notes.push(format!(
                    "the spool {} is this user's default; give {user} a spool of its own with \
                     --spool (e.g. /var/lib/hero_usage/queue)",
                    spool.display()
                ));
            }
        }
        _ => {}
    }
    notes
}

/// `hero_usage_shim` beside `exe` (both are installed in one `bin/`).
fn sibling(exe: &Path, name: &str) -> PathBuf {
    exe.parent()
        .map_or_else(|| PathBuf::from(name), |d| d.join(name))
}

/// The forge settings this shell gives that the scheduler would not see,
/// as flags; and notes on what cannot be carried that way.
fn forge_words(settings: &Resolver, config: Option<&Path>) -> (Vec<String>, Vec<String>) {
    let mut words = Vec::new();
    let mut notes = Vec::new();
    let where_ = config.map_or_else(
        || "a config file (see hero_usage.toml.example) named by --config".to_string(),
        |c| c.display().to_string(),
    );
    let table = settings.table();
    for s in table.iter().filter(|s| s.source.is_shell_only()) {
        let value = s.value.clone().unwrap_or_default();
        let flag = match s.name {
            "forgejo_url" => "--forgejo-url",
            "repo" => "--repo",
            "branch" => "--branch",
            "ca_file" => "--ca-file",
            "insecure_http" if value == "true" => {
                words.push("--insecure-http".into());
                continue;
            }
            _ => continue,
        };
        let value = match s.name {
            // A scheduler starts elsewhere: a path must not be relative.
            "ca_file" => std::path::absolute(&value).map_or(value, |p| p.display().to_string()),
            _ => value,
        };
        words.extend([flag.to_string(), value]);
    }
    let url_set = table
        .iter()
        .any(|s| s.name == "forgejo_url" && s.value.is_some());
    if !url_set {
        notes.push(format!(
            "no Forgejo URL is configured: the scheduled push would exit 78 every hour; set forgejo_url in {where_}"
        ));
    }
    // The key signs the scheduled runs too: carried unless the config file
    // names it (the default path depends on a HOME the scheduler may not share).
    if let Some(key) = settings
        .signing_key()
        .filter(|k| k.source != Source::Config)
    {
        let path = std::path::absolute(&key.value).unwrap_or(key.value);
        words.extend(["--signing-key-file".into(), path.display().to_string()]);
    }
    match settings.token() {
        Some(Resolved {
            value: SecretSource::File(path),
            source,
        }) if source != Source::Config => {
            let path = std::path::absolute(&path).unwrap_or(path);
            words.extend(["--token-file".into(), path.display().to_string()]);
        }
        Some(Resolved {
            value: SecretSource::File(_),
            ..
        }) => {}
        Some(Resolved {
            value: SecretSource::Value(_),
            ..
        }) => notes.push(format!(
            "the token is only in this shell's HERO_USAGE_FORGEJO_TOKEN, which the scheduler will not see: \
             write it to a file (chmod 600) and set token_file in {where_}"
        )),
        None => notes.push(format!(
            "no Forgejo token is configured: the scheduled push would exit 78 every hour; \
             write the token to a file (chmod 600) and set token_file in {where_}"
        )),
    }
    (words, notes)
}

/// The shim needs its admin secret from a file it can re-read: carry a
/// file named in this shell's environment; note a secret that is only an
/// environment value, or none.
fn admin_secret_note(shim: &mut Vec<String>, settings: &Resolver) -> Option<String> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if settings.file().admin_secret_file.is_some() {
        return None;
    }
    if let Some(p) = env("HERO_ONBOARDING_ADMIN_SECRET_FILE") {
        let p = std::path::absolute(PathBuf::from(&p)).unwrap_or_else(|_| PathBuf::from(p));
        shim.extend(["--admin-secret-file".into(), p.display().to_string()]);
        return None;
    }
    Some(
        "the shim unit needs an admin secret file: set admin_secret_file in the config file \
         (the shim refuses to start without it; the push timer does not need it)"
            .into(),
    )
}

/// Write the files into `dir` (created if missing), replacing earlier ones.
pub fn write_files(dir: &Path, files: &[ScheduleFile]) -> Result<()> {
    refuse_control("--out", &dir.display().to_string(), Kind::Usage)?;
    let cannot = |e: std::io::Error| {
        fail(
            Kind::CantCreate,
            format!("cannot write the schedule into {}: {e}", dir.display()),
        )
    };
    std::fs::create_dir_all(dir).map_err(cannot)?;
    for f in files {
        std::fs::write(dir.join(&f.name), &f.content).map_err(cannot)?;
    }
    Ok(())
}

/// What `--print-schedule` prints on stdout: the files (each headed by
/// where it goes) or, with `--out`, the files written; then how to install.
pub fn stdout_text(scheduler: Scheduler, job: &Job, out: Option<&Path>) -> String {
    let files = render(scheduler, job);
    let mut s = String::new();
    match out {
        None if scheduler == Scheduler::Systemd => {
            for f in &files {
                s.push_str(&format!(
                    "# {}/{}\n{}\n",
                    super::systemd::unit_dir(&job.run_as),
                    f.name,
                    f.content
                ));
            }
        }
        None => s.push_str(&files[0].content),
        Some(dir) => {
            for f in &files {
                s.push_str(&format!("wrote {}\n", dir.join(&f.name).display()));
            }
            s.push_str("to install:\n");
            for c in install_commands(scheduler, job, out) {
                s.push_str(&format!("  {c}\n"));
            }
        }
    }
    s
}

/// `--print-schedule`: what goes to stdout, and the lines for stderr (the
/// notes, and how to install when the files went to stdout).
pub fn print(
    scheduler: Scheduler,
    prepared: &Prepared,
    out: Option<&Path>,
) -> Result<(String, Vec<String>)> {
    let job = &prepared.job;
    // Absolute, so that the printed install commands work from any
    // directory, as the paths in the units themselves do.
    let out = out.map(|d| std::path::absolute(d).unwrap_or_else(|_| d.to_path_buf()));
    let out = out.as_deref();
    if let Some(dir) = out {
        write_files(dir, &render(scheduler, job))?;
    }
    let mut stderr: Vec<String> = prepared
        .notes
        .iter()
        .map(|n| format!("note: {n}"))
        .collect();
    if out.is_none() {
        if scheduler != Scheduler::Cron {
            stderr.push("to install: save the text above into its file(s), or rerun with --out DIR to write them; then:".into());
        } else {
            stderr.push(
                "to install (replaces an earlier hero_usage_push line, never adds a second):"
                    .into(),
            );
        }
        stderr.extend(
            install_commands(scheduler, job, None)
                .into_iter()
                .map(|c| format!("  {c}")),
        );
    }
    Ok((stdout_text(scheduler, job, out), stderr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(words: &[&str]) -> Job {
        Job {
            node: Some("n".into()),
            push: words.iter().map(|w| w.to_string()).collect(),
            shim: vec!["/bin/shim".into()],
            status: None,
            action_name: ACTION_NAME.into(),
            run_as: RunAs::User { user: "u".into() },
            spool: PathBuf::from("/srv/spool"),
            home_paths: false,
            condition: None,
        }
    }

    #[test]
    fn command_lines_quote_what_needs_it() {
        let words = ["/bin/p".to_string(), "--spool".into(), "/a b/it's".into()];
        assert_eq!(command_line(&words), "/bin/p --spool '/a b/it'\\''s'");
    }

    #[test]
    fn each_scheduler_gets_its_own_quoting() {
        let j = job(&["/bin/p", "--once", "--spool", r#"/s p/50%$x"'"#]);
        let systemd = &render(Scheduler::Systemd, &j)[0].content;
        assert!(
            systemd.contains(r#"ExecStart=/bin/p --once --spool "/s p/50%%$$x\"'""#),
            "{systemd}"
        );
        let cron = cron_line(&j);
        let want =
            r#" /bin/p --once --splay 3600 --quiet --spool '/s p/50\%$x"'\''' # hero_usage_push"#;
        assert!(cron.ends_with(want), "{cron}");
        let hero_proc = &render(Scheduler::HeroProc, &j)[0].content;
        let v: serde_json::Value = serde_json::from_str(hero_proc).unwrap();
        assert_eq!(v["script"], command_line(&splayed(&j.push)));
        assert_eq!(v["name"], ACTION_NAME);
    }

    #[test]
    fn system_units_name_the_user_and_user_units_do_not() {
        let mut j = job(&["/bin/p", "--once"]);
        let user = render(Scheduler::Systemd, &j);
        assert!(user.iter().all(|f| !f.content.contains("User=")));
        assert!(user.iter().all(|f| !f.content.contains("network-online")));
        assert!(user.iter().all(|f| !f.content.contains("ProtectSystem")));
        j.run_as = RunAs::System {
            user: "billing".into(),
            group: Some("staff".into()),
        };
        let system = render(Scheduler::Systemd, &j);
        for f in system.iter().filter(|f| f.name.ends_with(".service")) {
            assert!(
                f.content.contains("User=billing\nGroup=staff\n"),
                "{}",
                f.content
            );
            // Sandboxed: everything read-only but the spool; no home unless needed.
            for line in [
                "ReadWritePaths=/srv/spool\n",
                "ProtectSystem=strict\n",
                "ProtectHome=yes\n",
                "NoNewPrivileges=yes\n",
                "CapabilityBoundingSet=\n",
                "SystemCallFilter=@system-service\n",
            ] {
                assert!(f.content.contains(line), "{line} {}", f.content);
            }
        }
        j.home_paths = true;
        let system = render(Scheduler::Systemd, &j);
        assert!(system[0].content.contains("ProtectHome=read-only\n"));
        assert!(
            system[1]
                .content
                .contains("RandomizedDelaySec=3600\nFixedRandomDelay=true\n")
        );
    }

    /// The Debian package ships `debian/units/*`: they must be what the
    /// renderer makes of [`debian_job`]. `HERO_USAGE_BLESS=1` rewrites them.
    #[test]
    fn debian_units_are_rendered() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("debian/units");
        let files = render(Scheduler::Systemd, &debian_job());
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "hero_usage_push.service",
                "hero_usage_push.timer",
                "hero_usage_shim.service",
                "hero_usage_status.service",
                "hero_usage_status.timer"
            ]
        );
        if std::env::var_os("HERO_USAGE_BLESS").is_some() {
            write_files(&dir, &files).unwrap();
        }
        for f in &files {
            let shipped = std::fs::read_to_string(dir.join(&f.name)).unwrap_or_default();
            assert!(
                shipped == f.content,
                "debian/units/{} differs from the renderer's; run \
                 HERO_USAGE_BLESS=1 cargo test --lib debian_units_are_rendered\n{}",
                f.name,
                f.content
            );
            assert!(
                f.content
                    .contains("ConditionPathExists=/etc/hero_usage/hero_usage.toml\n"),
                "{}",
                f.content
            );
        }
        assert!(files[0].content.contains(
            "ExecStart=/usr/bin/hero_usage_push --once --spool /var/lib/hero_usage/queue \
             --config /etc/hero_usage/hero_usage.toml\n"
        ));
        assert!(files[0].content.contains("User=hero-usage\n"));
        // A key the config names under /home must stay readable.
        assert!(files[0].content.contains("ProtectHome=read-only\n"));
        assert!(files[1].content.contains("OnCalendar=*-*-* *:00:00\n"));
    }

    #[test]
    fn control_characters_and_odd_action_names_are_refused() {
        assert!(refuse_control("x", "/a\nb", Kind::Config).is_err());
        assert!(refuse_control("x", "/a\u{1b}b", Kind::Config).is_err());
        assert!(refuse_control("x", "/a b", Kind::Config).is_ok());
        assert!(check_action_name("hero_onboarding_billing_cron").is_ok());
        for bad in ["", "a b", "a\nb", "a/b"] {
            assert!(check_action_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cron_install_replaces_the_marked_line() {
        let j = job(&["/bin/p", "--once"]);
        let cmd = &install_commands(Scheduler::Cron, &j, None)[0];
        assert!(
            cmd.starts_with("(crontab -l 2>/dev/null | grep -vF '# hero_usage_push'; printf"),
            "{cmd}"
        );
        assert!(cmd.ends_with(") | crontab -"), "{cmd}");
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
