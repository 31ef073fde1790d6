#!/usr/bin/env bash
# Benchmark of hero_usage_push: RECORDS pending records (default 100,000) spread
# over 24 UTC hours, pushed to the test forge on loopback. Prints a table per
# spool layout: wall time of the push against the floor of reading the same
# spool files (`cat` of each file once, warm cache), peak memory (max RSS),
# HTTP requests and commits. Goals: within 3x of the floor, peak memory under
# 128 MiB, as few commits as --max-request-bytes (8 MiB) allows, requests
# proportional to hours, not records.
#
# Two layouts of the same records (man 5 hero_usage_spool):
#   one file per record: what records recorded one by one leave (a
#     hero_usage_record call each); written here directly, in the format
#     hero_usage_record writes, since 100,000 separate calls take minutes;
#   chunk files: what `hero_usage_record --stdin` leaves (1,024 records per
#     file, hard-linked under each record's name).
# The 3x goal is measured on the first: with chunk files the floor reads only
# about a hundred files, far less than the push's own work (OTOML, HTTP, git).
#
# Then a backlog (issue 10): BACKLOG records (default 1,000,000) in chunk
# files, drained by one run in commits of --max-records (100,000): peak RSS
# (goal <= 256 MiB) and wall time against reading the spool, measured as a
# dry run over all of it against a missing repository (it reads, parses,
# merges and renders every record but sends nothing; goal: the push within 3x
# of it). And a run of RECORDS records behind a 1 MiB body limit (the test
# forge's --max-body-bytes, as nginx's default client_max_body_size): the
# requests shrink after the first 413 and the run drains (the RECORDS records
# spread over 48 hours, so that each hour file fits the limit on its own).
# BACKLOG=0 skips the backlog; a test forge without --max-body-bytes skips
# the body limit. PARTS chooses what runs (default "layouts backlog body"):
# PARTS=backlog runs the backlog alone. The honest floor is one read of the
# spool: the backlog table also shows hero_usage_status reading it (it reads
# and parses every pending record once), and the push's ratio against that
# (goal <= 3). A run indexes the spool by each record's key and time lines,
# then each batch parses only its own records: one parse of every record.
# SIGN=1 gives the node a signing key (a fresh ed25519 key): every hour file
# pushed is signed too, one signature per changed file (the same goals hold;
# compare with a run of SIGN=0, the default, which pushes unsigned).
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${RECORDS:-100000}
RUNS=${RUNS:-3}
BACKLOG=${BACKLOG:-1000000}
PARTS=${PARTS:-layouts backlog body}
part() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
cargo build --release --quiet -p hero_usage --bin hero_usage_record --bin hero_usage_push \
    --bin hero_usage_status
cargo build --release --quiet -p hero_usage_test_forge
BIN=target/release
FORGE=${FORGE:-$BIN/hero_usage_test_forge} # another build of the test forge may be named
work=$(mktemp -d)
trap '[ "${forge_pid:-0}" -gt 0 ] && kill "$forge_pid" 2>/dev/null || true; rm -rf "$work"' EXIT

# The signing key (SIGN=1), or none: an empty key setting falls back to the
# default path, so HOME points at the scratch dir, where there is no key.
export HOME=$work
unset HERO_USAGE_SIGNING_KEY_FILE
if [ "${SIGN:-0}" = 1 ]; then
    export HERO_USAGE_SIGNING_KEY_FILE=$work/signing_key
    HERO_NODE_ID=bench-node "$BIN/hero_usage_push" --spool "$work/keyspool" --init-signing-key >/dev/null 2>&1
    echo "signing: every hour file is signed with $HERO_USAGE_SIGNING_KEY_FILE"
fi

# The records: RECORDS over 24 hours ending an hour ago.
# records N HOURS: N records over HOURS hours ending an hour ago, as JSON lines.
records() {
    python3 - "$1" "$(( $(date -u +%s) / 3600 * 3600 - $2 * 3600 ))" "$2" <<'PY'
import sys, datetime
n, start, hours = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    t = datetime.datetime.fromtimestamp(start + (i * hours * 3600) // n, datetime.timezone.utc)
    print('{"idempotency_key":"bench-%d","user_sid":"u%04d","amount_cents":%d,"resource_kind":"cpu_hours","description":"bench record %d","occurred_at":"%s"}'
          % (i, i % 10000, i % 977, i, t.strftime("%Y-%m-%d %H:%M:%S")))
PY
}
if part layouts; then
records "$RECORDS" 24 >"$work/records.jsonl"
# Chunk files: the records through --stdin.
HERO_NODE_ID=bench-node "$BIN/hero_usage_record" --spool "$work/pristine-chunks" --stdin \
    <"$work/records.jsonl" >/dev/null
# One file per record: an empty --stdin run lays the spool out, then each
# record is written as hero_usage_record writes a lone record.
HERO_NODE_ID=bench-node "$BIN/hero_usage_record" --spool "$work/pristine-single" --stdin </dev/null
python3 - "$work/records.jsonl" "$work/pristine-single/pending" <<'PY'
import hashlib, json, os, sys
with open(sys.argv[1]) as lines:
    for line in lines:
        r = json.loads(line)
        r["node_id"] = "bench-node"
        body = "".join(f"{k} = {json.dumps(r[k]) if isinstance(r[k], str) else r[k]}\n"
                       for k in sorted(r))
        name = hashlib.sha256(r["idempotency_key"].encode()).hexdigest() + ".toml"
        fd = os.open(os.path.join(sys.argv[2], name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, body.encode()); os.close(fd)
PY
sync
fi

printf 'bench-token-%s\n' "$$" >"$work/token"
chmod 600 "$work/token"
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }

# start_forge [FLAGS...]: a fresh test forge in $work/forge; sets url, forge_pid.
start_forge() {
    rm -rf "$work/forge" "$work/forge.out"
    "$FORGE" --root "$work/forge" --token-file "$work/token" "$@" >"$work/forge.out" &
    forge_pid=$!
    for _ in $(seq 100); do grep -q '^http' "$work/forge.out" 2>/dev/null && break; sleep 0.05; done
    url=$(head -n1 "$work/forge.out")
    [ -n "$url" ] || { echo "the test forge did not start" >&2; exit 1; }
}
stop_forge() { kill "$forge_pid"; wait "$forge_pid" 2>/dev/null || true; }

# push [FLAGS...]: one timed push of $work/spool to $url; sets secs and kib.
push() {
    local t0 t1 rc=0
    t0=$(now)
    HERO_NODE_ID=bench-node HERO_USAGE_FORGEJO_URL=$url HERO_USAGE_FORGEJO_TOKEN_FILE=$work/token \
        HERO_USAGE_REPO=lhumina_code/billing \
        /usr/bin/time -f '%M' -o "$work/rss" "$BIN/hero_usage_push" --spool "$work/spool" "$@" \
        >"$work/push.out" 2>"$work/push.err" || rc=$?
    t1=$(now)
    secs=$(calc "$t1 - $t0")
    kib=$(tail -n1 "$work/rss")
    return $rc
}

# bench LAYOUT: RUNS pushes of a copy of pristine-LAYOUT; prints its table.
bench() {
    local layout=$1 floor=() wall=() rss=() reqs=() commits=() files
    for run in $(seq 1 "$RUNS"); do
        rm -rf "$work/spool" "$work/forge"
        cp -a "$work/pristine-$layout" "$work/spool" # -a keeps hard links
        # Floor: read every pending file once (cache warmed by the copy);
        # names that link to one file count once.
        t0=$(now)
        find "$work/spool/pending" -type f -printf '%i %p\n' | sort -u -k1,1 | cut -d' ' -f2- \
            | tr '\n' '\0' | xargs -0 cat >/dev/null
        t1=$(now)
        floor+=("$(calc "$t1 - $t0")")
        files=$(find "$work/spool/pending" -type f -printf '%i\n' | sort -u | wc -l)

        "$FORGE" --root "$work/forge" --token-file "$work/token" >"$work/forge.out" &
        forge_pid=$!
        for _ in $(seq 100); do grep -q '^http' "$work/forge.out" 2>/dev/null && break; sleep 0.05; done
        url=$(head -n1 "$work/forge.out")
        [ -n "$url" ] || { echo "the test forge did not start" >&2; exit 1; }

        t0=$(now)
        HERO_NODE_ID=bench-node HERO_USAGE_FORGEJO_URL=$url HERO_USAGE_FORGEJO_TOKEN_FILE=$work/token \
            HERO_USAGE_REPO=lhumina_code/billing \
            /usr/bin/time -f '%M' -o "$work/rss" "$BIN/hero_usage_push" --spool "$work/spool" >"$work/push.out"
        t1=$(now)
        wall+=("$(calc "$t1 - $t0")")
        rss+=("$(cat "$work/rss")")
        reqs+=("$(python3 - "$url" "$work/token" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/_testforge/log",
                             headers={"Authorization": "token " + open(sys.argv[2]).read().strip()})
print(len(json.load(urllib.request.urlopen(req))))
PY
)")
        commits+=("$(git --git-dir "$work/forge/lhumina_code/billing.git" rev-list --count main)")
        if [ "${SIGN:-0}" = 1 ]; then
            tree=$(git --git-dir "$work/forge/lhumina_code/billing.git" ls-tree -r --name-only main)
            [ "$(grep -c '^signatures/' <<<"$tree")" = "$(grep -c '^nodes/' <<<"$tree")" ] ||
                { echo "not every hour file is signed" >&2; exit 1; }
        fi
        pending=$(find "$work/spool/pending" -type f | wc -l)
        [ "$pending" = 0 ] || { echo "push left $pending records pending: $(cat "$work/push.out")" >&2; exit 1; }
        rejected=$(find "$work/spool/rejected" -type f | wc -l)
        [ "$rejected" = 0 ] || { echo "push rejected $rejected files: $(cat "$work/push.out")" >&2; exit 1; }
        kill "$forge_pid"; wait "$forge_pid" 2>/dev/null || true
    done

    local f w r
    f=$(printf '%s\n' "${floor[@]}" | median)
    w=$(printf '%s\n' "${wall[@]}" | median)
    r=$(printf '%s\n' "${rss[@]}" | median)
    printf '\nhero_usage_push, %s: %d records in %d files over 24 hours, median of %d runs\n\n' \
        "$layout" "$RECORDS" "$files" "$RUNS"
    printf '%-44s %12s\n' "measure" "value"
    printf '%-44s %12.3f\n' "floor: cat of each pending file once (s)" "$f"
    printf '%-44s %12.3f\n' "push wall time, incl. test forge (s)" "$w"
    printf '%-44s %12.2f\n' "push / floor (goal <= 3 for single)" "$(calc "$w / $f")"
    printf '%-44s %12.1f\n' "push peak RSS (MiB, goal < 128)" "$(calc "$r / 1024")"
    printf '%-44s %12s\n' "HTTP requests (goal ~ hours, not records)" "${reqs[0]}"
    printf '%-44s %12s\n' "commits (goal: request bytes / 8 MiB)" "${commits[0]}"
    printf '%-44s %12s\n' "summary" "$(cat "$work/push.out")"
}

if part layouts; then
    bench single
    bench chunks
fi

# A backlog: BACKLOG records in chunk files, over 48 hours, drained by one run.
backlog() {
records "$BACKLOG" 48 >"$work/backlog.jsonl"
rm -rf "$work/spool"
t0=$(now)
HERO_NODE_ID=bench-node "$BIN/hero_usage_record" --spool "$work/spool" --stdin <"$work/backlog.jsonl" >/dev/null
record_secs=$(calc "$(now) - $t0")
rm -f "$work/backlog.jsonl"
sync
t0=$(now)
HERO_NODE_ID=bench-node /usr/bin/time -f '%M' -o "$work/rss" "$BIN/hero_usage_status" --spool "$work/spool" >/dev/null 2>&1 || true
status_secs=$(calc "$(now) - $t0")
start_forge
push --dry-run --max-records "$BACKLOG" --repo lhumina_code/missing
read_secs=$secs read_kib=$kib
push --json
drain_secs=$secs drain_kib=$kib
stop_forge
summary=$(cat "$work/push.out")
pending=$(find "$work/spool/pending" -type f | wc -l)
printf '\nhero_usage_push, a backlog of %d records in chunk files over 48 hours, one run\n\n' "$BACKLOG"
printf '%-50s %12s\n' "measure" "value"
printf '%-50s %12.1f\n' "recording them (--stdin, s)" "$record_secs"
printf '%-50s %12.1f\n' "reading the spool: dry run over all of it (s)" "$read_secs"
printf '%-50s %12.1f\n' "push wall time, incl. test forge (s)" "$drain_secs"
printf '%-50s %12.2f\n' "push / dry run" "$(calc "$drain_secs / $read_secs")"
printf '%-50s %12.1f\n' "reading it once: hero_usage_status (s)" "$status_secs"
printf '%-50s %12.2f\n' "push / hero_usage_status (goal <= 3)" "$(calc "$drain_secs / $status_secs")"
printf '%-50s %12.1f\n' "push peak RSS (MiB, goal <= 256)" "$(calc "$drain_kib / 1024")"
printf '%-50s %12s\n' "commits" "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["commits"])' "$summary")"
printf '%-50s %12s\n' "left pending (goal 0)" "$pending"
}
[ "$BACKLOG" -eq 0 ] || ! part backlog || backlog
part body || exit 0

# Behind a 1 MiB body limit (nginx's default client_max_body_size).
if ! "$FORGE" --help 2>&1 | grep -q -- --max-body-bytes; then
    printf '\n(the test forge has no --max-body-bytes yet: body-limit run skipped)\n'
    exit 0
fi
rm -rf "$work/spool"
records "$RECORDS" 48 | HERO_NODE_ID=bench-node "$BIN/hero_usage_record" --spool "$work/spool" --stdin >/dev/null
start_forge --max-body-bytes 1048576
push --json || true
stop_forge
summary=$(cat "$work/push.out")
printf '\nhero_usage_push, %d records over 48 hours behind a 1 MiB body limit, one run\n\n' "$RECORDS"
printf '%-50s %12s\n' "measure" "value"
printf '%-50s %12.1f\n' "push wall time (s)" "$secs"
printf '%-50s %12s\n' "commits" "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["commits"])' "$summary")"
printf '%-50s %12s\n' "413 answers shrinking the requests" "$(grep -c '413' "$work/push.err" || true)"
printf '%-50s %12s\n' "left pending (goal 0)" "$(find "$work/spool/pending" -type f | wc -l)"
printf '%-50s %12s\n' "exit code (goal 0)" "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["exit_code"])' "$summary")"
