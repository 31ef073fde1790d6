#!/usr/bin/env bash
# Install hero_usage: the binaries, their man pages, shell completions
# (bash, zsh, fish) and the example config file, under one prefix, and keep
# a manifest of every file and directory it made, so that --uninstall
# removes exactly those. Idempotent: running it again replaces the same
# files (an upgrade: stop nothing, the next run of each binary is the new one).
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/install.sh [--prefix DIR] [--no-build] [--from DIR]
       scripts/install.sh --uninstall [--prefix DIR]

  --prefix DIR   install under DIR (default: $HOME/hero; e.g. /usr/local)
                   DIR/bin/                          the binaries
                   DIR/share/man/man{1,5,7}/         the man pages
                   DIR/share/bash-completion/completions/, DIR/share/zsh/site-functions/,
                   DIR/share/fish/vendor_completions.d/   completions
                   DIR/share/doc/hero_usage/hero_usage.toml.example
                   DIR/share/hero_usage/installed    the manifest --uninstall reads
                 Under $HOME, the bash and fish completions also go where those
                 shells look for a user's own ($XDG_DATA_HOME, ~/.local/share).
  --no-build     do not run cargo build --release; install what --from holds
  --from DIR     take the binaries from DIR (default: target/release), e.g.
                 --no-build --from target/debug to install a debug build, or
                 --no-build --from DIR with binaries built on another machine
  --uninstall    remove what the manifest under --prefix lists (never the
                 config, the spool or units you installed); then the manifest
USAGE
}

prefix="${HOME:?HOME is not set; give --prefix}/hero"
build=1
from=""
uninstall=0
while [ $# -gt 0 ]; do
    case "$1" in
    --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    --no-build) build=0; shift ;;
    --from) from=${2:?--from needs a directory}; shift 2 ;;
    --from=*) from=${1#--from=}; shift ;;
    --uninstall) uninstall=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: error: unknown argument: $1" >&2; usage >&2; exit 64 ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
case "$prefix" in /*) ;; *) prefix="$PWD/$prefix" ;; esac
prefix=${prefix%/}
manifest_dir="$prefix/share/hero_usage"
manifest="$manifest_dir/installed"
data_home=${XDG_DATA_HOME:-$HOME/.local/share}
bash_user_dir="${BASH_COMPLETION_USER_DIR:-$data_home/bash-completion}/completions"
fish_user_dir="$data_home/fish/vendor_completions.d"

# ------------------------------------------------------------------ uninstall
# Only what the manifest lists, and only files under the prefix or in the
# completion directories this script writes to (directories, which rmdir
# removes only when empty, also under $XDG_DATA_HOME): a manifest is no
# licence to delete anything else.
allowed() { # KIND PATH
    case "$2" in
    "$prefix" | "$prefix"/* | "$bash_user_dir"/* | "$fish_user_dir"/*) return 0 ;;
    "$data_home"/*) [ "$1" = d ] ;;
    *) return 1 ;;
    esac
}

if [ "$uninstall" = 1 ]; then
    if [ ! -f "$manifest" ]; then
        echo "install.sh: error: no manifest at $manifest: nothing was installed under $prefix by this script (or give the --prefix it was installed with)" >&2
        exit 66
    fi
    removed=0
    dirs=()
    while IFS=' ' read -r kind path; do
        allowed "$kind" "$path" || { echo "install.sh: skipped $path (outside $prefix)" >&2; continue; }
        case "$kind" in
        f) if [ -f "$path" ] || [ -L "$path" ]; then rm -f -- "$path" && removed=$((removed + 1)); fi ;;
        d) dirs=("$path" "${dirs[@]}") ;; # deepest last in the file: remove in reverse
        esac
    done <"$manifest"
    rm -f -- "$manifest"
    dirs=("$manifest_dir" "${dirs[@]}")
    for d in "${dirs[@]}"; do
        [ -d "$d" ] && rmdir -- "$d" 2>/dev/null || true
    done
    echo "removed $removed files installed under $prefix (and the directories that are now empty)"
    echo "kept: your config, token and secret files, the spool, and any units or crontab line you installed;"
    echo "      stop those first (systemctl disable --now hero_usage_push.timer hero_usage_shim.service)"
    exit 0
fi

# ------------------------------------------------------------------ install
from=${from:-$root/target/release}
case "$from" in /*) ;; *) from="$PWD/$from" ;; esac
if [ "$build" = 1 ]; then
    if ! command -v cargo >/dev/null; then
        echo "install.sh: error: cargo is not installed, so the binaries cannot be built here." >&2
        echo "  build them where Rust is (cargo build --release), copy target/release/hero_usage_* here, and run:" >&2
        echo "    scripts/install.sh --no-build --from DIR    # DIR: where the five binaries are" >&2
        echo "  or install Rust with rustup (https://rustup.rs)" >&2
        exit 69
    fi
    echo "building the release binaries (cargo build --release)"
    (cd "$root" && cargo build --release --locked -p hero_usage)
fi

required=(hero_usage_record hero_usage_push hero_usage_shim hero_usage_status hero_usage_audit)
for b in "${required[@]}"; do
    if [ ! -x "$from/$b" ]; then
        echo "install.sh: error: $from/$b is missing; build it (cargo build --release) or pass --from DIR" >&2
        exit 66
    fi
done

man="$prefix/share/man"
bash_dir="$prefix/share/bash-completion/completions"
zsh_dir="$prefix/share/zsh/site-functions"
fish_dir="$prefix/share/fish/vendor_completions.d"
doc="$prefix/share/doc/hero_usage"

# Where a user's own completions go too: only under $HOME (a prefix such as
# /usr/local is already searched by bash and fish).
user_completions=0
case "$prefix" in "$HOME"/*) user_completions=1 ;; esac

new_manifest=$(mktemp)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp" "$new_manifest"' EXIT
# The directories an earlier run made stay ours.
[ -f "$manifest" ] && grep '^d ' "$manifest" >>"$new_manifest" || true

# mkdirs DIR...: create each (with parents), recording those that were missing.
mkdirs() {
    local d missing
    for d in "$@"; do
        missing=()
        local p=$d
        while [ ! -d "$p" ]; do
            missing=("$p" "${missing[@]}")
            p=$(dirname "$p")
        done
        install -d -m 755 "$d"
        for p in "${missing[@]}"; do printf 'd %s\n' "$p" >>"$new_manifest"; done
    done
}
# put MODE SRC DEST: install one file (a new inode: safe while the old one
# runs) and record it.
put() {
    install -m "$1" "$2" "$3"
    printf 'f %s\n' "$3" >>"$new_manifest"
}

mkdirs "$prefix/bin" "$man/man1" "$man/man5" "$man/man7" "$bash_dir" "$zsh_dir" "$fish_dir" "$doc" "$manifest_dir"
[ "$user_completions" = 1 ] && mkdirs "$bash_user_dir" "$fish_user_dir"

for b in "${required[@]}"; do
    put 755 "$from/$b" "$prefix/bin/$b"
done
for page in "$root"/man/*.[157]; do
    put 644 "$page" "$man/man${page##*.}/$(basename "$page")"
done
for b in "${required[@]}"; do
    "$prefix/bin/$b" --completions bash >"$tmp/bash"
    "$prefix/bin/$b" --completions zsh >"$tmp/zsh"
    "$prefix/bin/$b" --completions fish >"$tmp/fish"
    put 644 "$tmp/bash" "$bash_dir/$b"
    put 644 "$tmp/zsh" "$zsh_dir/_$b"
    put 644 "$tmp/fish" "$fish_dir/$b.fish"
    if [ "$user_completions" = 1 ]; then
        put 644 "$tmp/bash" "$bash_user_dir/$b"
        put 644 "$tmp/fish" "$fish_user_dir/$b.fish"
    fi
done
put 644 "$root/hero_usage.toml.example" "$doc/hero_usage.toml.example"

# Files an earlier version installed that this one does not: remove them.
if [ -f "$manifest" ]; then
    grep '^f ' "$manifest" | while IFS=' ' read -r _ path; do
        if ! grep -qxF "f $path" "$new_manifest" && allowed f "$path"; then rm -f -- "$path"; fi
    done
fi
sort -u "$new_manifest" | sort -k2 >"$tmp/manifest"
install -m 644 "$tmp/manifest" "$manifest"

echo "installed ${required[*]} under $prefix"
echo "  binaries     $prefix/bin"
echo "  man pages    $man (man hero_usage)"
echo "  completions  $bash_dir, $zsh_dir, $fish_dir"
echo "  example      $doc/hero_usage.toml.example"
echo "  manifest     $manifest (scripts/install.sh --uninstall --prefix $prefix removes what it lists)"
case ":${PATH:-}:" in
*":$prefix/bin:"*) ;;
*) echo "add to your shell profile: export PATH=\"$prefix/bin:\$PATH\"" ;;
esac
echo "and, unless man already finds the pages: export MANPATH=\"$man:\$(manpath 2>/dev/null)\""
case "$prefix" in
/usr | /usr/local) echo "completions: bash, zsh and fish find them where they are" ;;
*)
    if [ "$user_completions" = 1 ]; then
        echo "completions: bash and fish find them in $bash_user_dir and $fish_user_dir (new shells)"
    else
        echo "completions: for bash and fish add to your profile: export XDG_DATA_DIRS=\"$prefix/share:\${XDG_DATA_DIRS:-/usr/local/share:/usr/share}\""
    fi
    echo "  for zsh add to ~/.zshrc, before compinit: fpath=(\"$zsh_dir\" \$fpath)"
    ;;
esac
echo "next: copy the example to \$HOME/hero/cfg/hero_usage.toml (or name it with --config),"
echo "      fill it in, then run: hero_usage_push --check"
