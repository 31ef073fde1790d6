#!/usr/bin/env bash
# Benchmark the spool's ledger (release build): bytes per key on disk, lookup
# latency (hit and miss, p50/p99) and append throughput at each size.
# Usage: scripts/bench_ledger.sh [SIZE...]   (default: 10000 1000000 10000000)
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10000 1000000 10000000)
cargo build --release --quiet --example bench_ledger
work=$(mktemp -d -p "$PWD/target" bench_ledger.XXXXXX)
trap 'rm -rf "$work"' EXIT
target/release/examples/bench_ledger "$work" "${sizes[@]}"
