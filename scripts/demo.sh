#!/usr/bin/env bash
# Show the main job: record a few usage records into the repository's demo
# spool queue/ (one of them through the shell drop box), push them to a local
# test forge (a Forgejo-compatible server on loopback, real bare git repos),
# and show what the billing repository then holds.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet -p hero_usage
cargo build --release --quiet -p hero_usage_test_forge
rec=target/release/hero_usage_record
export HERO_USAGE_SPOOL="$PWD/queue" HERO_NODE_ID="${HERO_NODE_ID:-demo-node}"
unset HERO_USAGE_CONFIG HERO_USAGE_BRANCH HERO_USAGE_FORGEJO_TOKEN
# A fresh spool each run (the forge is fresh too), so that the demo runs any
# number of times: everything in queue/ but its README goes.
shopt -s nullglob dotglob
for old in queue/*; do
    [ "$old" = queue/README.md ] || rm -rf -- "$old"
done
shopt -u dotglob
hour=$(date -u +%Y-%m-%dT%H)

echo "== recording into $HERO_USAGE_SPOOL (node $HERO_NODE_ID)"
"$rec" --idempotency-key "demo-cpu-$hour" --user-sid 0a1b --amount-cents 250 \
    --resource-kind cpu_hours --description "4 vCPU for 1 h"
echo "== the same call again is a duplicate"
"$rec" --idempotency-key "demo-cpu-$hour" --user-sid 0a1b --amount-cents 250 \
    --resource-kind cpu_hours --description "4 vCPU for 1 h"
echo "== the same key with another amount is a conflict (exit 65)"
"$rec" --idempotency-key "demo-cpu-$hour" --user-sid 0a1b --amount-cents 999 \
    --resource-kind cpu_hours --description "4 vCPU for 1 h" || echo "(exit $?)"
echo "== many records as JSON lines on stdin"
printf '{"idempotency_key":"demo-gpu-%s-%d","user_sid":"0a1b","amount_cents":%d,"resource_kind":"gpu_hours"}\n' \
    "$hour" 1 100 "$hour" 2 200 "$hour" 3 300 | "$rec" --stdin

echo "== a shell drop (man 5 hero_usage_spool), picked up by the next push"
SPOOL=$HERO_USAGE_SPOOL
f=$(mktemp -p "$SPOOL/tmp") && cat >"$f" <<EOF && sync "$f" &&
idempotency_key = "demo-drop-$hour"
user_sid = "0a1b"
amount_cents = 42
resource_kind = "storage_gb_hours"
EOF
mv "$f" "$SPOOL/incoming/$(basename "$f").toml" && sync "$SPOOL/incoming"
ls -l "$SPOOL/incoming"

echo "== pending records in $SPOOL/pending"
# A --stdin batch is one chunk file linked under each of its keys: show it once.
declare -A shown=()
for f in "$SPOOL"/pending/*; do
    inode=$(stat -c %i "$f")
    if [ -n "${shown[$inode]:-}" ]; then
        echo "--- ${f#"$PWD"/}: the same file as ${shown[$inode]}"
        continue
    fi
    shown[$inode]=${f#"$PWD"/}
    echo "--- ${f#"$PWD"/}"
    cat "$f"
done

echo "== starting a test forge on loopback"
forge_root=$(mktemp -d)
trap '[ "${forge_pid:-0}" -gt 0 ] && kill "$forge_pid" 2>/dev/null; rm -rf "$forge_root"' EXIT
# A secret file is private (the push warns about one open to others).
(umask 077 && head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$forge_root/token")
target/release/hero_usage_test_forge --root "$forge_root/repos" --token-file "$forge_root/token" \
    >"$forge_root/url" &
forge_pid=$!
for _ in $(seq 100); do [ -s "$forge_root/url" ] && break; sleep 0.05; done
[ -s "$forge_root/url" ] || { echo "the test forge did not start" >&2; exit 1; }
export HERO_USAGE_FORGEJO_URL=$(head -n1 "$forge_root/url")
export HERO_USAGE_FORGEJO_TOKEN_FILE="$forge_root/token" HERO_USAGE_REPO=lhumina_code/hero_onboarding_billing
echo "forge at $HERO_USAGE_FORGEJO_URL"

echo "== hero_usage_push --dry-run: what a push would commit"
target/release/hero_usage_push --dry-run
echo "== hero_usage_push: one commit into the billing repository"
target/release/hero_usage_push
echo "== pushing again commits nothing"
target/release/hero_usage_push

repo="$forge_root/repos/lhumina_code/hero_onboarding_billing.git"
echo "== git log of the billing repository"
git --git-dir "$repo" log --stat --format='%h %an: %s' main
for path in $(git --git-dir "$repo" ls-tree -r --name-only main); do
    echo "--- $path"
    git --git-dir "$repo" show "main:$path"
done

echo "== hero_usage_status"
target/release/hero_usage_status
