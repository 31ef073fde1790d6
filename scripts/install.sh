#!/usr/bin/env bash
# Install hero_usage: the binaries, their man pages, shell completions
# (bash, zsh, fish) and the example config file, under one prefix.
# Idempotent: running it again replaces the same files with the same files.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/install.sh [--prefix DIR] [--no-build] [--from DIR]

  --prefix DIR   install under DIR (default: $HOME/hero; e.g. /usr/local)
                   DIR/bin/                          the binaries
                   DIR/share/man/man{1,5,7}/         the man pages
                   DIR/share/bash-completion/completions/, DIR/share/zsh/site-functions/,
                   DIR/share/fish/vendor_completions.d/   completions
                   DIR/share/doc/hero_usage/hero_usage.toml.example
  --no-build     do not run cargo build --release; install what --from holds
  --from DIR     take the binaries from DIR (default: target/release), e.g.
                 --no-build --from target/debug to install a debug build
USAGE
}

prefix="${HOME:?HOME is not set; give --prefix}/hero"
build=1
from=""
while [ $# -gt 0 ]; do
    case "$1" in
    --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    --no-build) build=0; shift ;;
    --from) from=${2:?--from needs a directory}; shift 2 ;;
    --from=*) from=${1#--from=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: error: unknown argument: $1" >&2; usage >&2; exit 64 ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
# Absolute, so that the PATH and MANPATH lines printed below work from any
# directory (a relative prefix is taken from the current one).
install -d -m 755 "$prefix"
prefix=$(cd "$prefix" && pwd)
from=${from:-$root/target/release}
case "$from" in /*) ;; *) from="$PWD/$from" ;; esac
if [ "$build" = 1 ]; then
    echo "building the release binaries (cargo build --release)"
    (cd "$root" && cargo build --release --locked -p hero_usage)
fi

required=(hero_usage_record hero_usage_push hero_usage_shim hero_usage_status hero_usage_audit)
man="$prefix/share/man"
bash_dir="$prefix/share/bash-completion/completions"
zsh_dir="$prefix/share/zsh/site-functions"
fish_dir="$prefix/share/fish/vendor_completions.d"
doc="$prefix/share/doc/hero_usage"
install -d -m 755 "$prefix/bin" "$man/man1" "$man/man5" "$man/man7" \
    "$bash_dir" "$zsh_dir" "$fish_dir" "$doc"

installed=()
for b in "${required[@]}"; do
    if [ ! -x "$from/$b" ]; then
        echo "install.sh: error: $from/$b is missing; build it (cargo build --release) or pass --from DIR" >&2
        exit 66
    fi
    # install(1) replaces the file (a new inode): safe while the old one runs.
    install -m 755 "$from/$b" "$prefix/bin/$b"
    installed+=("$b")
done

for page in "$root"/man/*.[157]; do
    install -m 644 "$page" "$man/man${page##*.}/"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for b in "${installed[@]}"; do
    "$prefix/bin/$b" --completions bash >"$tmp/bash"
    "$prefix/bin/$b" --completions zsh >"$tmp/zsh"
    "$prefix/bin/$b" --completions fish >"$tmp/fish"
    install -m 644 "$tmp/bash" "$bash_dir/$b"
    install -m 644 "$tmp/zsh" "$zsh_dir/_$b"
    install -m 644 "$tmp/fish" "$fish_dir/$b.fish"
done
install -m 644 "$root/hero_usage.toml.example" "$doc/hero_usage.toml.example"

echo "installed ${installed[*]} under $prefix"
echo "  binaries     $prefix/bin"
echo "  man pages    $man (man hero_usage)"
echo "  completions  $bash_dir, $zsh_dir, $fish_dir"
echo "  example      $doc/hero_usage.toml.example"
case ":${PATH:-}:" in
*":$prefix/bin:"*) ;;
*) echo "add to your shell profile: export PATH=\"$prefix/bin:\$PATH\"" ;;
esac
echo "and, unless man already finds the pages: export MANPATH=\"$man:\$(manpath 2>/dev/null)\""
echo "next: copy the example to \$HOME/hero/cfg/hero_usage.toml (or name it with --config),"
echo "      fill it in, then run: hero_usage_push --check"
