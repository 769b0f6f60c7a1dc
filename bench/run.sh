#!/usr/bin/env bash
# One command for the whole benchmark: bash bench/run.sh [--quick] [--proxies nginx,litellm,modelgate] ...
# It installs what it needs (nginx, oha, LiteLLM in a venv), builds the mock upstream and modelgate,
# runs every figure and writes bench/results/latest.{md,json} (quick-latest.* with --quick).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v python3 >/dev/null 2>&1; then
  echo "bench: python3 (3.11) is required" >&2
  exit 1
fi
if ! command -v taskset >/dev/null 2>&1; then
  echo "bench: taskset (util-linux) is required" >&2
  exit 1
fi
if [ "$(nproc)" -lt 2 ]; then
  echo "bench: needs at least 2 CPUs (proxies on core 0, mock and load generator on core 1)" >&2
  exit 1
fi
exec python3 "$here/bench.py" "$@"
