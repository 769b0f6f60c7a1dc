#!/usr/bin/env bash
# The operator benchmarks of issue 5 in one command:
#
#   bench/operator/run.sh            # full run: 1,000 at once, then 10,000; ~10-15 min after the build
#   bench/operator/run.sh --quick    # smoke run (200 at once, 1,000 in all, 10 probes); results/quick-latest.*
#
# Builds modelgate in release mode, gets a throwaway control plane from
# tests/controlplane/run.sh (or uses KUBECONFIG's cluster with
# MODELGATE_USE_EXISTING_CLUSTER=1), then runs bench.py, which starts one controller and one
# gateway as the ServiceAccounts of config/rbac/ and writes results/latest.{md,json}.
# Options after --quick are passed to bench.py (see `python3 bench/operator/bench.py --help`);
# MODELGATE_BIN=PATH skips the build and uses that binary.
#
# Clean-up: bench.py stops the controller and gateway it started (by pid: SIGTERM, then
# SIGKILL) when it ends, fails or gets SIGTERM/Ctrl-C; they also get SIGTERM if bench.py is
# killed outright (PR_SET_PDEATHSIG). tests/controlplane/run.sh stops etcd and kube-apiserver
# the same way.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
say() { printf 'bench-operator: %s\n' "$*" >&2; }

for tool in python3 cargo curl openssl; do
  command -v "$tool" >/dev/null || { say "error: '$tool' is needed"; exit 1; }
done

args=()
if [[ "${1:-}" == --quick ]]; then
  shift
  args+=(--at-once 200 --large 1000 --probes 10 --out quick-latest --load-bound 120 --ready-bound 60 --steady 5)
fi
args+=("$@")

if [[ -n "${MODELGATE_BIN:-}" ]]; then
  bin="$MODELGATE_BIN"
else
  target="${CARGO_TARGET_DIR:-$HOME/.cache/modelgate/target}"
  say "building modelgate (release) into $target"
  dirty_before="$(git -C "$repo" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | wc -l)"
  head_before="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || true)"
  started=$SECONDS
  (cd "$repo" && CARGO_TARGET_DIR="$target" cargo build --release --quiet) || {
    say "error: cargo build --release failed"
    exit 1
  }
  say "built in $((SECONDS - started)) s"
  # What the binary was built from (others may commit or edit src/ while the run goes on).
  MODELGATE_BENCH_BUILD_COMMIT="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || true)"
  MODELGATE_BENCH_BUILD_DIRTY="$(git -C "$repo" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null | wc -l)"
  # Edits or commits during the build make the binary's source uncertain: say so.
  if [[ "$dirty_before" != 0 || "$head_before" != "$MODELGATE_BENCH_BUILD_COMMIT" ]]; then
    MODELGATE_BENCH_BUILD_DIRTY=$((MODELGATE_BENCH_BUILD_DIRTY + 1))
  fi
  export MODELGATE_BENCH_BUILD_COMMIT MODELGATE_BENCH_BUILD_DIRTY
  bin="$target/release/modelgate"
fi
[[ -x "$bin" ]] || { say "error: no modelgate binary at $bin"; exit 1; }

exec "$repo/tests/controlplane/run.sh" python3 "$here/bench.py" --modelgate-bin "$bin" "${args[@]}"
