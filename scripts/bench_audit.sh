#!/usr/bin/env bash
# Benchmark hero_usage_audit (release build) on a synthetic billing
# repository: NODES nodes x HOURS hours x RECORDS records, one commit per
# node-hour on per-node branches usage/<node> (plus a README on main), made
# once with git fast-import and cached. The audit reads a local bare clone.
# Prints the head checks + totals time, the full run with the history walk,
# peak memory of each, beside `git rev-list --count --all` and a
# `git cat-file --batch-all-objects --batch` read of the same repository;
# then, on a copy: the full run with --state, one more hour committed for
# every node, the incremental run with --state; and last a 512 MiB hour
# file of zeros on one node's branch (never read: peak memory stays flat).
# Goals (issue 18, 100 x 720 x 100): full audit within 60 s and 512 MiB,
# incremental within 2 s, the zero blob within 64 MiB above the full run.
# Run it with nice -n 19 on a shared machine.
# Usage: scripts/bench_audit.sh [NODES] [HOURS] [RECORDS]   (default 100 720 100)
# The cache lives in $BENCH_AUDIT_CACHE (default target/bench_audit).
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=${1:-100}
hours=${2:-720}
records=${3:-100}

cargo build --release --quiet --bin hero_usage_audit
audit=$PWD/target/release/hero_usage_audit
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
cache=${BENCH_AUDIT_CACHE:-$PWD/target/bench_audit}
src=$cache/src-$nodes-$hours-$records.git
bare=$cache/bare-$nodes-$hours-$records.git
mkdir -p "$cache"

if [ ! -f "$src/done" ]; then
    rm -rf "$src" "$bare"
    git init -q --bare -b main "$src"
    start=$(date +%s)
    # The stream: canonical hour files exactly as hero_usage_push renders them.
    python3 - "$nodes" "$hours" "$records" <<'PY' | git -C "$src" fast-import --quiet --done
import sys, datetime
nodes, hours, records = map(int, sys.argv[1:4])
out = sys.stdout.buffer
t0 = datetime.datetime(2026, 10, 1)
stamp = 1790000000
def data(b):
    out.write(b"data %d\n" % len(b)); out.write(b); out.write(b"\n")
out.write(b"commit refs/heads/main\nauthor Admin <admin@example.org> %d +0000\n" % stamp)
out.write(b"committer Admin <admin@example.org> %d +0000\n" % stamp)
data(b"README"); out.write(b"M 100644 inline README\n"); data(b"billing\n")
kinds = ["cpu_hours", "gpu_hours", "storage_gb"]
for n in range(nodes):
    node = "node-%03d" % n
    who = b"hero_usage_push on %s <%s@hero-usage.invalid>" % (node.encode(), node.encode())
    first = True
    for h in range(hours):
        hour = t0 + datetime.timedelta(hours=h)
        parts = []
        for i in range(records):
            at = hour + datetime.timedelta(seconds=i * (3600 // records))
            parts.append(
                "[[records]]\namount_cents = %d\ndescription = \"bench %d\"\n"
                "idempotency_key = \"%s-%s-%04d\"\nnode_id = \"%s\"\noccurred_at = \"%s\"\n"
                "resource_kind = \"%s\"\nuser_sid = \"u%03d\"\n"
                % ((i * 37 + h) % 5000, i, node, hour.strftime("%Y%m%d%H"), i, node,
                   at.strftime("%Y-%m-%d %H:%M:%S"), kinds[i % 3], (i * 7 + h + n) % 1000))
        body = ("O:\n" + "\n".join(parts)).encode()
        name = "nodes/%s/usage_%s.otoml" % (node, hour.strftime("%Y-%m-%d-%H"))
        out.write(b"commit refs/heads/usage/%s\n" % node.encode())
        out.write(b"author %s %d +0000\ncommitter %s %d +0000\n" % (who, stamp + h, who, stamp + h))
        data(b"%s: %d records" % (node.encode(), records))
        if first:
            out.write(b"from 0000000000000000000000000000000000000000\n")
            first = False
        out.write(b"M 100644 inline %s\n" % name.encode())
        data(body)
out.write(b"done\n")
PY
    git -C "$src" symbolic-ref HEAD refs/heads/main
    touch "$src/done"
    echo "built $src in $(( $(date +%s) - start )) s ($(du -sh "$src" | cut -f1))"
fi
if [ ! -d "$bare" ]; then
    git clone -q --mirror --no-local "$src" "$bare"
fi

timed() { # label, command...: wall and CPU (user+sys) seconds and peak RSS from /usr/bin/time
    local label=$1; shift
    local log; log=$(mktemp)
    /usr/bin/time -v "$@" >"$log.out" 2>"$log" || true
    local wall rss user sys
    wall=$(grep "Elapsed (wall clock)" "$log" | awk '{print $NF}')
    user=$(grep "User time" "$log" | awk '{print $NF}')
    sys=$(grep "System time" "$log" | awk '{print $NF}')
    rss=$(grep "Maximum resident set size" "$log" | awk '{print $NF}')
    printf '%-48s %10s %9.2f %8d MiB\n' "$label" "$wall" "$(awk -v u="$user" -v s="$sys" 'BEGIN{print u+s}')" $((rss / 1024))
    grep -E '^(read|violations|state):' "$log.out" | sed 's/^/    /' | cut -c1-110 || true
    rm -f "$log" "$log.out"
}

echo "repository: $nodes nodes x $hours hours x $records records = $((nodes * hours * records)) records, $((nodes * hours)) files"
printf '%-48s %10s %9s %12s\n' "what" "wall" "CPU s" "peak RSS"
echo "(wall is what the machine gave; CPU is user+sys, the figure to compare on a shared machine)"
timed "git rev-list --count --all" git -C "$bare" rev-list --count --all
timed "git cat-file --batch-all-objects --batch" sh -c "git -C '$bare' cat-file --batch-all-objects --batch >/dev/null; echo read all objects"
timed "audit: head checks + totals (--no-history)" "$audit" --git-dir "$bare" --no-history --totals day
timed "audit: full, with history walk" "$audit" --git-dir "$bare" --totals day

# Incremental: a copy of the repository, a first run with --state, one more
# hour for every node (one commit each on its branch), the run after it.
inc=$cache/inc-$nodes-$hours-$records.git
state=$cache/state-$nodes-$hours-$records
rm -rf "$inc" "$state"
cp -a "$bare" "$inc"
timed "audit: full, --state (first run)" "$audit" --git-dir "$inc" --state "$state"
python3 - "$nodes" "$hours" "$records" <<'PY' | git -C "$inc" fast-import --quiet --done
import sys, datetime
nodes, hours, records = map(int, sys.argv[1:4])
out = sys.stdout.buffer
hour = datetime.datetime(2026, 10, 1) + datetime.timedelta(hours=hours)
stamp = 1790000000 + hours
for n in range(nodes):
    node = "node-%03d" % n
    who = b"hero_usage_push on %s <%s@hero-usage.invalid>" % (node.encode(), node.encode())
    parts = []
    for i in range(records):
        at = hour + datetime.timedelta(seconds=i * (3600 // records))
        parts.append(
            "[[records]]\namount_cents = %d\ndescription = \"bench %d\"\n"
            "idempotency_key = \"%s-%s-%04d\"\nnode_id = \"%s\"\noccurred_at = \"%s\"\n"
            "resource_kind = \"cpu_hours\"\nuser_sid = \"u%03d\"\n"
            % (i, i, node, hour.strftime("%Y%m%d%H"), i, node, at.strftime("%Y-%m-%d %H:%M:%S"), i % 1000))
    body = ("O:\n" + "\n".join(parts)).encode()
    out.write(b"commit refs/heads/usage/%s\n" % node.encode())
    out.write(b"author %s %d +0000\ncommitter %s %d +0000\n" % (who, stamp, who, stamp))
    out.write(b"data 5\nhour\n\n")
    out.write(b"from refs/heads/usage/%s^0\n" % node.encode())
    name = "nodes/%s/usage_%s.otoml" % (node, hour.strftime("%Y-%m-%d-%H"))
    out.write(b"M 100644 inline %s\ndata %d\n" % (name.encode(), len(body)))
    out.write(body); out.write(b"\n")
out.write(b"done\n")
PY
timed "audit: incremental, --state, +1 hour x $nodes nodes" "$audit" --git-dir "$inc" --state "$state"

# A 512 MiB hour file of zeros (a few MB packed) on one node's branch.
python3 - <<'PY' | git -C "$inc" fast-import --quiet --done
import sys
out = sys.stdout.buffer
size = 512 << 20
who = b"hero_usage_push on node-000 <node-000@hero-usage.invalid>"
out.write(b"commit refs/heads/usage/node-000\nauthor %s 1800000000 +0000\ncommitter %s 1800000000 +0000\n" % (who, who))
out.write(b"data 5\nzero\n\nfrom refs/heads/usage/node-000^0\n")
out.write(b"M 100644 inline nodes/node-000/usage_2026-12-31-23.otoml\ndata %d\n" % size)
chunk = bytes(1 << 20)
for _ in range(size >> 20):
    out.write(chunk)
out.write(b"\ndone\n")
PY
timed "audit: full, with a 512 MiB zero blob" "$audit" --git-dir "$inc"
rm -rf "$inc" "$state"
