#!/usr/bin/env bash
# Show the main job so far: record a few usage records into the repository's
# demo spool queue/ (one of them through the shell drop box), then show them.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet --bin hero_usage_record
rec=target/release/hero_usage_record
export HERO_USAGE_SPOOL="$PWD/queue" HERO_NODE_ID="${HERO_NODE_ID:-demo-node}"
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
for f in "$SPOOL"/pending/*.toml; do
    echo "--- ${f#"$PWD"/}"
    cat "$f"
done
