#!/usr/bin/env bash
# Test the Debian package end to end on this machine (as root; Debian or
# a derivative): build it (scripts/package_deb.sh), lint it, list it,
# install it with dpkg -i, check what the maintainer scripts made (the
# system user, the spool, the config directory, nothing enabled), rate the
# installed units with systemd-analyze security, write a config against the
# project's test forge and run `hero_usage_push --check` as the service user
# with the package's paths; then purge the package and remove the user, the
# spool and the config this test made, leaving the machine as it found it.
# Refuses to run when hero-usage is already installed or the user exists.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "test_package_deb.sh: error: run as root (it installs the package)" >&2; exit 77; }
if dpkg-query -W -f '${Status}' hero-usage 2>/dev/null | grep -q installed || getent passwd hero-usage >/dev/null; then
    echo "test_package_deb.sh: error: hero-usage is installed (or its user exists) already: not touching it" >&2
    exit 1
fi
for tool in lintian systemd-analyze runuser dpkg-deb; do
    command -v "$tool" >/dev/null || { echo "test_package_deb.sh: error: $tool is needed" >&2; exit 69; }
done

step() { printf '\n== %s\n' "$*"; }
forge_pid=""
cleanup() {
    local rc=$?
    set +e
    [ -n "$forge_pid" ] && kill "$forge_pid" 2>/dev/null && wait "$forge_pid" 2>/dev/null
    if dpkg-query -W hero-usage >/dev/null 2>&1; then dpkg --purge hero-usage >/dev/null 2>&1 || true; fi
    # What the postinst made and purge keeps on purpose (the spool may hold
    # billing records; the user may own files): this test made them.
    rm -rf /var/lib/hero_usage /etc/hero_usage
    getent passwd hero-usage >/dev/null && deluser --quiet --system hero-usage >/dev/null 2>&1
    getent group hero-usage >/dev/null && delgroup --quiet --system hero-usage >/dev/null 2>&1
    rm -rf "${work:-}"
    [ "$rc" = 0 ] && echo "package test passed" || echo "package test FAILED"
    exit "$rc"
}
trap cleanup EXIT

step "build (scripts/package_deb.sh --lintian: lintian --fail-on error)"
deb=$(scripts/package_deb.sh --lintian | tail -n 1)
echo "$deb"
step "lintian --pedantic (warnings and notes too)"
lintian --pedantic "$deb" || true
echo "(no line above: lintian found nothing, the override for initial-upload-closes-no-bugs aside)"

step "dpkg-deb -c (what it installs where)"
dpkg-deb -c "$deb" | awk '{print $1, $6}'
listing=$(dpkg-deb -c "$deb" | awk '{print $6}')
for want in ./usr/bin/hero_usage_push ./usr/bin/hero_usage_record ./usr/bin/hero_usage_shim \
    ./usr/bin/hero_usage_status ./usr/bin/hero_usage_audit \
    ./usr/share/man/man1/hero_usage_push.1.gz ./usr/share/man/man7/hero_usage.7.gz \
    ./usr/share/bash-completion/completions/hero_usage_push \
    ./usr/share/zsh/vendor-completions/_hero_usage_push \
    ./usr/share/fish/vendor_completions.d/hero_usage_push.fish \
    ./usr/share/doc/hero-usage/hero_usage.toml.example ./usr/share/doc/hero-usage/copyright \
    ./usr/lib/systemd/system/hero_usage_push.service ./usr/lib/systemd/system/hero_usage_push.timer \
    ./usr/lib/systemd/system/hero_usage_shim.service; do
    grep -qxF "$want" <<<"$listing" || { echo "missing from the package: $want" >&2; exit 1; }
done
echo "every expected file is in the package"

step "dpkg -i"
dpkg -i "$deb"
step "what the maintainer scripts made"
getent passwd hero-usage
stat -c '%A %U:%G %n' /var/lib/hero_usage /var/lib/hero_usage/queue /etc/hero_usage
[ "$(stat -c '%a %U' /var/lib/hero_usage/queue)" = "700 hero-usage" ] || { echo "spool mode/owner wrong" >&2; exit 1; }
[ ! -e /etc/hero_usage/hero_usage.toml ] || { echo "a config was installed" >&2; exit 1; }
for unit in hero_usage_push.timer hero_usage_shim.service hero_usage_status.timer; do
    if [ -e "/etc/systemd/system/timers.target.wants/$unit" ] || [ -e "/etc/systemd/system/multi-user.target.wants/$unit" ]; then
        echo "$unit was enabled on install" >&2
        exit 1
    fi
done
echo "nothing enabled; ConditionPathExists=/etc/hero_usage/hero_usage.toml in every unit:"
grep -c '^ConditionPathExists=/etc/hero_usage/hero_usage.toml$' /usr/lib/systemd/system/hero_usage_*

step "systemd-analyze security --offline=yes (the installed units)"
for unit in hero_usage_push.service hero_usage_shim.service hero_usage_status.service; do
    line=$(systemd-analyze security --offline=yes "/usr/lib/systemd/system/$unit" 2>&1 | tail -n 1)
    echo "$line"
    score=$(sed -n 's/.*: \([0-9.]*\) .*/\1/p' <<<"$line")
    awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 3.0) }' || { echo "$unit: exposure above 3.0" >&2; exit 1; }
done
step "systemd-analyze verify"
systemd-analyze verify /usr/lib/systemd/system/hero_usage_*.service /usr/lib/systemd/system/hero_usage_*.timer && echo "verify: clean"

step "config against the test forge, then hero_usage_push --check as hero-usage"
cargo build --quiet -p hero_usage_test_forge
work=$(mktemp -d)
chmod 755 "$work"
install -m 0600 -o hero-usage -g hero-usage /dev/null /etc/hero_usage/forgejo_token
head -c 20 /dev/urandom | od -An -tx1 | tr -d ' \n' >/etc/hero_usage/forgejo_token
target/debug/hero_usage_test_forge --root "$work/repos" --token-file /etc/hero_usage/forgejo_token >"$work/url" 2>"$work/forge.log" &
forge_pid=$!
for _ in $(seq 200); do [ -s "$work/url" ] && break; sleep 0.05; done
url=$(head -n 1 "$work/url")
cat >/etc/hero_usage/hero_usage.toml <<CONFIG
node = "package-test"
forgejo_url = "$url"
token_file = "/etc/hero_usage/forgejo_token"
repo = "billing-bot/billing"
CONFIG
chmod 0640 /etc/hero_usage/hero_usage.toml
chgrp hero-usage /etc/hero_usage/hero_usage.toml
runuser -u hero-usage -- hero_usage_push --config /etc/hero_usage/hero_usage.toml --spool /var/lib/hero_usage/queue --check
step "a record and a push as hero-usage, with the package's paths"
runuser -u hero-usage -- hero_usage_record --config /etc/hero_usage/hero_usage.toml --spool /var/lib/hero_usage/queue \
    --idempotency-key package-test-1 --user-sid 0a1b --amount-cents 250 --resource-kind cpu_hours
runuser -u hero-usage -- hero_usage_push --config /etc/hero_usage/hero_usage.toml --spool /var/lib/hero_usage/queue
runuser -u hero-usage -- hero_usage_status --config /etc/hero_usage/hero_usage.toml --spool /var/lib/hero_usage/queue
step "man and completions where Debian looks"
MANWIDTH=80 man -P cat hero_usage_push 2>/dev/null | head -n 3
bash -c 'source /usr/share/bash-completion/bash_completion && __load_completion hero_usage_push && complete -p hero_usage_push'

step "dpkg --purge"
dpkg --purge hero-usage
[ ! -e /usr/bin/hero_usage_push ] || { echo "binary left after purge" >&2; exit 1; }
[ -d /var/lib/hero_usage/queue ] && echo "the spool is kept on purge (it may hold records not yet pushed), as the package says"
