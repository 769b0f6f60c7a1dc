#!/usr/bin/env bash
# Instructions per KB of each guardrail scan of benches/guardrails.rs, counted by callgrind:
# the figure a shared, loaded machine cannot blur. Each case runs once and RUNS+1 times; the
# difference over RUNS is one run, without set-up (compiling the rules, building the inputs).
# Needs valgrind. Usage: bench/guardrails-callgrind.sh [RUNS] (default 20). GUARDRAILS_BENCH_BIN
# counts an already built bench binary instead (a copy of an earlier commit's, for before/after).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
export CARGO_PROFILE_BENCH_LTO=${CARGO_PROFILE_BENCH_LTO:-false}
bin=${GUARDRAILS_BENCH_BIN:-}
[ -n "$bin" ] || bin=$(cargo bench --bench guardrails --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "guardrails" and m.get("executable"):
        print(m["executable"])')
out=$(mktemp)
trap 'rm -f "$out"' EXIT
count() { # case runs -> instructions; the case's "name: bytes bytes, ..." line in $out
    GUARDRAILS_BENCH_CASE=$1 GUARDRAILS_BENCH_RUNS=$2 valgrind --tool=callgrind \
        --callgrind-out-file=/dev/null "$bin" 2>&1 >"$out" | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
case=0
while :; do
    one=$(count "$case" 1) || true
    [ -n "$one" ] && [ -s "$out" ] || break
    line=$(cat "$out")
    many=$(count "$case" $((runs + 1)))
    name=${line%%: *}
    bytes=$(sed -n 's/.*: \([0-9]*\) bytes.*/\1/p' <<<"$line")
    awk -v n="$name" -v a="$one" -v b="$many" -v r="$runs" -v k="$bytes" \
        'BEGIN { per = (b - a) / r; printf "%s: %.0f instructions per KB (%.0f per run of %d bytes)\n", n, per / (k / 1024), per, k }'
    case=$((case + 1))
done
