//! Settings that `--check` must not approve silently: a node name that is
//! the host name by default, `~/` in config paths, `insecure_http` in the
//! config file (accepted, and shown as `--check` lists it).

use crate::support::forge::{Node, start};
use crate::support::{Run, run, status_json, stdout};

#[test]
fn check_warns_on_a_node_name_that_is_the_host_name_by_default() {
    let forge = start();
    let node = Node::new(&forge);
    let out = run(node.push_cmd().arg("--check").env_remove("HERO_NODE_ID"));
    out.exit(0);
    let text = stdout(&out);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(
        text.contains(&format!(
            "warning node name {} is the host name by default: pin it",
            host.trim()
        )),
        "{text}"
    );
    // Pinned (here by the environment, as the test env does): no warning.
    let out = run(node.push_cmd().arg("--check"));
    out.exit(0);
    assert!(
        !stdout(&out).contains("host name by default"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_leading_tilde_in_a_config_path_is_the_home_directory() {
    let forge = start();
    let node = Node::new(&forge);
    let config = node.env.path("hero_usage.toml");
    std::fs::write(&config, "spool = \"~/queue\"\n").unwrap();
    let (out, v) = status_json(
        &node.env,
        &["--config", config.to_str().unwrap(), "--spool", ""],
    );
    out.exit(0);
    assert_eq!(
        v["spool"].as_str().unwrap(),
        node.env.home.join("queue").display().to_string()
    );
    // ~user/ is not expanded, and not taken as a folder named "~user".
    std::fs::write(&config, "token_file = \"~billing/token\"\n").unwrap();
    let out = run(node
        .push_cmd()
        .args(["--check", "--config", config.to_str().unwrap()]));
    out.exit(78)
        .stderr_has("token_file = \"~billing/token\": only a leading ~/ is expanded");
}

#[test]
fn insecure_http_is_a_config_key_as_check_lists_it() {
    let forge = start();
    let node = Node::new(&forge);
    let config = node.env.path("hero_usage.toml");
    let url = "http://forge.no-such-host.invalid";
    // Without it, plain http to a host that is not loopback is refused.
    let out = run(node.push_cmd().args(["--check", "--forgejo-url", url]));
    out.exit(78);
    assert!(stdout(&out).contains("--insecure-http"), "{}", stdout(&out));
    std::fs::write(&config, "insecure_http = true\n").unwrap();
    let out = run(node.push_cmd().args([
        "--check",
        "--forgejo-url",
        url,
        "--config",
        config.to_str().unwrap(),
    ]));
    let text = stdout(&out);
    assert!(text.contains("insecure_http    config    true"), "{text}");
    // Past the URL rule: the host does not resolve, a temporary failure.
    out.exit(75);
    assert!(text.contains("does not resolve"), "{text}");
}

#[test]
fn a_schedule_carries_a_shell_only_ca_file_and_keeps_it_readable() {
    let env = crate::support::TestEnv::new();
    let out = run(env.cmd("hero_usage_push").args([
        "--print-schedule",
        "systemd",
        "--service-user",
        "hero-usage",
        "--spool",
        "/var/lib/hero_usage/queue",
        "--forgejo-url",
        "https://f.example.org",
        "--ca-file",
        "/home/ops/forge-ca.pem",
    ]));
    out.exit(0);
    let units = stdout(&out);
    assert!(
        units.contains("--ca-file /home/ops/forge-ca.pem"),
        "{units}"
    );
    // The sandbox hides /home unless a path the job reads is there.
    assert!(units.contains("ProtectHome=read-only"), "{units}");
    assert!(!units.contains("ProtectHome=yes"), "{units}");
    // So does a signing key only the config file names: the units carry
    // the config, not the key, and must still see the key's home.
    let config = env.path("hero_usage.toml");
    std::fs::write(&config, "signing_key_file = \"/home/ops/node_key\"\n").unwrap();
    let out = run(env
        .cmd("hero_usage_push")
        .args([
            "--print-schedule",
            "systemd",
            "--service-user",
            "hero-usage",
        ])
        .args(["--spool", "/var/lib/hero_usage/queue", "--config"])
        .arg(&config));
    out.exit(0);
    let units = stdout(&out);
    assert!(!units.contains("--signing-key-file"), "{units}");
    assert!(units.contains("ProtectHome=read-only"), "{units}");
    assert!(!units.contains("ProtectHome=yes"), "{units}");
}
