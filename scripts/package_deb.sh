#!/usr/bin/env bash
# Build the Debian package hero-usage_<version>_<arch>.deb with cargo-deb:
# the release binaries in /usr/bin, the man pages, bash/zsh/fish completions
# where Debian's shells look, the example config and copyright in
# /usr/share/doc/hero-usage/, and the sandboxed systemd units (debian/units/,
# rendered by the same code as `hero_usage_push --print-schedule systemd`)
# in /usr/lib/systemd/system. The package is [package.metadata.deb] in
# Cargo.toml; the maintainer scripts are debian/maintainer-scripts/.
#
# Needs cargo-deb (cargo install cargo-deb --locked: about 15 minutes of
# compiling on a busy 2-core machine, 1.5 min of CPU) and dpkg-dev's tools.
# Prints the path of the .deb on its last line. `--lintian` also runs
# lintian on it (apt-get install lintian).
set -euo pipefail
cd "$(dirname "$0")/.."

lint=0
case "${1:-}" in
--lintian) lint=1 ;;
"") ;;
-h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
*) echo "package_deb.sh: error: unknown argument $1 (only --lintian)" >&2; exit 64 ;;
esac

if ! cargo deb --version >/dev/null 2>&1; then
    echo "package_deb.sh: error: cargo-deb is missing: cargo install cargo-deb --locked" >&2
    exit 69
fi
command -v dpkg-deb >/dev/null || { echo "package_deb.sh: error: dpkg-deb is missing (apt-get install dpkg-dev)" >&2; exit 69; }

cargo build --release --locked -p hero_usage
# The completions, from the binaries themselves.
out=target/deb-completions
rm -rf "$out"
mkdir -p "$out/bash" "$out/zsh" "$out/fish"
for b in hero_usage_record hero_usage_push hero_usage_shim hero_usage_status hero_usage_audit; do
    target/release/$b --completions bash >"$out/bash/$b"
    target/release/$b --completions zsh >"$out/zsh/_$b"
    target/release/$b --completions fish >"$out/fish/$b.fish"
done
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! cargo deb --no-build --locked -p hero_usage >"$log" 2>&1; then
    cat "$log" >&2
    echo "package_deb.sh: error: cargo deb failed" >&2
    exit 70
fi
deb=$(tail -n 1 "$log")
[ -f "$deb" ] || { cat "$log" >&2; echo "package_deb.sh: error: cargo deb did not report a package" >&2; exit 70; }
if [ "$lint" = 1 ]; then
    lintian --fail-on error --info "$deb"
fi
echo "$deb"
