#!/usr/bin/env bash
# Benchmark hero_usage_shim (release build) against an older commit's shim,
# both measured in this one run with the same load generator
# (examples/shim_load.rs), interleaved so that load on the machine hits
# them alike. Prints: GET /healthz requests/s with 16 clients (the HTTP
# path's ceiling), durable records/s (201 answers) with 1, 16 and 64
# clients, p50/p99 latency, peak RSS of each shim, and the goals' ratios.
# Usage: scripts/bench_shim.sh [SECONDS] [BASE]
#   SECONDS: length of each measurement (default 5)
#   BASE:    the commit to compare with (default c5c63dd, before issue 19)
# The spools live on tmpfs (/dev/shm) when it is there, as the issue's
# figures were taken: the table measures the shim, not this machine's
# disk; one extra pair of rows repeats 16 clients on the disk (target/).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
base=${2:-c5c63dd}
root=$PWD

work=$(mktemp -d -p "$root/target" bench-shim.XXXXXX)
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    fast=$(mktemp -d -p /dev/shm hero-usage-bench.XXXXXX)
else
    fast=$work/fast
fi
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    git -C "$root" worktree remove --force "$work/base-src" 2>/dev/null || true
    rm -rf "$work" "$fast"
}
trap cleanup EXIT

# The base's shim, built in a scratch worktree of that commit (the same
# target dir, so that the dependencies are built once) and kept in
# target/bench/ for the next run.
base_bin=$root/target/bench/shim-$(git rev-parse "$base^{commit}")
if [ ! -x "$base_bin" ]; then
    git worktree add -q --detach "$work/base-src" "$base"
    (cd "$work/base-src" && CARGO_TARGET_DIR="$root/target" nice -n 19 \
        cargo build --release --quiet --bin hero_usage_shim)
    mkdir -p "$root/target/bench"
    cp target/release/hero_usage_shim "$base_bin"
    git worktree remove --force "$work/base-src"
fi
cp "$base_bin" "$work/base_shim"
# (Built after the base, whose build replaced target/release's binary.)
nice -n 19 cargo build --release --quiet --bin hero_usage_shim --example shim_load
cp target/release/hero_usage_shim "$work/new_shim"
load=$root/target/release/examples/shim_load

export HERO_ONBOARDING_ADMIN_SECRET=bench-secret-value
# start NAME SPOOL: start a shim, remember its pid and address.
declare -A addr pid
start() {
    local name=$1 spool=$2
    nice -n 19 "$work/${name%%@*}_shim" --listen 127.0.0.1:0 --spool "$spool" --node bench \
        >"$work/$name.out" 2>/dev/null &
    pid[$name]=$!
    pids+=("$!")
    for _ in $(seq 100); do
        grep -q '^listening on' "$work/$name.out" 2>/dev/null && break
        sleep 0.05
    done
    addr[$name]=$(sed -n 's|^listening on http://||p' "$work/$name.out")
    [ -n "${addr[$name]}" ] || { echo "$name did not start" >&2; exit 1; }
}
start base "$fast/base"
start new "$fast/new"
start base@disk "$work/base-disk"
start new@disk "$work/new-disk"

declare -A result
# run NAME ROUTE CLIENTS MODE: one measurement, its JSON line kept.
run() {
    local name=$1 route=$2 clients=$3 mode=$4
    result[$name/$route/$clients/$mode]=$(nice -n 19 "$load" "${addr[$name]}" "$route" \
        "$clients" "$secs" "$mode" "$route-$clients-$mode")
}
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

scenarios=(
    "healthz 16 close" "healthz 16 keep-alive"
    "record 1 close" "record 16 close" "record 64 close"
    "record 1 keep-alive" "record 16 keep-alive" "record 64 keep-alive"
)
for s in "${scenarios[@]}"; do
    for name in base new; do
        # shellcheck disable=SC2086
        run "$name" $s
    done
done
for name in base@disk new@disk; do
    run "$name" record 16 close
done

rss() { awk '/VmHWM/ {print $2}' "/proc/${pid[$1]}/status"; }
echo "| load (${secs} s each) | $base: per s | p50 ms | p99 ms | now: per s | p50 ms | p99 ms | now / $base |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
row() {
    local label=$1 key=$2 b n
    b=${result[base$key]} n=${result[new$key]}
    python3 - "$label" "$b" "$n" <<'PY'
import json, sys
label, b, n = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
ratio = n["ok_per_s"] / b["ok_per_s"] if b["ok_per_s"] else float("inf")
print(f"| {label} | {b['ok_per_s']:.0f} | {b['p50_ms']:.2f} | {b['p99_ms']:.2f} "
      f"| {n['ok_per_s']:.0f} | {n['p50_ms']:.2f} | {n['p99_ms']:.2f} | {ratio:.2f} |")
for who, r in (("base", b), ("now", n)):
    bad = {k: v for k, v in r["statuses"].items() if k not in ("200", "201")}
    if bad or r["errors"]:
        print(f"|   ({who}: other answers {bad}, connection errors {r['errors']}) | | | | | | | |")
PY
}
for s in "${scenarios[@]}"; do
    read -r route clients mode <<<"$s"
    what="durable records"
    [ "$route" = healthz ] && what="GET /healthz"
    row "$what, $clients clients, $mode" "/$route/$clients/$mode"
done
row "durable records, 16 clients, close, spool on disk" "@disk/record/16/close"
echo "| peak RSS (KiB) | $(rss base) | | | $(rss new) | | | |"

# Every 201 is a record in the spool (and no more than that).
for name in base new; do
    acked=0
    for s in "${scenarios[@]}"; do
        read -r route clients mode <<<"$s"
        [ "$route" = record ] || continue
        acked=$((acked + $(field "${result[$name/$route/$clients/$mode]}" ok)))
    done
    held=$(find "$fast/$name/pending" -type f | wc -l)
    echo "$name: $acked records acknowledged, $held in pending/"
done

python3 - "${result[new/healthz/16/close]}" "${result[new/record/16/close]}" \
    "${result[new/record/16/keep-alive]}" "${result[base/record/1/close]}" \
    "${result[new/record/1/close]}" <<'PY'
import json, sys
ceil, r16, r16ka, b1, n1 = (json.loads(a) for a in sys.argv[1:])
print()
print(f"goal: 16 clients >= 10,000 durable records/s and >= 0.4 of /healthz with 16 clients:")
print(f"  new connection per request: {r16['ok_per_s']:.0f}/s = {r16['ok_per_s'] / ceil['ok_per_s']:.2f} "
      f"of /healthz ({ceil['ok_per_s']:.0f}/s)")
print(f"  kept-alive connections:     {r16ka['ok_per_s']:.0f}/s = {r16ka['ok_per_s'] / ceil['ok_per_s']:.2f} "
      f"of /healthz (new connections)")
print(f"goal: 1 client's p50 at most 1.2 x the base's: {n1['p50_ms']:.3f} ms vs {b1['p50_ms']:.3f} ms "
      f"= {n1['p50_ms'] / b1['p50_ms']:.2f} x")
PY
echo
echo "(machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); fast spools on $(df --output=fstype "$fast" | tail -1))"
