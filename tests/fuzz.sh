#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time (tests/all.sh calls this with no
# arguments), or chosen targets for as long as you like:
#
#   tests/fuzz.sh                                  # every target, about 75 s in all
#   FUZZ_SECONDS=600 tests/fuzz.sh request_body    # one target, 10 minutes
#
# libFuzzer through cargo-fuzz on stable Rust, without a sanitizer (see fuzz/README.md for
# why). cargo-fuzz is installed once, pinned, under ${MODELGATE_CACHE:-~/.cache/modelgate}.
# New inputs that reach new code are kept in the cache (so later runs start from them); the
# committed seeds in fuzz/corpus/ and fuzz/regressions/ are only read. An input that breaks a
# property is saved, and the script says how to minimize it and turn it into a regression test.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${MODELGATE_CACHE:-$HOME/.cache/modelgate}"
version=0.13.2
tools="$cache/cargo-fuzz-$version"
# Its own target directory: the fuzz build instruments every crate, so it shares nothing
# with the main build.
target_dir="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$cache/target}-fuzz}"

if [[ ! -x "$tools/bin/cargo-fuzz" ]]; then
  echo "tests/fuzz.sh: installing cargo-fuzz $version into $tools (first run only: about a minute)" >&2
  cargo install --quiet --locked cargo-fuzz --version "$version" --root "$tools" --target-dir "$tools/build"
  rm -rf "$tools/build"
fi
export PATH="$tools/bin:$PATH"

# The fuzz crate builds the library at exactly the versions the main build uses: its lock
# file is the main one, plus the few fuzz-only crates cargo adds to it.
cp "$root/Cargo.lock" "$root/fuzz/Cargo.lock"

# -O: optimized, with debug assertions and overflow checks (-a); no sanitizer, so stable Rust
# will do; 16 codegen units instead of cargo-fuzz's default 1, so both cores share each large
# crate (a faster build for a somewhat slower target).
flags=(-O -a --sanitizer none --codegen-units 16 --target-dir "$target_dir")
cd "$root/fuzz"
mapfile -t all < <(cargo fuzz list)
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${all[@]}")

# FUZZ_SECONDS per target, or FUZZ_TOTAL_SECONDS (default 75) shared by the targets run,
# at least 5 s each.
seconds="${FUZZ_SECONDS:-$(( ${FUZZ_TOTAL_SECONDS:-75} / ${#targets[@]} ))}"
(( seconds >= 5 )) || seconds=5

started=$SECONDS
cargo fuzz build "${flags[@]}"
echo "tests/fuzz.sh: fuzz targets built in $((SECONDS - started)) s" >&2

# The library lies outside the fuzz workspace, so cargo puts the checkout's absolute path into
# the hash of every unit built from it: a clone in another directory builds them all anew and
# would leave the old copies in the cache, about 1 GB a checkout. Keep only this build's.
prune_other_checkouts() {
  local dir="$target_dir/x86_64-unknown-linux-gnu/release" keep=() oldest="" t f lib h base
  for t in "${all[@]}"; do
    # The binary cargo-fuzz runs is a hard link to this build's copy in deps/.
    f="$(find "$dir/deps" -maxdepth 1 -name "$t-????????????????" -samefile "$dir/$t" 2>/dev/null | head -n1)"
    [[ -n "$f" ]] || return 0
    keep+=("${f##*-}")
    [[ -z "$oldest" || "$f" -ot "$oldest" ]] && oldest="$f"
  done
  # This build's library is the newest one not written after the binaries linked against it.
  lib="$(find "$dir/deps" -maxdepth 1 -name 'libmodelgate-*.rlib' ! -newer "$oldest" -printf '%T@ %f\n' |
    sort -n | tail -n1 | sed -E 's/.*-([0-9a-f]{16})\.rlib$/\1/')"
  [[ -n "$lib" ]] || return 0
  keep+=("$lib")
  for f in "$dir"/deps/* "$dir"/.fingerprint/*; do
    base="${f##*/}"
    [[ "$base" =~ ^(lib)?(modelgate|modelgate-fuzz|[a-z0-9_]+)-([0-9a-f]{16})(\..*)?$ ]] || continue
    case " modelgate modelgate-fuzz ${all[*]} " in *" ${BASH_REMATCH[2]} "*) ;; *) continue ;; esac
    h="${BASH_REMATCH[3]}"
    [[ " ${keep[*]} " == *" $h "* ]] || rm -rf -- "$f"
  done
}
prune_other_checkouts
for target in "${targets[@]}"; do
  corpus="$cache/fuzz/corpus/$target"
  artifacts="$cache/fuzz/artifacts/$target"
  mkdir -p "$corpus" "$artifacts"
  echo "tests/fuzz.sh: $target for ${seconds}s" >&2
  log="$(mktemp)"
  if ! cargo fuzz run "${flags[@]}" "$target" "$corpus" "$root/fuzz/corpus/$target" "$root/fuzz/regressions/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$artifacts/" \
    -print_final_stats=1 >"$log" 2>&1; then
    tail -n 25 "$log" >&2
    echo "--- what broke:" >&2
    grep -A2 -m1 "panicked at" "$log" >&2 || true
    crash="$(grep -o "Test unit written to [^ ]*" "$log" | tail -n1 | sed 's/Test unit written to //')"
    cat >&2 <<EOF

tests/fuzz.sh: $target found an input that breaks a property${crash:+: $crash}
  minimize it:  (cd fuzz && cargo fuzz tmin ${flags[*]} $target ${crash:-<input>})
  then commit the minimized input to fuzz/regressions/$target/ (cargo test replays it) and fix the bug.
EOF
    rm -f "$log"
    exit 1
  fi
  grep -E "^(stat::number_of_executed_units|stat::new_units_added|#[0-9]+.*DONE)" "$log" | tr '\n' ' ' >&2 || true
  echo >&2
  rm -f "$log"
done
