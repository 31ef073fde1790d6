#!/usr/bin/env bash
# End-to-end smoke test of a deployment: record over the HTTP shim, push,
# read the hour file back through the Forgejo API, check its signature with
# ssh-keygen -Y verify (the node signs with a fresh key), and prove exactly
# once.
#
# Target: FORGEJO_URL and FORGEJO_TOKEN (FORGEJO_USER, the token's login, is
# read from GET /user when not set) name a real Forgejo; without FORGEJO_URL
# the script starts the project's test forge on a free loopback port. It
# never falls back to its own forge when a URL is given.
#
# It works in a scratch repository with a unique name under the token's user
# (never the billing repository), a fresh temporary spool, and a shim on a
# free loopback port with a temporary admin secret; on success and on
# failure it deletes the scratch repository, stops the shim and removes the
# spool. One line per step, `ok` or `FAIL` with what differed; exit 1 on
# any failure, 2 when it could not start.
#
# Binaries: HERO_USAGE_BIN_DIR (e.g. $HOME/hero/bin) when set; otherwise it
# builds them with cargo (debug profile) in this repository.
#
# Secrets never reach a command line (ps shows those): the token and the
# admin secret go to curl as header files (curl -H @FILE), to the binaries
# as files. Against a failing forge it says what it waits for and gives up
# soon: the push-now through the shim retries for 30 s, the direct push for
# SMOKE_RETRY_SECONDS (default 20), and a failed push skips the steps that
# need it. Each step is one `step` call below.
#
# Needs: bash, curl, jq, base64, mktemp, ssh-keygen (openssh-client).
set -uo pipefail
cd "$(dirname "$0")/.."

failures=0
retry_seconds=${SMOKE_RETRY_SECONDS:-20}
ok() { printf 'ok   %s\n' "$1"; }
# Progress: what the script is waiting for, before it waits.
say() { printf '...  %s\n' "$1"; }
fail() {
    printf 'FAIL %s\n' "$1"
    failures=$((failures + 1))
}
die() {
    printf 'FAIL %s\n' "$1"
    exit 2
}
for tool in curl jq base64 mktemp; do
    command -v "$tool" >/dev/null || die "setup: $tool is needed (apt-get install $tool)"
done

work=$(mktemp -d) || die "setup: mktemp"
chmod 700 "$work"
shim_pid="" forge_pid="" repo_created=""

cleanup() {
    local rc=$?
    # From here on a failed write (a reader that went away) must not stop
    # the cleanup: ignore SIGPIPE; the shim stops first, the forge last.
    trap '' PIPE
    if [ -n "$shim_pid" ]; then kill "$shim_pid" 2>/dev/null; wait "$shim_pid" 2>/dev/null; fi
    if [ -n "$repo_created" ]; then
        local status
        status=$(api DELETE "/repos/$owner/$repo" -o /dev/null -w '%{http_code}')
        if [ "$status" = 204 ]; then ok "cleanup: deleted scratch repository $owner/$repo"; else
            fail "cleanup: DELETE /repos/$owner/$repo answered $status; delete it by hand"
            rc=1
        fi
    fi
    if [ -n "$forge_pid" ]; then kill "$forge_pid" 2>/dev/null; wait "$forge_pid" 2>/dev/null; fi
    rm -rf "$work"
    [ "$failures" -gt 0 ] && [ "$rc" -eq 0 ] && rc=1
    if [ "$rc" -eq 0 ]; then echo "smoke test passed"; else echo "smoke test FAILED"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
# A reader that went away (| head) must not skip the cleanup either.
trap 'exit 141' PIPE

# ---------------------------------------------------------------- binaries
if [ -n "${HERO_USAGE_BIN_DIR:-}" ]; then
    bin=$HERO_USAGE_BIN_DIR
else
    cargo build --quiet -p hero_usage -p hero_usage_test_forge || die "setup: cargo build"
    bin=$PWD/target/debug
fi
for b in hero_usage_shim hero_usage_push; do
    [ -x "$bin/$b" ] || die "setup: $bin/$b is missing"
done

# ---------------------------------------------------------------- the forge
token_file=$work/token
if [ -n "${FORGEJO_URL:-}" ]; then
    [ -n "${FORGEJO_TOKEN:-}" ] || die "setup: FORGEJO_URL is set but FORGEJO_TOKEN is not"
    url=${FORGEJO_URL%/}
    # printf is a builtin: the token is on no command line.
    (umask 077 && printf '%s\n' "$FORGEJO_TOKEN" >"$token_file")
    ok "target: the Forgejo at $url"
else
    [ -x "$bin/hero_usage_test_forge" ] || [ -x target/debug/hero_usage_test_forge ] ||
        die "setup: no FORGEJO_URL and no test forge binary"
    forge_bin=$bin/hero_usage_test_forge
    [ -x "$forge_bin" ] || forge_bin=target/debug/hero_usage_test_forge
    (umask 077 && head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$token_file")
    "$forge_bin" --root "$work/repos" --token-file "$token_file" >"$work/forge_url" 2>"$work/forge.log" &
    forge_pid=$!
    for _ in $(seq 200); do [ -s "$work/forge_url" ] && break; sleep 0.05; done
    [ -s "$work/forge_url" ] || die "setup: the test forge did not start: $(tail -n1 "$work/forge.log")"
    url=$(head -n1 "$work/forge_url")
    ok "target: the project's test forge at $url"
fi

# The token as a header file for curl (-H @FILE): never on its command line.
auth_header=$work/auth_header
(umask 077 && printf 'Authorization: token %s\n' "$(head -n1 "$token_file")" >"$auth_header")

# api METHOD PATH [curl args...]: a Forgejo API call with the token.
api() {
    local method=$1 path=$2
    shift 2
    curl -sS --max-time 30 -X "$method" -H @"$auth_header" \
        -H 'Content-Type: application/json' "$@" "$url/api/v1$path"
}

owner=${FORGEJO_USER:-}
if [ -z "$owner" ]; then
    owner=$(api GET /user | jq -r '.login // empty' 2>/dev/null)
    [ -n "$owner" ] || die "setup: GET /user gave no login: is the URL the Forgejo base URL, the token valid?"
fi
repo="hero-usage-smoke-$(date -u +%Y%m%d%H%M%S)-$$-$RANDOM"
status=$(api GET "/repos/$owner/$repo" -o /dev/null -w '%{http_code}')
[ "$status" = 404 ] || die "setup: scratch repository $owner/$repo answered $status, expected 404"
repo_created=yes # from here on, cleanup deletes it (the push creates it)
ok "scratch repository $owner/$repo (not yet there; the push creates it)"

# ---------------------------------------------------------------- the shim
node=smoke-node
spool=$work/spool
(umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/admin_secret")
(umask 077 && printf 'X-Hero-Onboarding-Admin-Secret: %s\n' "$(cat "$work/admin_secret")" >"$work/admin_header")
export HERO_USAGE_SPOOL=$spool HERO_NODE_ID=$node HERO_USAGE_FORGEJO_URL=$url
export HERO_USAGE_FORGEJO_TOKEN_FILE=$token_file HERO_USAGE_REPO=$owner/$repo
export HERO_ONBOARDING_ADMIN_SECRET_FILE=$work/admin_secret
# The node signs its hour files: a fresh key, and its allowed_signers line.
export HERO_USAGE_SIGNING_KEY_FILE=$work/signing_key
"$bin/hero_usage_push" --init-signing-key >"$work/allowed_signers" 2>"$work/key.log" ||
    die "setup: --init-signing-key: $(tail -n1 "$work/key.log")"
unset HERO_USAGE_CONFIG HERO_USAGE_BRANCH HERO_USAGE_FORGEJO_TOKEN HERO_ONBOARDING_ADMIN_SECRET
"$bin/hero_usage_shim" --listen 127.0.0.1:0 >"$work/shim_out" 2>"$work/shim.log" &
shim_pid=$!
for _ in $(seq 200); do grep -q '^listening on ' "$work/shim_out" 2>/dev/null && break; sleep 0.05; done
shim=$(sed -n 's/^listening on //p' "$work/shim_out")
[ -n "$shim" ] || die "setup: the shim did not start: $(tail -n1 "$work/shim.log")"
ok "shim at $shim (spool $spool)"

# shim PATH [BODY]: POST to the shim; prints the status, the body in $work/body.
shim_post() {
    curl -sS --max-time 90 -o "$work/body" -w '%{http_code}' -X POST -H @"$work/admin_header" \
        -H 'Content-Type: application/json' --data "${2:-}" "$shim$1"
}

# ---------------------------------------------------------------- records
hour=$(date -u -d '1 hour ago' +%Y-%m-%d\ %H)
file_hour=$(date -u -d '1 hour ago' +%Y-%m-%d-%H)
run_id=$repo
rec() { # key minute amount description
    jq -cn --arg k "$run_id-$1" --arg t "$hour:$2:00" --argjson a "$3" --arg d "$4" \
        '{idempotency_key:$k, user_sid:"0a1b", amount_cents:$a, resource_kind:"cpu_hours", description:$d, occurred_at:$t}'
}
# expect STEP WANT_STATUS GOT_STATUS
expect() {
    if [ "$3" = "$2" ]; then ok "$1 ($3)"; else fail "$1: answered $3, expected $2: $(head -c 300 "$work/body" | tr '\n' ' ')"; fi
}
expect "record 1" 201 "$(shim_post /record_usage "$(rec a 05 250 '4 vCPU for 1 h')")"
expect "record 2" 201 "$(shim_post /record_usage "$(rec b 10 100 'quote " and \ backslash')")"
expect "record 3" 201 "$(shim_post /record_usage "$(rec c 10 0 '')")"
expect "same record again is a duplicate" 200 "$(shim_post /record_usage "$(rec a 05 250 '4 vCPU for 1 h')")"
expect "same key, other amount is a conflict" 422 "$(shim_post /record_usage "$(rec a 05 999 '4 vCPU for 1 h')")"

# ---------------------------------------------------------------- push now
# Each check after the first push is a function run by `step` below; a new
# check is one more function and one more name in the list.
say "push-usage-now through the shim (it retries a failing forge for up to 30 s)"
status=$(shim_post /admin/push-usage-now)
pushed=$(jq -r '.pushed // empty' "$work/body" 2>/dev/null)
if [ "$status" = 200 ] && [ "$pushed" = 3 ]; then ok "push-usage-now pushed 3 records"; else
    fail "push-usage-now: answered $status, pushed ${pushed:-?}, expected 200 and 3: $(head -c 300 "$work/body" | tr '\n' ' ')"
    echo "skipped the checks that need the push"
    exit 1
fi

# The canonical OTOML the hour file must hold, byte for byte.
expected_hour_file() {
    cat <<EOF
O:
[[records]]
amount_cents = 250
description = "4 vCPU for 1 h"
idempotency_key = "$run_id-a"
node_id = "$node"
occurred_at = "$hour:05:00"
resource_kind = "cpu_hours"
user_sid = "0a1b"

[[records]]
amount_cents = 100
description = "quote \" and \\\\ backslash"
idempotency_key = "$run_id-b"
node_id = "$node"
occurred_at = "$hour:10:00"
resource_kind = "cpu_hours"
user_sid = "0a1b"

[[records]]
amount_cents = 0
description = ""
idempotency_key = "$run_id-c"
node_id = "$node"
occurred_at = "$hour:10:00"
resource_kind = "cpu_hours"
user_sid = "0a1b"
EOF
}
path="nodes/$node/usage_$file_hour.otoml"

# remote_file PATH OUT: a file of the scratch repository, as the API serves it.
remote_file() {
    api GET "/repos/$owner/$repo/contents/$1" -o "$work/contents.json"
    jq -r '.content // empty' "$work/contents.json" 2>/dev/null | base64 -d >"$2" 2>/dev/null
}

check_hour_file() {
    expected_hour_file >"$work/expected.otoml"
    remote_file "$path" "$work/remote.otoml"
    if cmp -s "$work/expected.otoml" "$work/remote.otoml"; then ok "the hour file $path is the expected canonical OTOML"; else
        fail "the hour file $path differs from the expected canonical OTOML: $(diff "$work/expected.otoml" "$work/remote.otoml" | head -n 6 | tr '\n' '|')"
    fi
}

# The hour file's signature verifies with OpenSSH's own ssh-keygen.
check_signature() {
    local sig="signatures/$node/usage_$file_hour.otoml.sig"
    if ! command -v ssh-keygen >/dev/null; then
        fail "ssh-keygen (openssh-client) is needed to check $sig"
        return
    fi
    remote_file "$sig" "$work/remote.sig"
    if ssh-keygen -Y verify -f "$work/allowed_signers" -I "$node" -n hero-usage \
        -s "$work/remote.sig" <"$work/remote.otoml" >"$work/verify.log" 2>&1; then
        ok "ssh-keygen -Y verify: $sig is $node's signature of the hour file"
    else
        fail "ssh-keygen -Y verify of $sig: $(head -c 300 "$work/verify.log" | tr '\n' ' ')"
    fi
}

# commits: the number of commits on the default branch (a scratch repo has few).
commits() { api GET "/repos/$owner/$repo/commits?limit=50" | jq 'length' 2>/dev/null; }

check_push_now_again() {
    local before after status pushed
    before=$(commits)
    say "push-usage-now again (nothing should be left to push)"
    status=$(shim_post /admin/push-usage-now)
    pushed=$(jq -r '.pushed // empty' "$work/body" 2>/dev/null)
    after=$(commits)
    if [ "$status" = 200 ] && [ "$pushed" = 0 ] && [ -n "$before" ] && [ "$before" = "$after" ]; then
        ok "push-usage-now again: nothing pushed, commit count still $after"
    else
        fail "push-usage-now again: answered $status, pushed ${pushed:-?}, commits ${before:-?} -> ${after:-?}"
    fi
}

# The hourly job on the same spool has nothing to push either. Its notes
# (retries) show as they happen, indented, and it gives up after
# $retry_seconds: a failing forge shows progress, not minutes of silence.
check_push_once() {
    local before out rc
    before=$(commits)
    say "hero_usage_push --once --retry-seconds $retry_seconds"
    out=$("$bin/hero_usage_push" --once --json --retry-seconds "$retry_seconds" 2> >(tee "$work/push.err" | sed 's/^/     /' >&2))
    rc=$?
    if [ "$rc" = 0 ] && [ "$(jq -r .pushed <<<"$out" 2>/dev/null)" = 0 ] &&
        [ "$(jq -r .outcome <<<"$out" 2>/dev/null)" = nothing-to-push ] && [ "$(commits)" = "$before" ]; then
        ok "hero_usage_push --once on the same spool: nothing to push"
    else
        fail "hero_usage_push --once: exit $rc: $(head -c 300 <<<"$out") $(head -c 300 "$work/push.err")"
    fi
}

for step in check_hour_file check_signature check_push_now_again check_push_once; do
    "$step"
done
