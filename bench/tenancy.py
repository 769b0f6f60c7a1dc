#!/usr/bin/env python3
"""CPU per request of the tenant stage: the open gateway beside the same gateway with
`--auth api-key` and a team with limits and credits, on the memory store and on Redis, in
one run (interleaved rounds, fixed open-loop rate), plus Redis commands per request.

    python3 bench/tenancy.py [--rate 1000] [--seconds 5] [--rounds 3] [--modelgate-bin PATH]

Uses bench.py's pieces (mock upstream, oha, pinning: gateways on CPU 0, load and mock on
CPU 1; Redis on CPU 1 too, as another machine would be). Writes
bench/results/tenancy-latest.{md,json}.
"""

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench as b  # noqa: E402

KEY = "mg-bench-tenancy-key"
TENANCY_YAML = """---
apiVersion: modelgate.dev/v1alpha1
kind: AccessGroup
metadata: {{name: bench, namespace: default}}
spec: {{aliases: [bench-model, bench-model-slow]}}
---
apiVersion: modelgate.dev/v1alpha1
kind: Team
metadata: {{name: bench, namespace: default}}
spec:
  accessGroups: [bench]
  credits: {{allocated: "1000000.00", period: Monthly}}
  limits: {{requestsPerMinute: 100000000, tokensPerMinute: 1000000000000, maxParallelRequests: 100000}}
---
apiVersion: v1
kind: Secret
metadata:
  name: bench-key
  namespace: default
  labels: {{modelgate.dev/api-key: "true", modelgate.dev/team: bench}}
type: modelgate.dev/api-key
stringData: {{keyHash: "{hash}"}}
"""


def key_hash(key: str) -> str:
    import hashlib
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def load(url: str, body: str, key: str | None, rate: float, seconds: float) -> dict:
    argv = ["taskset", "-c", b.LOAD_CPU, b.oha_bin(), "--no-tui", "--output-format", "json",
            "-m", "POST", "-H", "content-type: application/json", "-d", body,
            "-c", "4", "-t", "10s", "-z", f"{seconds}s", "-w", "-q", str(rate), "--latency-correction"]
    if key:
        argv += ["-H", f"authorization: Bearer {key}"]
    argv.append(url)
    r = b.run_cmd(argv, timeout=seconds + 120, capture_output=True, text=True)
    if r.returncode != 0:
        raise b.BenchError(f"oha failed: {r.stderr[:300]}")
    return b.parse_oha(json.loads(r.stdout))


def redis_stats(sock: Path) -> dict:
    out = subprocess.run(["redis-cli", "-s", str(sock), "INFO", "commandstats"], capture_output=True,
                         text=True, timeout=10).stdout
    calls = {}
    for line in out.splitlines():
        if line.startswith("cmdstat_"):
            name, rest = line[len("cmdstat_"):].split(":", 1)
            fields = dict(kv.split("=") for kv in rest.split(","))
            calls[name] = int(fields["calls"])
    return calls


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modelgate-bin", default=None)
    args = ap.parse_args()
    args.chunks, args.chunk_interval_ms = 20, 10
    for need, path in [("oha", Path(b.oha_bin())), ("mock upstream", b.BENCH_TARGET / "release" / "mock-upstream"),
                       ("modelgate", Path(b.modelgate_bin(args)))]:
        if not path.exists():
            print(f"tenancy bench: {need} is missing at {path}; run bash bench/run.sh --quick once "
                  "(it installs and builds everything), or pass --modelgate-bin", file=sys.stderr)
            return 1
    tmp = Path(tempfile.mkdtemp(prefix="mg-tenancy-bench-"))
    try:
        return run(args, tmp)
    finally:
        b.PROCS.stop_all()


def run(args, tmp: Path) -> int:
    _, fast = b.start_mock("mock", tmp, args, 0)
    _, slow = b.start_mock("mock-slow", tmp, args, 20)
    sock = tmp / "redis.sock"
    redis = b.PROCS.start("redis", ["redis-server", "--port", "0", "--unixsocket", str(sock), "--save", "",
                                    "--appendonly", "no", "--dir", str(tmp)], b.LOAD_CPU, tmp)
    targets = {}
    for name, extra in [("open", []), ("keys+limits, memory store", ["--auth", "api-key"]),
                        ("keys+limits, Redis store", ["--auth", "api-key", "--usage-store", f"redis+unix://{sock}"])]:
        cfg = tmp / f"cfg-{len(targets)}"
        b.write_modelgate_config(cfg, fast, slow)
        if extra:
            (cfg / "20-tenancy.yaml").write_text(TENANCY_YAML.format(hash=key_hash(KEY)))
        port, admin = b.free_port(), b.free_port()
        env = dict(b.os.environ, BENCH_UPSTREAM_KEY="sk-bench-dummy", RUST_LOG="warn")
        p = b.PROCS.start(f"gw{len(targets)}", [b.modelgate_bin(args), "gateway", "--config", str(cfg),
                                                "--listen", f"127.0.0.1:{port}", "--admin-listen",
                                                f"127.0.0.1:{admin}", *extra], b.PROXY_CPU, tmp, env=env)
        b.wait_http_ok(f"http://127.0.0.1:{admin}/readyz", 20, p, name)
        targets[name] = (p, port, KEY if extra else None)
    url = lambda port: f"http://127.0.0.1:{port}/v1/chat/completions"  # noqa: E731
    for name, (_, port, key) in targets.items():
        res = load(url(port), b.BODY, key, 100, 1)
        if res["ok"] != res["requests"]:
            raise b.BenchError(f"{name}: {res['requests'] - res['ok']} of {res['requests']} requests failed")
    hz = b.os.sysconf("SC_CLK_TCK")
    per = {name: [] for name in targets}
    redis_per = []
    for r in range(args.rounds):
        for name, (p, port, key) in b.rotated(list(targets.items()), r):
            before, stats0, rc0 = b.cpu_ticks(p.pid), redis_stats(sock), b.cpu_ticks(redis.pid)
            res = load(url(port), b.BODY, key, args.rate, args.seconds)
            used = (b.cpu_ticks(p.pid) - before) / hz
            per[name].append({"requests": res["ok"], "errors": res["errors"],
                              "cpu_us_per_request": used / max(1, res["ok"]) * 1e6})
            if "Redis" in name:
                stats1 = redis_stats(sock)
                evalsha = stats1.get("evalsha", 0) - stats0.get("evalsha", 0)
                total = sum(stats1.values()) - sum(stats0.values())
                redis_per.append({"evalsha_per_request": evalsha / max(1, res["ok"]),
                                  "commands_per_request": total / max(1, res["ok"]),
                                  "redis_cpu_us_per_request": (b.cpu_ticks(redis.pid) - rc0) / hz / max(1, res["ok"]) * 1e6})
        b.log(f"round {r + 1}: " + ", ".join(f"{n} {v[-1]['cpu_us_per_request']:.1f} µs" for n, v in per.items()))
    med = {n: b.median([x["cpu_us_per_request"] for x in v]) for n, v in per.items()}
    base = med["open"]
    rows = [f"| {n} | {med[n]:.1f} | {med[n] / base:.2f}× | {sum(x['errors'] for x in per[n])} |" for n in per]
    rd = {k: b.median([x[k] for x in redis_per]) for k in redis_per[0]} if redis_per else {}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=b.REPO).stdout.strip()
    md = f"""# Tenant stage: CPU per request

{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit}; {args.rounds} interleaved rounds of
{args.seconds:g} s at {args.rate:g} req/s (open loop, 4 connections); medians. Gateways on CPU 0; the
mock upstream, oha and Redis on CPU 1.

| gateway | CPU per request, µs | ÷ open | errors |
|---|---|---|---|
{chr(10).join(rows)}

Redis store: {rd.get('evalsha_per_request', 0):.2f} EVALSHA and {rd.get('commands_per_request', 0):.2f} commands per
request (one on the request path, the admission; the settlement is pipelined after the response),
{rd.get('redis_cpu_us_per_request', 0):.1f} µs of Redis CPU per request.
"""
    out = b.HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "tenancy-latest.md").write_text(md)
    (out / "tenancy-latest.json").write_text(json.dumps({"per_round": per, "median_us": med, "redis": redis_per,
                                                         "args": vars(args), "commit": commit}, indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
