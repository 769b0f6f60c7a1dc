#!/usr/bin/env python3
"""Resilient routing on the bench: what a policy costs on the happy path, and what a failover
costs beyond the failed attempt.

    python3 bench/resilience.py [--modelgate-bin PATH] [--mock-bin PATH] [--requests N]

bench/run.sh runs it as figure 5 (`--skip resilience` leaves it out). One modelgate serves four
aliases over the bench's mock upstream (0 ms):

* `plain`: `target: mock/mock-model`, today's route;
* `resilient`: the same target with every policy set — `loadBalancing: roundRobin`, `retry`,
  `timeouts: {firstToken, total}`, `outlierDetection` and a fallback tier — on the happy path;
* `failing`: a provider on a closed local port (connection refused: a 502 at once);
* `failover`: that provider first, falling back to the mock.

Figures: (a) user-space instructions per request under callgrind (exact, whatever else runs on
the machine), and (b) median latency at concurrency 1 over one keep-alive connection, in
interleaved rounds. The failover overhead is `failover - failing - plain`: what the gateway adds
to the failed attempt and the successful one it is made of.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the bench's process, port and client helpers)

ALIASES = ("plain", "resilient", "failing", "failover")


def write_config(d: Path, mock_port: int, dead_port: int) -> None:
    d.mkdir(parents=True, exist_ok=True)
    provider = """apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {{name: {name}, namespace: default}}
spec:
  type: openai-compatible
  baseUrl: http://127.0.0.1:{port}/v1
  apiKey: {{env: BENCH_UPSTREAM_KEY}}
"""
    alias = """apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {{name: {name}, namespace: default}}
spec: {spec}
"""
    docs = [
        provider.format(name="mock", port=mock_port),
        provider.format(name="dead", port=dead_port),
        alias.format(name="plain", spec="{target: mock/mock-model}"),
        alias.format(name="resilient", spec=(
            "{targets: [{target: mock/mock-model, weight: 100}], loadBalancing: roundRobin, "
            "retry: {attempts: 2, backoff: 100ms}, timeouts: {firstToken: 10s, total: 60s}, "
            "outlierDetection: {consecutiveFailures: 5, ejectionTime: 30s}, "
            "fallbacks: [{target: mock/mock-model-fallback}]}")),
        alias.format(name="failing", spec="{target: dead/mock-model}"),
        alias.format(name="failover", spec="{target: dead/mock-model, fallbacks: [{target: mock/mock-model}]}"),
    ]
    (d / "bench.yaml").write_text("---\n".join(docs))


def body(model: str) -> str:
    return bench.body_for(model)


def start_gateway(binary: str, cfg: Path, tmp: Path, under_callgrind: Path | None):
    port, admin = bench.free_port(), bench.free_port()
    env = dict(os.environ, BENCH_UPSTREAM_KEY="sk-bench-dummy", RUST_LOG="error")
    argv = [binary, "gateway", "--config", str(cfg), "--listen", f"127.0.0.1:{port}",
            "--admin-listen", f"127.0.0.1:{admin}"]
    if under_callgrind is not None:
        argv = ["valgrind", "--tool=callgrind", "--dump-instr=no",
                f"--callgrind-out-file={under_callgrind}", *argv]
    p = bench.PROCS.start("resilience-gateway" + ("-callgrind" if under_callgrind else ""), argv,
                          bench.PROXY_CPU, tmp, env=env)
    bench.wait_http_ok(f"http://127.0.0.1:{admin}/readyz", 180, p, "modelgate")
    return p, port


def drive(client: bench.SseClient, model: str, n: int) -> list[float]:
    """n requests; their latencies in ms. Checks every answer."""
    expect = 502 if model == "failing" else 200
    out = []
    for _ in range(n):
        r = client.request("/v1/chat/completions", body(model))
        if r["status"] != expect:
            raise bench.BenchError(f"{model}: status {r['status']}, expected {expect}")
        out.append(r["total_ms"])
    return out


def instructions(binary: str, cfg: Path, tmp: Path, n: int, warmup: int) -> dict:
    d = tmp / "callgrind"
    d.mkdir()
    p, port = start_gateway(binary, cfg, tmp, d / "callgrind.out")
    out = {}
    try:
        client = bench.SseClient("127.0.0.1", port)
        for model in ALIASES:
            drive(client, model, warmup)
        for model in ALIASES:
            bench.run_cmd(["callgrind_control", "-z", str(p.pid)], timeout=60, check=True, capture_output=True)
            drive(client, model, n)
            before = set(d.glob("callgrind.out.*"))
            bench.run_cmd(["callgrind_control", "-d", str(p.pid)], timeout=60, check=True, capture_output=True)
            new = sorted(set(d.glob("callgrind.out.*")) - before) or sorted(d.glob("callgrind.out.*"))
            total = bench.callgrind_summary(new[-1])
            out[model] = None if total is None else round(total / n)
            bench.log(f"resilience instructions: {model} {out[model]} per request")
        client.close()
    finally:
        bench.PROCS.stop(p)
    return out


def latency(binary: str, cfg: Path, tmp: Path, rounds: int, n: int) -> dict:
    p, port = start_gateway(binary, cfg, tmp, None)
    per: dict[str, list[float]] = {m: [] for m in ALIASES}
    try:
        client = bench.SseClient("127.0.0.1", port)
        for model in ALIASES:
            drive(client, model, 50)
        for r in range(rounds):
            for model in ALIASES:
                per[model].append(statistics.median(drive(client, model, n)))
            bench.log(f"resilience latency round {r + 1}/{rounds}: " +
                      ", ".join(f"{m} {per[m][-1]:.3f} ms" for m in ALIASES))
        client.close()
    finally:
        bench.PROCS.stop(p)
    return {m: round(statistics.median(v), 4) for m, v in per.items()}


def figure(tmp: Path, mock_port: int, binary: str, requests: int, rounds: int) -> dict:
    cfg = tmp / "resilience-config"
    write_config(cfg, mock_port, bench.free_port())  # nothing listens on the dead port
    result: dict = {"requests": requests, "rounds": rounds}
    result["instructions_per_request"] = ins = instructions(binary, cfg, tmp, requests, 200)
    result["p50_ms"] = lat = latency(binary, cfg, tmp, rounds, requests)
    if all(ins.get(k) for k in ALIASES):
        result["happy_path_instructions_ratio"] = round(ins["resilient"] / ins["plain"], 3)
        result["failover_extra_instructions"] = ins["failover"] - ins["failing"] - ins["plain"]
    result["happy_path_p50_ratio"] = round(lat["resilient"] / lat["plain"], 3)
    result["failover_extra_ms"] = round(lat["failover"] - lat["failing"] - lat["plain"], 4)
    return result


def render(result: dict) -> str:
    ins, lat = result.get("instructions_per_request", {}), result.get("p50_ms", {})
    rows = ["| alias | instructions / request | p50 (ms) |", "| --- | --- | --- |"]
    for m in ALIASES:
        rows.append(f"| `{m}` | {ins.get(m)} | {lat.get(m)} |")
    rows.append("")
    rows.append(f"happy path with every policy set: {result.get('happy_path_instructions_ratio')}x the "
                f"instructions of a plain route (target ≤ 1.10), p50 {result.get('happy_path_p50_ratio')}x; "
                f"failover beyond the failed attempt and the successful one: "
                f"{result.get('failover_extra_instructions')} instructions, "
                f"{result.get('failover_extra_ms')} ms (target ≤ 1 ms)")
    return "\n".join(rows) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modelgate-bin", default=str(bench.GATEWAY_TARGET / "release" / "modelgate"))
    ap.add_argument("--mock-bin", default=str(bench.BENCH_TARGET / "release" / "mock-upstream"))
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=str(bench.HERE / "results" / "resilience-latest"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="modelgate-resilience-") as t:
        tmp = Path(t)
        mock_args = argparse.Namespace(chunks=20, chunk_interval_ms=10, burst_chunks=200)
        bench.BENCH_TARGET = Path(args.mock_bin).parent.parent
        try:
            _mock, port = bench.start_mock("mock-upstream", tmp, mock_args, 0)
            result = figure(tmp, port, args.modelgate_bin, args.requests, args.rounds)
        finally:
            bench.PROCS.stop_all()
    Path(args.out + ".json").write_text(json.dumps(result, indent=2) + "\n")
    md = render(result)
    Path(args.out + ".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
