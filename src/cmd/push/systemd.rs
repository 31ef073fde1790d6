//! The systemd units of a schedule (`--print-schedule systemd`, and the
//! Debian package's units, rendered by the same code from
//! [`super::schedule::debian_job`]): the push service and its hourly timer,
//! the shim's service, and optionally a minutely status timer for
//! node_exporter's textfile collector.
//!
//! System units are sandboxed: the services see the file system read-only
//! but for the spool (`ProtectSystem=strict`, `ReadWritePaths=`), no home
//! directories unless a path they read is there, no devices, no kernel
//! knobs, no capabilities, the `@system-service` system calls, and only the
//! address families they use. `systemd-analyze security` rates the push and
//! the shim 1.2 (1.3 with home directories read-only) and the status 0.4
//! (9.6 without). User units get only what a user manager
//! can do without user namespaces (`NoNewPrivileges=`, `UMask=`).

use super::schedule::{Job, RunAs, SPLAY_SECONDS, ScheduleFile, minute_for};
use crate::text::is_plain;
use std::path::Path;

pub const PUSH_SERVICE: &str = "hero_usage_push.service";
pub const PUSH_TIMER: &str = "hero_usage_push.timer";
pub const SHIM_SERVICE: &str = "hero_usage_shim.service";
pub const STATUS_SERVICE: &str = "hero_usage_status.service";
pub const STATUS_TIMER: &str = "hero_usage_status.timer";

/// Join words into a systemd `ExecStart=` line. systemd is no shell: a
/// word is double-quoted whole with C escapes, and `%` (a specifier) and
/// `$` (a variable) are doubled.
pub fn command_line(words: &[String]) -> String {
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

/// A path as one word of a unit setting that takes a list: quoted when it
/// holds a space.
fn path_word(p: &Path) -> String {
    command_line(&[p.display().to_string()])
}

/// What a service may reach beyond the sandbox.
struct Reach<'a> {
    /// Directories it writes (the spool; the textfile's directory).
    writes: Vec<String>,
    /// `AF_*` families it needs; none: no network at all.
    families: &'a str,
}

/// The sandbox of a system service. `home`: a path the job reads or writes
/// is under /home, /root or /run/user, so those stay visible (read-only,
/// but for the `ReadWritePaths=`).
fn sandbox(job: &Job, reach: &Reach) -> String {
    // Measured with systemd 252's `systemd-analyze security --offline=yes`.
    let score = match (reach.families.is_empty(), job.home_paths) {
        (true, _) => "0.4",
        (false, false) => "1.2",
        (false, true) => "1.3",
    };
    let mut s = format!("# Sandbox: systemd-analyze security rates this unit {score} (OK).\n");
    for w in &reach.writes {
        s.push_str(&format!("ReadWritePaths={w}\n"));
    }
    let home = if job.home_paths { "read-only" } else { "yes" };
    s.push_str(&format!(
        "ProtectSystem=strict\n\
         ProtectHome={home}\n\
         PrivateTmp=yes\n\
         PrivateDevices=yes\n\
         PrivateMounts=yes\n\
         PrivateIPC=yes\n\
         NoNewPrivileges=yes\n\
         CapabilityBoundingSet=\n\
         AmbientCapabilities=\n\
         ProtectKernelTunables=yes\n\
         ProtectKernelModules=yes\n\
         ProtectKernelLogs=yes\n\
         ProtectControlGroups=yes\n\
         ProtectClock=yes\n\
         ProtectHostname=yes\n\
         ProtectProc=invisible\n\
         ProcSubset=pid\n\
         RestrictNamespaces=yes\n\
         RestrictRealtime=yes\n\
         RestrictSUIDSGID=yes\n\
         LockPersonality=yes\n\
         MemoryDenyWriteExecute=yes\n\
         RemoveIPC=yes\n\
         KeyringMode=private\n\
         DevicePolicy=closed\n\
         SystemCallArchitectures=native\n\
         SystemCallFilter=@system-service\n\
         SystemCallFilter=~@privileged @resources\n\
         SystemCallErrorNumber=EPERM\n\
         UMask=0077\n"
    ));
    if reach.families.is_empty() {
        s.push_str("PrivateNetwork=yes\nIPAddressDeny=any\nRestrictAddressFamilies=AF_UNIX\n");
    } else {
        s.push_str(&format!("RestrictAddressFamilies={}\n", reach.families));
    }
    s
}

/// The `[Service]` lines every unit of `job` shares: who it runs as, and
/// its sandbox (system units) or what a user manager allows (user units).
fn service_lines(job: &Job, reach: &Reach) -> String {
    match &job.run_as {
        RunAs::System { user, group } => {
            let mut s = format!("User={user}\n");
            if let Some(g) = group {
                s.push_str(&format!("Group={g}\n"));
            }
            s + &sandbox(job, reach)
        }
        RunAs::User { .. } => "NoNewPrivileges=yes\nUMask=0077\n".into(),
    }
}

/// `[Unit]` lines: network ordering for system units (a user manager has
/// no network-online.target), and the package's "not before configured".
fn unit_lines(job: &Job, network: bool) -> String {
    let mut s = String::new();
    if network && matches!(job.run_as, RunAs::System { .. }) {
        s.push_str("Wants=network-online.target\nAfter=network-online.target\n");
    }
    if let Some(c) = &job.condition {
        s.push_str(&format!("ConditionPathExists={}\n", c.display()));
    }
    s
}

/// "for node NAME", or nothing when the node comes from the config file.
fn of_node(job: &Job) -> String {
    job.node
        .as_ref()
        .map(|n| format!(" of node {n}"))
        .unwrap_or_default()
}

fn writes_spool(job: &Job) -> Vec<String> {
    vec![path_word(&job.spool)]
}

fn push_service(job: &Job) -> String {
    let reach = Reach {
        writes: writes_spool(job),
        families: "AF_UNIX AF_INET AF_INET6",
    };
    format!(
        "[Unit]\n\
         Description=Push usage records{of} to the billing repository\n\
         {unit}\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={exec}\n\
         # Exit 75 is a temporary failure: the next run retries, nothing is lost.\n\
         {service}",
        of = of_node(job),
        unit = unit_lines(job, true),
        exec = command_line(&job.push),
        service = service_lines(job, &reach),
    )
}

/// Hourly at the node's own minute; the package, which cannot know the
/// node, at :00. Either way splayed by a delay fixed per machine.
fn push_timer(job: &Job) -> String {
    let minute = job.node.as_deref().map_or(0, minute_for);
    format!(
        "[Unit]\n\
         Description=Hourly usage push{of}\n\
         {unit}\
         \n\
         [Timer]\n\
         OnCalendar=*-*-* *:{minute:02}:00\n\
         # Splay: a delay fixed per machine, spread over the hour.\n\
         RandomizedDelaySec={SPLAY_SECONDS}\n\
         FixedRandomDelay=true\n\
         Persistent=true\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        of = of_node(job),
        unit = unit_lines(job, false),
    )
}

/// The shim's service: the same spool, node, config and user as the push.
fn shim_service(job: &Job) -> String {
    let wanted_by = match job.run_as {
        RunAs::System { .. } => "multi-user.target",
        RunAs::User { .. } => "default.target",
    };
    let reach = Reach {
        writes: writes_spool(job),
        families: "AF_UNIX AF_INET AF_INET6",
    };
    format!(
        "[Unit]\n\
         Description=hero_usage HTTP shim{of} (record over HTTP, push now, status)\n\
         After=network.target\n\
         {unit}\
         \n\
         [Service]\n\
         ExecStart={exec}\n\
         Restart=on-failure\n\
         {service}\
         \n\
         [Install]\n\
         WantedBy={wanted_by}\n",
        of = of_node(job),
        unit = unit_lines(job, false),
        exec = command_line(&job.shim),
        service = service_lines(job, &reach),
    )
}

/// The status service: writes the Prometheus textfile, reads the spool, no
/// network at all.
fn status_service(job: &Job, command: &[String], textfile: &Path) -> String {
    let dir = textfile.parent().unwrap_or(Path::new("/"));
    let reach = Reach {
        // `-`: a missing directory (node_exporter not installed yet) fails
        // the write with a clear message, not the unit's namespace setup.
        writes: vec![format!("-{}", path_word(dir))],
        families: "",
    };
    format!(
        "[Unit]\n\
         Description=Usage spool metrics{of} for node_exporter's textfile collector\n\
         {unit}\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={exec}\n\
         {service}",
        of = of_node(job),
        unit = unit_lines(job, false),
        exec = command_line(command),
        service = service_lines(job, &reach),
    )
}

fn status_timer(job: &Job) -> String {
    format!(
        "[Unit]\n\
         Description=Usage spool metrics{of}, every minute\n\
         {unit}\
         \n\
         [Timer]\n\
         OnCalendar=minutely\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n",
        of = of_node(job),
        unit = unit_lines(job, false),
    )
}

/// The unit files of `job`.
pub fn units(job: &Job) -> Vec<ScheduleFile> {
    let file = |name: &str, content| ScheduleFile {
        name: name.into(),
        content,
    };
    let mut files = vec![
        file(PUSH_SERVICE, push_service(job)),
        file(PUSH_TIMER, push_timer(job)),
        file(SHIM_SERVICE, shim_service(job)),
    ];
    if let Some(status) = &job.status {
        files.push(file(
            STATUS_SERVICE,
            status_service(job, &status.command, &status.textfile),
        ));
        files.push(file(STATUS_TIMER, status_timer(job)));
    }
    files
}

/// Where systemd units go for `run_as`.
pub fn unit_dir(run_as: &RunAs) -> &'static str {
    match run_as {
        RunAs::System { .. } => "/etc/systemd/system",
        RunAs::User { .. } => "~/.config/systemd/user",
    }
}

/// The commands that install the units (`at` names a file where it was
/// written).
pub fn install_commands(job: &Job, at: &dyn Fn(&str) -> String) -> Vec<String> {
    let files = units(job)
        .iter()
        .map(|f| at(&f.name))
        .collect::<Vec<_>>()
        .join(" ");
    let dir = unit_dir(&job.run_as);
    let shell = |p: &Path| crate::text::shell_word(&p.display().to_string());
    let shim_note = "    # only if callers use the HTTP shim";
    match &job.run_as {
        RunAs::System { user, .. } => {
            // ProtectSystem=strict: the spool must exist before the first run.
            let mut c = vec![format!(
                "install -d -m 700 -o {} {}    # the spool, owned by the service's user",
                crate::text::shell_word(user),
                shell(&job.spool)
            )];
            c.push(format!("install -m 644 {files} {dir}/"));
            c.push("systemctl daemon-reload".into());
            c.push("systemctl enable --now hero_usage_push.timer".into());
            c.push(format!("systemctl enable --now {SHIM_SERVICE}{shim_note}"));
            if let Some(status) = &job.status {
                let d = status.textfile.parent().unwrap_or(Path::new("/"));
                c.push(format!(
                    "setfacl -m u:{}:rwx {}    # or any way that lets {user} write there",
                    crate::text::shell_word(user),
                    shell(d)
                ));
                c.push(format!("systemctl enable --now {STATUS_TIMER}"));
            }
            c
        }
        RunAs::User { user } => {
            let mut c = vec![
                format!("mkdir -p {dir} && install -m 644 {files} {dir}/"),
                "systemctl --user daemon-reload".into(),
                "systemctl --user enable --now hero_usage_push.timer".into(),
                format!("systemctl --user enable --now {SHIM_SERVICE}{shim_note}"),
            ];
            if job.status.is_some() {
                c.push(format!("systemctl --user enable --now {STATUS_TIMER}"));
            }
            c.push(format!(
                "loginctl enable-linger {}    # run the timer while {user} is logged out",
                crate::text::shell_word(user)
            ));
            c
        }
    }
}
