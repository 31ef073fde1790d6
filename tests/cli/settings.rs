//! Settings: each one's precedence (flag > environment > config file >
//! default) as `--check` lists it, and what `--check` must not approve
//! silently: a node name that is the host name by default, `~/` in config
//! paths, `insecure_http` in the config file (accepted, and shown).

use crate::support::forge::{Node, start};
use crate::support::{Run, print_system_units, run, status_json, stdout};

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
    let out = run(print_system_units(&env).args([
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
    let out = run(print_system_units(&env).arg("--config").arg(&config));
    out.exit(0);
    let units = stdout(&out);
    assert!(!units.contains("--signing-key-file"), "{units}");
    assert!(units.contains("ProtectHome=read-only"), "{units}");
    assert!(!units.contains("ProtectHome=yes"), "{units}");
}

/// Where one setting can come from, highest first.
enum Layer {
    /// A flag and its value (none: a switch).
    Flag(&'static str, Option<String>),
    Env(&'static str, String),
    /// A line of the config file.
    Config(String),
}

/// A setting's name, its layers (highest first, each with the value
/// `--check` shows for it) and what it shows with none.
type Layered = (&'static str, Vec<(Layer, String)>, &'static str);

/// The row `push --check` prints for `name`: (source, value).
fn check_row(text: &str, name: &str) -> (String, String) {
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no {name} row in:\n{text}"));
    let mut words = line.split_whitespace().skip(1);
    let source = words.next().unwrap().to_string();
    (source, words.collect::<Vec<_>>().join(" "))
}

/// Every setting `push --check` lists, peeled layer by layer: with every
/// layer given the highest wins; without it the next; without any, the
/// default. Config paths given as `~/...` are under the home directory. (`spool` and `node`: status.rs's
/// `settings_come_from_flag_then_environment_then_config_then_default`.)
#[test]
fn every_forge_setting_is_flag_then_environment_then_config_then_default() {
    let env = crate::support::TestEnv::new();
    let p = |name: &str| env.path(name).display().to_string();
    let url = |who: &str| format!("http://127.0.0.1:{}/{who}", crate::support::closed_port());
    let (u1, u2, u3) = (url("flag"), url("env"), url("config"));
    let (t1, t2) = (p("t-flag"), p("t-envfile"));
    // Config paths start with `~/`: the home directory.
    let home = env.home.display().to_string();
    let flag = |f: &'static str, v: &str| Layer::Flag(f, Some(v.to_string()));
    let cfg = |key: &str, v: &str| Layer::Config(format!("{key} = {v:?}"));
    let rows: Vec<Layered> = vec![
        (
            "forgejo_url",
            vec![
                (flag("--forgejo-url", &u1), u1.clone()),
                (Layer::Env("HERO_USAGE_FORGEJO_URL", u2.clone()), u2.clone()),
                (cfg("forgejo_url", &u3), u3.clone()),
            ],
            "(not set)",
        ),
        (
            "token",
            vec![
                (flag("--token-file", &t1), format!("file {t1}")),
                (
                    Layer::Env("HERO_USAGE_FORGEJO_TOKEN", "a-secret-value".into()),
                    "the value of HERO_USAGE_FORGEJO_TOKEN".into(),
                ),
                (
                    Layer::Env("HERO_USAGE_FORGEJO_TOKEN_FILE", t2.clone()),
                    format!("file {t2}"),
                ),
                (
                    cfg("token_file", "~/t-config"),
                    format!("file {home}/t-config"),
                ),
            ],
            "(not set)",
        ),
        (
            "repo",
            vec![
                (flag("--repo", "o/flag"), "o/flag".into()),
                (
                    Layer::Env("HERO_USAGE_REPO", "o/env".into()),
                    "o/env".into(),
                ),
                (cfg("repo", "o/config"), "o/config".into()),
            ],
            "lhumina_code/hero_onboarding_billing",
        ),
        (
            "branch",
            vec![
                (flag("--branch", "b-flag"), "b-flag".into()),
                (
                    Layer::Env("HERO_USAGE_BRANCH", "b-env".into()),
                    "b-env".into(),
                ),
                (cfg("branch", "b-config"), "b-config".into()),
            ],
            "(the repository's default branch)",
        ),
        (
            "ca_file",
            vec![
                (flag("--ca-file", &p("ca-flag")), p("ca-flag")),
                (Layer::Env("HERO_USAGE_CA_FILE", p("ca-env")), p("ca-env")),
                (cfg("ca_file", "~/ca-config"), format!("{home}/ca-config")),
            ],
            "(the system's trust store)",
        ),
        (
            "insecure_http",
            vec![
                (Layer::Flag("--insecure-http", None), "true".into()),
                (Layer::Config("insecure_http = true".into()), "true".into()),
            ],
            "false",
        ),
        (
            "signing_key_file",
            vec![
                (flag("--signing-key-file", &p("k-flag")), p("k-flag")),
                (
                    Layer::Env("HERO_USAGE_SIGNING_KEY_FILE", p("k-env")),
                    p("k-env"),
                ),
                (
                    cfg("signing_key_file", "~/k-config"),
                    format!("{home}/k-config"),
                ),
            ],
            "(none: hour files go unsigned)",
        ),
    ];
    let config = env.path("hero_usage.toml");
    for (name, layers, default) in &rows {
        for skip in 0..=layers.len() {
            let mut c = env.cmd("hero_usage_push");
            c.arg("--check").env("HERO_USAGE_CONFIG", &config);
            let mut file = String::new();
            for (layer, _) in &layers[skip..] {
                match layer {
                    Layer::Flag(f, v) => {
                        c.arg(f).args(v);
                    }
                    Layer::Env(var, v) => {
                        c.env(var, v);
                    }
                    Layer::Config(line) => file = format!("{line}\n"),
                }
            }
            std::fs::write(&config, &file).unwrap();
            let out = run(&mut c);
            let expected = match layers.get(skip) {
                Some((Layer::Flag(..), v)) => ("flag", v.as_str()),
                Some((Layer::Env(..), v)) => ("env", v.as_str()),
                Some((Layer::Config(_), v)) => ("config", v.as_str()),
                None => ("default", *default),
            };
            let got = check_row(&stdout(&out), name);
            assert_eq!(
                (got.0.as_str(), got.1.as_str()),
                expected,
                "{name} without its {skip} highest layers:\n{}",
                stdout(&out)
            );
            assert!(!stdout(&out).contains("a-secret-value"), "a secret shown");
        }
    }
    // The config file itself: --config, then HERO_USAGE_CONFIG, then
    // $HOME/hero/cfg/hero_usage.toml if it exists, else none.
    let default = env.home.join("hero/cfg/hero_usage.toml");
    std::fs::create_dir_all(default.parent().unwrap()).unwrap();
    for f in [&config, &default] {
        std::fs::write(f, "").unwrap();
    }
    let other = env.path("other.toml");
    std::fs::write(&other, "").unwrap();
    let row_of =
        |c: &mut std::process::Command| check_row(&stdout(&run(c.arg("--check"))), "config");
    let shown = |p: &std::path::Path| p.display().to_string();
    let got = row_of(
        env.cmd("hero_usage_push")
            .args(["--config", &shown(&other)])
            .env("HERO_USAGE_CONFIG", &config),
    );
    assert_eq!(got, ("flag".into(), shown(&other)));
    let got = row_of(env.cmd("hero_usage_push").env("HERO_USAGE_CONFIG", &config));
    assert_eq!(got, ("env".into(), shown(&config)));
    let got = row_of(&mut env.cmd("hero_usage_push"));
    assert_eq!(got, ("default".into(), shown(&default)));
    std::fs::remove_file(&default).unwrap();
    let got = row_of(&mut env.cmd("hero_usage_push"));
    assert_eq!(got, ("default".into(), "(not set)".into()));
}

/// The shim's own settings, flag > environment > config file, each seen
/// in the refusal it causes (nothing is bound): a listen address that is
/// not loopback, an admin secret file that is not there.
#[test]
fn the_shims_settings_are_flag_then_environment_then_config() {
    let env = crate::support::TestEnv::new();
    let config = env.path("hero_usage.toml");
    std::fs::write(
        &config,
        "listen = \"192.0.2.3:3\"\nadmin_secret_file = \"/config/secret\"\n",
    )
    .unwrap();
    let shim = || {
        let mut c = env.cmd("hero_usage_shim");
        c.env("HERO_USAGE_CONFIG", &config);
        c
    };
    let refused = |addr: &str| format!("listen address `{addr}` is not loopback");
    let out = run(shim()
        .env("HERO_USAGE_LISTEN", "192.0.2.2:2")
        .args(["--listen", "192.0.2.1:1"]));
    out.exit(78).stderr_has(&refused("192.0.2.1:1"));
    let out = run(shim().env("HERO_USAGE_LISTEN", "192.0.2.2:2"));
    out.exit(78).stderr_has(&refused("192.0.2.2:2"));
    let out = run(&mut shim());
    out.exit(78).stderr_has(&refused("192.0.2.3:3"));
    // Past the address (a loopback one, taken: should the secret be found
    // the bind fails, the shim never runs on): where the secret is read.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = listener.local_addr().unwrap().to_string();
    let missing = |path: &str| format!("cannot read admin secret file {path}:");
    let shim = || {
        let mut c = shim();
        c.args(["--listen", &taken]);
        c
    };
    let out = run(shim()
        .env("HERO_ONBOARDING_ADMIN_SECRET_FILE", "/env/secret")
        .args(["--admin-secret-file", "/flag/secret"]));
    out.exit(78).stderr_has(&missing("/flag/secret"));
    let out = run(shim().env("HERO_ONBOARDING_ADMIN_SECRET_FILE", "/env/secret"));
    out.exit(78).stderr_has(&missing("/env/secret"));
    let out = run(&mut shim());
    out.exit(78).stderr_has(&missing("/config/secret"));
    drop(listener);
}
