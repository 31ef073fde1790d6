#!/usr/bin/env bash
# Fuzz one target for SECONDS (default 60) on stable Rust:
#
#   scripts/fuzz.sh TARGET [SECONDS]
#
# TARGET: stdin_lines, drop_file, hour_file, shim_request, config_file
# (fuzz/fuzz_targets/; each calls its property in src/props.rs). Needs
# cargo-fuzz (`cargo install cargo-fuzz`) and a C++ compiler; runs with no
# sanitizer (`-s none`, so no nightly), optimized, at nice 19.
# Starts from the seeds in fuzz/corpus/TARGET with fuzz/dict/TARGET.dict;
# what it learns goes to fuzz/target/corpus/TARGET (not committed). A crash
# is saved in fuzz/artifacts/TARGET/: fix it, and copy the input into
# fuzz/corpus/TARGET/ as a regression (cargo test replays every corpus).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
target=${1:?usage: scripts/fuzz.sh TARGET [SECONDS]}
seconds=${2:-60}
cd "$here/fuzz"
[ -d "corpus/$target" ] || { echo "fuzz.sh: no target $target (see fuzz/corpus/)" >&2; exit 64; }
command -v cargo-fuzz >/dev/null || { echo "fuzz.sh: cargo-fuzz is needed: cargo install cargo-fuzz" >&2; exit 1; }
mkdir -p "target/corpus/$target" "artifacts/$target"
exec nice -n 19 cargo fuzz run -s none -O "$target" "target/corpus/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -dict="dict/$target.dict" -artifact_prefix="artifacts/$target/" \
    -max_len=65536 -timeout=10 -print_final_stats=1
