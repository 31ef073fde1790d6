//! Load generator for `hero_usage_shim` (run by `scripts/bench_shim.sh`,
//! release build): CLIENTS threads send requests for SECONDS, each waiting
//! for its answer before the next, and one JSON line sums it up: requests,
//! answers by status, requests/s, p50/p99 latency (connect to last byte).
//! Usage: shim_load ADDR healthz|record CLIENTS SECONDS [close|keep-alive] [TAG]
//! `record` sends unique keys (TAG-client-n) with the secret from
//! HERO_ONBOARDING_ADMIN_SECRET; `close` (the default) opens a connection
//! per request, `keep-alive` reuses one per client.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

struct Tally {
    latencies: Vec<Duration>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: shim_load ADDR healthz|record CLIENTS SECONDS [close|keep-alive] [TAG]");
        std::process::exit(64);
    }
    let addr = args[1].clone();
    let record = args[2] == "record";
    let clients: usize = args[3].parse().expect("CLIENTS");
    let seconds: f64 = args[4].parse().expect("SECONDS");
    let keep_alive = args.get(5).is_some_and(|m| m == "keep-alive");
    let tag = args.get(6).cloned().unwrap_or_else(|| "load".into());
    let secret = std::env::var("HERO_ONBOARDING_ADMIN_SECRET").unwrap_or_default();
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(seconds);
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (addr, secret, tag) = (addr.clone(), secret.clone(), tag.clone());
            std::thread::spawn(move || {
                client(
                    &addr,
                    record,
                    keep_alive,
                    &secret,
                    &format!("{tag}-{c}"),
                    until,
                )
            })
        })
        .collect();
    let mut all = Tally {
        latencies: Vec::new(),
        statuses: BTreeMap::new(),
        errors: 0,
    };
    for t in threads {
        let t = t.join().expect("client thread");
        all.latencies.extend(t.latencies);
        for (s, n) in t.statuses {
            *all.statuses.entry(s).or_default() += n;
        }
        all.errors += t.errors;
    }
    let secs = start.elapsed().as_secs_f64();
    all.latencies.sort();
    let pct = |p: f64| {
        let n = all.latencies.len();
        if n == 0 {
            return 0.0;
        }
        let i = ((n as f64 * p).ceil() as usize).clamp(1, n) - 1;
        all.latencies[i].as_secs_f64() * 1000.0
    };
    let ok = if record {
        all.statuses.get(&201).copied().unwrap_or(0)
    } else {
        all.statuses.get(&200).copied().unwrap_or(0)
    };
    let statuses: Vec<String> = all
        .statuses
        .iter()
        .map(|(s, n)| format!("\"{s}\":{n}"))
        .collect();
    println!(
        "{{\"clients\":{clients},\"requests\":{},\"ok\":{ok},\"ok_per_s\":{:.0},\"p50_ms\":{:.3},\
         \"p99_ms\":{:.3},\"errors\":{},\"statuses\":{{{}}},\"seconds\":{secs:.2}}}",
        all.latencies.len(),
        ok as f64 / secs,
        pct(0.50),
        pct(0.99),
        all.errors,
        statuses.join(",")
    );
}

fn client(
    addr: &str,
    record: bool,
    keep_alive: bool,
    secret: &str,
    prefix: &str,
    until: Instant,
) -> Tally {
    let mut t = Tally {
        latencies: Vec::new(),
        statuses: BTreeMap::new(),
        errors: 0,
    };
    let mut conn: Option<TcpStream> = None;
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let request = if record {
            let body = format!(
                "{{\"idempotency_key\":\"{prefix}-{n}\",\"user_sid\":\"0a1b\",\"amount_cents\":{n},\
                 \"resource_kind\":\"cpu_hours\",\"occurred_at\":\"2026-11-26 10:00:00\"}}"
            );
            format!(
                "POST /record_usage HTTP/1.1\r\nHost: shim\r\nX-Hero-Onboarding-Admin-Secret: \
                 {secret}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n{body}",
                body.len(),
                if keep_alive {
                    ""
                } else {
                    "Connection: close\r\n"
                }
            )
        } else {
            format!(
                "GET /healthz HTTP/1.1\r\nHost: shim\r\n{}\r\n",
                if keep_alive {
                    ""
                } else {
                    "Connection: close\r\n"
                }
            )
        };
        let sent = Instant::now();
        match exchange(&mut conn, addr, request.as_bytes()) {
            Ok((status, open)) => {
                t.latencies.push(sent.elapsed());
                *t.statuses.entry(status).or_default() += 1;
                if !(keep_alive && open) {
                    conn = None;
                }
            }
            Err(_) => {
                t.errors += 1;
                conn = None;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    t
}

/// One request and its answer; returns the status and whether the server
/// keeps the connection open.
fn exchange(
    conn: &mut Option<TcpStream>,
    addr: &str,
    request: &[u8],
) -> std::io::Result<(u16, bool)> {
    if conn.is_none() {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        *conn = Some(s);
    }
    let s = conn.as_mut().expect("connected");
    s.write_all(request)?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + length {
            return Ok((status, !head.contains("connection: close")));
        }
    }
}
