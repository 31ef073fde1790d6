#!/usr/bin/env bash
# Verify the Promela model of the spool protocol and the push job with spin:
# no error in the model (under three budgets of crashes and forge faults),
# and an error in each planted bug (so the model can fail). Needs spin and a
# C compiler. model/README.md says what the model holds and why.
#
#   model/check.sh            everything (CI runs this)
#   model/check.sh -v         also print pan's report of each run
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
verbose=${1:-}
command -v spin >/dev/null || { echo "check.sh: spin is needed (apt-get install spin)" >&2; exit 1; }
command -v cc >/dev/null || { echo "check.sh: a C compiler is needed (apt-get install gcc)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here/usage.pml" "$work/"
cd "$work"

# pan: exhaustive safety search (assertions, deadlocks, every state stored).
pan() { # name, spin -D flags...
    local name=$1
    shift
    rm -f pan pan.c usage.pml.trail
    spin "$@" -a usage.pml >spin.out 2>&1 || { cat spin.out >&2; return 2; }
    cc -O2 -w -DSAFETY -o pan pan.c
    ./pan -m20000 -w22 >"$name.out" 2>&1 || true
    [ -z "$verbose" ] || cat "$name.out"
    if grep -q 'max search depth too small' "$name.out"; then
        echo "check.sh: $name: the search was cut short (raise -m)" >&2
        return 2
    fi
    grep -o 'errors: [0-9]*' "$name.out" | awk '{print $2}'
}

# Which property a failed search broke.
violated() {
    local line
    line=$(grep -m1 -E 'assertion violated|invalid end state' "$1")
    case $line in
    *'<=1'*) echo "no_double: a key committed twice" ;;
    *'ack['*'>0'*) echo "no_loss: an acknowledged record neither kept nor committed" ;;
    *'==1'*) echo "at the end, an acknowledged record not committed exactly once" ;;
    *) echo "$line" ;;
    esac
}

failed=0
# The model itself, under three budgets: MAXCRASH kills of the push job
# (and one of each caller), MAXFAULT faults of the forge for node 0's push,
# OTHER_FAULTS lost replies for node 1's.
for budget in "2 0 0" "1 1 0" "0 2 1"; do
    set -- $budget
    name="model-crash$1-fault$2-other$3"
    start=$SECONDS
    errors=$(pan "$name" -DMAXCRASH="$1" -DMAXFAULT="$2" -DOTHER_FAULTS="$3")
    states=$(awk '/states, stored/ {print $1; exit}' "$name.out")
    if [ "$errors" = 0 ]; then
        echo "ok    $name: no error in $states states ($((SECONDS - start)) s)"
    else
        echo "FAIL  $name: spin found $errors error(s):"
        grep -E 'assertion violated|invalid end state|pan:' "$name.out" | head -5
        spin -DMAXCRASH="$1" -DMAXFAULT="$2" -DOTHER_FAULTS="$3" -t -p usage.pml | tail -40
        failed=1
    fi
done
# Each planted bug must be caught.
for bug in BLIND_APPEND ACK_BEFORE_LINK MARK_BEFORE_COMMIT FORGET_PRUNED; do
    name="bug-$bug"
    errors=$(pan "$name" -DMAXCRASH=1 -DMAXFAULT=1 -DOTHER_FAULTS=0 -DBUG_"$bug")
    if [ "$errors" != 0 ]; then
        what=$(violated "$name.out")
        echo "ok    $name: caught ($what)"
    else
        echo "FAIL  $name: spin found no error: the model cannot tell this bug"
        failed=1
    fi
done
exit $failed
