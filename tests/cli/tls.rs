//! TLS to the forge: a real TLS server (a proxy in front of the test forge)
//! whose certificate comes from a private CA made here with openssl(1). The
//! operating system's store does not know that CA: a push says so, exits
//! 78 naming --ca-file, and works once the CA is given (flag, environment,
//! config file) or is in the store (SSL_CERT_FILE, as curl reads it). TLS
//! spoken to a plain-HTTP port is 78 too; refused and unknown hosts stay 75
//! with their likely fix named.

use crate::support::forge::{Node, start};
use crate::support::{Run, closed_port, record, run, stderr, stdout};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// A private CA and a server certificate it issued for 127.0.0.1 and
/// localhost, as PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let p = |name: &str| dir.join(name);
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl(1) installed");
            assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec![
            "req",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=hero_usage test CA",
        ];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
        ca.extend(["-addext", "basicConstraints=critical,CA:TRUE"]);
        ca.extend(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
        openssl(&ca);
        let mut csr = vec!["req", "-subj", "/CN=localhost", "-keyout", "server.key"];
        csr.extend(ec);
        csr.extend(["-out", "server.csr"]);
        openssl(&csr);
        std::fs::write(
            p("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]);
        Pki {
            ca: p("ca.pem"),
            cert: p("server.pem"),
            key: p("server.key"),
        }
    }
}

/// A TLS proxy on loopback in front of `upstream` (plain HTTP), with the
/// certificate of `pki`. Its threads end with the test process.
fn tls_proxy(pki: &Pki, upstream: SocketAddr) -> SocketAddr {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&pki.key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || relay(client, upstream, config));
        }
    });
    addr
}

/// Relay one connection: TLS from the client, plain to the forge. Short
/// read timeouts let one thread serve both directions.
fn relay(mut client: TcpStream, upstream: SocketAddr, config: Arc<rustls::ServerConfig>) {
    let Ok(mut forge) = TcpStream::connect(upstream) else {
        return;
    };
    let tick = Some(Duration::from_millis(2));
    let (Ok(()), Ok(())) = (client.set_read_timeout(tick), forge.set_read_timeout(tick)) else {
        return;
    };
    let mut tls = rustls::ServerConnection::new(config).unwrap();
    let idle = |e: &std::io::Error| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tls.read_tls(&mut client) {
            Ok(0) => return,
            Ok(_) => {
                if tls.process_new_packets().is_err() {
                    // A client that refused our certificate: tell it, stop.
                    let _ = tls.write_tls(&mut client);
                    return;
                }
            }
            Err(e) if idle(&e) => {}
            Err(_) => return,
        }
        loop {
            match tls.reader().read(&mut buf) {
                Ok(0) => return,
                Ok(n) if forge.write_all(&buf[..n]).is_ok() => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                _ => return,
            }
        }
        match forge.read(&mut buf) {
            Ok(0) => {
                tls.send_close_notify();
                let _ = tls.write_tls(&mut client);
                return;
            }
            Ok(n) => tls.writer().write_all(&buf[..n]).unwrap(),
            Err(e) if idle(&e) => {}
            Err(_) => return,
        }
        while tls.wants_write() {
            if tls.write_tls(&mut client).is_err() {
                return;
            }
        }
    }
}

/// A node that talks to `url`, with one record pending.
fn node_at(forge: &hero_usage_test_forge::TestForge, url: &str) -> Node {
    let mut node = Node::new(forge);
    node.url = url.to_string();
    record(&node.env, "tls-1");
    node
}

#[test]
fn a_private_ca_is_78_naming_ca_file_until_it_is_given() {
    let forge = start();
    let node = node_at(&forge, "");
    let pki = Pki::new(node.env.dir.path());
    let url = format!("https://127.0.0.1:{}", tls_proxy(&pki, forge.addr()).port());
    let node = Node { url, ..node };

    // The system's store does not know the CA: configuration, not an outage.
    let out = node.push(&[]);
    out.exit(78);
    let err = stderr(&out);
    assert!(err.contains("--ca-file"), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert_eq!(node.pending(), 1);
    let out = run(node.push_cmd().arg("--check"));
    out.exit(78);
    let text = stdout(&out);
    let fail = text.lines().find(|l| l.starts_with("FAIL")).unwrap();
    assert!(fail.contains("--ca-file"), "{text}");
    assert!(
        text.contains("ca_file          default   (the system's trust store)"),
        "{text}"
    );

    // The CA given: by flag, the push goes through.
    let ca = pki.ca.display().to_string();
    run(node.push_cmd().args(["--check", "--ca-file", &ca])).exit(0);
    node.push(&["--ca-file", &ca]).exit(0);
    assert_eq!(node.pending(), 0);

    // By environment, by config file (relative to it), and the OS store
    // itself (SSL_CERT_FILE, as curl and openssl read it).
    record(&node.env, "tls-2");
    run(node.push_cmd().env("HERO_USAGE_CA_FILE", &pki.ca)).exit(0);
    record(&node.env, "tls-3");
    let config = node.env.dir.path().join("hero_usage.toml");
    std::fs::write(&config, "ca_file = \"ca.pem\"\n").unwrap();
    let out = run(node
        .push_cmd()
        .arg("--check")
        .env("HERO_USAGE_CONFIG", &config));
    out.exit(0);
    assert!(
        stdout(&out).contains(&format!("ca_file          config    {ca}")),
        "{}",
        stdout(&out)
    );
    run(node.push_cmd().env("HERO_USAGE_CONFIG", &config)).exit(0);
    record(&node.env, "tls-4");
    run(node.push_cmd().env("SSL_CERT_FILE", &pki.ca)).exit(0);
    assert_eq!(node.pending(), 0);

    // A CA file that holds no certificate is named as such.
    let out = node.push(&["--ca-file", &pki.key.display().to_string()]);
    out.exit(78);
    let err = stderr(&out);
    assert!(err.contains("holds no certificate"), "{err}");
}

/// A plain-HTTP server as Forgejo's (Go's net/http) or nginx is: what is
/// not an HTTP request, such as a TLS hello, gets a 400 at once.
fn plain_http_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.read(&mut [0u8; 4096]);
            let _ = conn.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    addr
}

#[test]
fn https_to_a_plain_http_port_is_78_naming_http_vs_https() {
    let forge = start();
    let url = format!("https://127.0.0.1:{}", plain_http_port().port());
    let node = node_at(&forge, &url);
    let out = node.push(&[]);
    out.exit(78);
    let err = stderr(&out);
    assert!(err.contains("does not speak TLS on that port"), "{err}");
    assert!(err.contains("http://"), "{err}");
    assert_eq!(node.pending(), 1);
    let out = run(node.push_cmd().arg("--check"));
    out.exit(78);
    assert!(
        stdout(&out).contains("does not speak TLS"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn refused_and_unknown_hosts_stay_75_with_their_fix_named() {
    let forge = start();
    let port = closed_port();
    let node = node_at(&forge, &format!("http://127.0.0.1:{port}"));
    let out = node.push(&["--retry-seconds", "0"]);
    out.exit(75);
    assert!(
        stderr(&out).contains("is the forge running, and is the port"),
        "{}",
        stderr(&out)
    );
    let out = run(node.push_cmd().arg("--check"));
    out.exit(75);
    assert!(
        stdout(&out).contains("connection refused"),
        "{}",
        stdout(&out)
    );

    let node = Node {
        url: "https://no-such-host.invalid".into(),
        ..node
    };
    let out = node.push(&["--retry-seconds", "0"]);
    out.exit(75);
    assert!(
        stderr(&out).contains("does not resolve"),
        "{}",
        stderr(&out)
    );
    let out = run(node.push_cmd().arg("--check"));
    out.exit(75);
    assert!(stdout(&out).contains("DNS"), "{}", stdout(&out));
    assert_eq!(node.pending(), 1);
}
