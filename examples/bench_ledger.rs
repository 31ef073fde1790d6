//! Ledger benchmark (run by `scripts/bench_ledger.sh`, release build): grows
//! a ledger to each size given, and at each prints bytes per key on disk,
//! lookup latency (hit and miss, p50/p99, a fresh handle per lookup as one
//! `hero_usage_record` call has) and append throughput (batches of 1000, as
//! a pruning run appends, each fsynced).
//! Usage: bench_ledger DIR SIZE...

use hero_usage::record::{UsageRecord, UtcSecond};
use hero_usage::spool::{Ledger, LedgerEntry};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

fn record(i: u64) -> UsageRecord {
    UsageRecord {
        amount_cents: i % 10_000,
        description: format!("bench record {i}"),
        idempotency_key: format!("bench-key-{i}"),
        node_id: "bench-node".into(),
        occurred_at: UtcSecond::parse("2026-11-26 16:04:05").expect("valid"),
        resource_kind: "cpu_hours".into(),
        user_sid: "0a1b".into(),
    }
}

fn entries(from: u64, to: u64) -> Vec<LedgerEntry> {
    (from..to)
        .map(|i| LedgerEntry::of(&record(i), 20_000))
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

/// p50 and p99 in µs of `n` lookups of keys `key(j)`, each with a fresh handle.
fn lookups(dir: &Path, n: u64, key: impl Fn(u64) -> String, expect: bool) -> (f64, f64) {
    let mut times = Vec::with_capacity(n as usize);
    for j in 0..n {
        let k = key(j);
        let t = Instant::now();
        let found = Ledger::open(dir.to_path_buf()).find(&k).expect("lookup");
        times.push(t.elapsed());
        assert_eq!(found.is_some(), expect, "{k}");
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

fn allocated(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.blocks() * 512)
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(&args[1]).join("ledger");
    let sizes: Vec<u64> = args[2..]
        .iter()
        .map(|s| s.parse().expect("a size"))
        .collect();
    println!(
        "{:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12} {:>10}",
        "keys",
        "B/key",
        "alloc/key",
        "hit p50",
        "hit p99",
        "miss p50",
        "miss p99",
        "append/s",
        "build s"
    );
    let mut have = 0u64;
    let mut extra = 0u64; // keys appended by the throughput runs
    for size in sizes {
        let t = Instant::now();
        let mut grow = have;
        while grow < size {
            let to = size.min(grow + 2_000_000);
            Ledger::open(dir.clone())
                .append(&entries(grow, to))
                .expect("append");
            grow = to;
        }
        let build = t.elapsed().as_secs_f64();
        have = size;
        let mut ledger = Ledger::open(dir.clone());
        let (bytes, keys) = ledger.size().expect("size");
        let samples = 2000u64;
        let step = (size / samples).max(1);
        let hit = lookups(
            &dir,
            samples.min(size),
            |j| format!("bench-key-{}", (j * step + 7) % size),
            true,
        );
        let miss = lookups(&dir, samples, |j| format!("absent-{size}-{j}"), false);
        // Append throughput: 10 batches of 1000 new keys.
        let t = Instant::now();
        for b in 0..10u64 {
            let from = 1_000_000_000 + extra + b * 1000;
            Ledger::open(dir.clone())
                .append(&entries(from, from + 1000))
                .expect("append");
        }
        extra += 10_000;
        let rate = 10_000.0 / t.elapsed().as_secs_f64();
        println!(
            "{:>10} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>12.0} {:>10.1}",
            keys,
            bytes as f64 / keys as f64,
            allocated(&dir) as f64 / keys as f64,
            hit.0,
            hit.1,
            miss.0,
            miss.1,
            rate,
            build
        );
    }
    println!("(latencies in µs; B/key: file lengths; alloc/key: blocks allocated)");
}
