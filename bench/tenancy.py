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


def load_python(port: int, body: str, key: str | None, total: int, connections: int = 4) -> dict:
    """Fallback driver when oha is not installed: `connections` keep-alive clients in threads,
    `total` requests closed-loop. Only the gateway's CPU time is measured, so the driver's own
    speed does not enter the figure."""
    import http.client
    import threading
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    counts = {"ok": 0, "errors": 0}
    lock = threading.Lock()

    def worker(n: int):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        ok = errors = 0
        for _ in range(n):
            try:
                conn.request("POST", "/v1/chat/completions", body, headers)
                r = conn.getresponse()
                r.read()
                ok, errors = (ok + 1, errors) if r.status == 200 else (ok, errors + 1)
            except OSError:
                errors += 1
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        with lock:
            counts["ok"] += ok
            counts["errors"] += errors

    threads = [threading.Thread(target=worker, args=(total // connections,)) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"ok": counts["ok"], "errors": counts["errors"], "requests": counts["ok"] + counts["errors"]}


MOCK_PROVIDER_YAML = """apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {name: local, namespace: default}
spec: {type: mock}
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {name: bench-model, namespace: default}
spec: {target: local/mock-model}
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {name: bench-model-slow, namespace: default}
spec: {target: local/mock-model}
"""


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
    ap.add_argument("--mock-bin", default=None, help="bench/mock-upstream binary (default: the bench's cache)")
    ap.add_argument("--skip", default="", help="comma-separated: cpu, instructions")
    ap.add_argument("--requests", type=int, default=1000, help="requests counted under callgrind, per gateway")
    ap.add_argument("--only", default="", help="comma-separated gateways for the instructions figure: "
                    "open, memory, redis (default: all three)")
    ap.add_argument("--profile-dir", default=None, help="keep each gateway's callgrind dump (with "
                    "--dump-instr=yes) in this directory, for callgrind_annotate")
    ap.add_argument("--out", default=None, help="results basename under bench/results (default tenancy-latest)")
    args = ap.parse_args()
    args.skip = {x for x in args.skip.split(",") if x}
    args.chunks, args.chunk_interval_ms, args.burst_chunks = 20, 10, 200
    if args.mock_bin:
        b.BENCH_TARGET = Path(args.mock_bin).resolve().parent.parent
    if not Path(b.modelgate_bin(args)).exists():
        print(f"tenancy bench: no modelgate at {b.modelgate_bin(args)}; build it (cargo build --release) "
              "or pass --modelgate-bin", file=sys.stderr)
        return 1
    # Without oha or the mock upstream (bash bench/run.sh --quick installs both), a Python
    # driver and the gateway's own `type: mock` provider stand in; the table says so.
    args.oha = Path(b.oha_bin()).exists()
    args.upstream = (b.BENCH_TARGET / "release" / "mock-upstream").exists()
    tmp = Path(tempfile.mkdtemp(prefix="mg-tenancy-bench-"))
    try:
        return run(args, tmp)
    finally:
        b.PROCS.stop_all()


GATEWAYS = {"open": "open", "memory": "keys+limits, memory store", "redis": "keys+limits, Redis store"}


def gateway_argv(args, tmp: Path, i: int, short: str, fast: int, slow: int, sock: Path) -> tuple[list[str], int, int]:
    """The command line of one gateway (config written under tmp), its port and admin port."""
    extra = {"open": [], "memory": ["--auth", "api-key"],
             "redis": ["--auth", "api-key", "--usage-store", f"redis+unix://{sock}"]}[short]
    cfg = tmp / f"cfg-{i}"
    if args.upstream:
        b.write_modelgate_config(cfg, fast, slow)
    else:
        cfg.mkdir(parents=True)
        (cfg / "00-bench.yaml").write_text(MOCK_PROVIDER_YAML)
    if extra:
        (cfg / "20-tenancy.yaml").write_text(TENANCY_YAML.format(hash=key_hash(KEY)))
    port, admin = b.free_port(), b.free_port()
    return ([b.modelgate_bin(args), "gateway", "--config", str(cfg), "--listen", f"127.0.0.1:{port}",
             "--admin-listen", f"127.0.0.1:{admin}", *extra], port, admin)


def instructions(args, tmp: Path, fast: int, slow: int, sock: Path) -> dict:
    """User-space instructions per request of each gateway under callgrind: 200 warm-up
    requests, counters zeroed, `--requests` requests at concurrency 1 over one keep-alive
    connection (the resilience figure's method), counters dumped. Deterministic: other work on
    the machine does not move it."""
    out = {}
    only = [x for x in (args.only.split(",") if args.only else GATEWAYS) if x]
    for i, short in enumerate(only):
        argv, port, admin = gateway_argv(args, tmp, 10 + i, short, fast, slow, sock)
        d = Path(args.profile_dir) / short if args.profile_dir else tmp / f"callgrind-{short}"
        d.mkdir(parents=True, exist_ok=True)
        for old in d.glob("callgrind.out*"):
            old.unlink()
        env = dict(b.os.environ, BENCH_UPSTREAM_KEY="sk-bench-dummy", RUST_LOG="warn")
        vg = ["valgrind", "--tool=callgrind", f"--dump-instr={'yes' if args.profile_dir else 'no'}",
              f"--callgrind-out-file={d / 'callgrind.out'}"]
        p = b.PROCS.start(f"callgrind-{short}", vg + argv, b.PROXY_CPU, tmp, env=env)
        try:
            b.wait_http_ok(f"http://127.0.0.1:{admin}/readyz", 180, p, f"{short} under callgrind")
            client = b.SseClient("127.0.0.1", port, {"Authorization": f"Bearer {KEY}"} if short != "open" else None)

            def drive(n: int):
                for _ in range(n):
                    r = client.request("/v1/chat/completions", b.BODY)
                    if r["status"] != 200:
                        raise b.BenchError(f"{short}: status {r['status']}")
            drive(200)
            b.run_cmd(["callgrind_control", "-z", str(p.pid)], timeout=60, check=True, capture_output=True)
            drive(args.requests)
            b.run_cmd(["callgrind_control", "-d", str(p.pid)], timeout=60, check=True, capture_output=True)
            client.close()
            dumps = sorted(d.glob("callgrind.out.*"), key=lambda f: f.stat().st_mtime)
            total = b.callgrind_summary(dumps[-1]) if dumps else None
            out[GATEWAYS[short]] = None if total is None else round(total / args.requests)
            b.log(f"instructions: {GATEWAYS[short]} {out[GATEWAYS[short]]} per request")
        finally:
            b.PROCS.stop(p)
    return out


def run(args, tmp: Path) -> int:
    fast = slow = 0
    if args.upstream:
        _, fast = b.start_mock("mock", tmp, args, 0)
        _, slow = b.start_mock("mock-slow", tmp, args, 20)
    sock = tmp / "redis.sock"
    redis = b.PROCS.start("redis", ["redis-server", "--port", "0", "--unixsocket", str(sock), "--save", "",
                                    "--appendonly", "no", "--dir", str(tmp)], b.LOAD_CPU, tmp)
    ins = {} if "instructions" in args.skip else instructions(args, tmp, fast, slow, sock)
    if "cpu" in args.skip:
        return report(args, {}, [], ins)
    targets = {}
    for i, short in enumerate(GATEWAYS):
        argv, port, admin = gateway_argv(args, tmp, i, short, fast, slow, sock)
        env = dict(b.os.environ, BENCH_UPSTREAM_KEY="sk-bench-dummy", RUST_LOG="warn")
        p = b.PROCS.start(f"gw{i}", argv, b.PROXY_CPU, tmp, env=env)
        b.wait_http_ok(f"http://127.0.0.1:{admin}/readyz", 20, p, GATEWAYS[short])
        targets[GATEWAYS[short]] = (p, port, KEY if short != "open" else None)
    url = lambda port: f"http://127.0.0.1:{port}/v1/chat/completions"  # noqa: E731
    def drive(port, key, rate, seconds):
        if args.oha:
            return load(url(port), b.BODY, key, rate, seconds)
        return load_python(port, b.BODY, key, int(rate * seconds))

    for name, (_, port, key) in targets.items():
        res = drive(port, key, 100, 1)
        if res["ok"] != res["requests"]:
            raise b.BenchError(f"{name}: {res['requests'] - res['ok']} of {res['requests']} requests failed")
    hz = b.os.sysconf("SC_CLK_TCK")
    per = {name: [] for name in targets}
    redis_per = []
    for r in range(args.rounds):
        for name, (p, port, key) in b.rotated(list(targets.items()), r):
            before, stats0, rc0 = b.cpu_ticks(p.pid), redis_stats(sock), b.cpu_ticks(redis.pid)
            res = drive(port, key, args.rate, args.seconds)
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
    return report(args, per, redis_per, ins)


def report(args, per: dict, redis_per: list, ins: dict) -> int:
    med = {n: b.median([x["cpu_us_per_request"] for x in v]) for n, v in per.items()}
    rd = {k: b.median([x[k] for x in redis_per]) for k in redis_per[0]} if redis_per else {}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=b.REPO).stdout.strip()
    md = f"""# Tenant stage: cost per request

{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit}. Upstream: {"the mock upstream (bench/mock-upstream), the main bench's pass-through path" if args.upstream else "the gateway's own type: mock provider (no upstream socket: a smaller baseline, so a larger ratio)"}.
Gateways on CPU 0; load, upstream and Redis on CPU 1.
"""
    if ins:
        base = ins.get("open")
        rows = [f"| {n} | {v:,} | {f'{v / base:.3f}×' if base and v else '–'} |" for n, v in ins.items() if v]
        md += f"""
User-space instructions per request (callgrind; {args.requests} requests at concurrency 1 on one keep-alive
connection after 200 warm-up requests; deterministic, unaffected by other work on the machine; kernel work not
counted). Goal: keys+limits on the memory store ≤ 1.15× open.

| gateway | instructions / request | ÷ open |
|---|---|---|
{chr(10).join(rows)}
"""
    if med:
        base = med["open"]
        rows = [f"| {n} | {med[n]:.1f} | {med[n] / base:.2f}× | {sum(x['errors'] for x in per[n])} |" for n in per]
        md += f"""
CPU time per request ({args.rounds} interleaved rounds, medians; load: {"oha, open loop at %g req/s for %g s, 4 connections" % (args.rate, args.seconds) if args.oha
else "the Python fallback driver, %d requests closed-loop on 4 connections" % int(args.rate * args.seconds)}).
Timing figure: other work on the 2-core machine moves it.

| gateway | CPU per request, µs | ÷ open | errors |
|---|---|---|---|
{chr(10).join(rows)}

Redis store: {rd.get('evalsha_per_request', 0):.2f} EVALSHA per request: the admission (the one round trip on the
request path) and the settlement (pipelined with others after the response); Redis counted
{rd.get('commands_per_request', 0):.1f} commands per request, those the two scripts run included;
{rd.get('redis_cpu_us_per_request', 0):.1f} µs of Redis CPU per request.
"""
    out = b.HERE / "results"
    out.mkdir(exist_ok=True)
    name = args.out or "tenancy-latest"
    (out / f"{name}.md").write_text(md)
    (out / f"{name}.json").write_text(json.dumps({"instructions_per_request": ins, "per_round": per,
                                                  "median_us": med, "redis": redis_per,
                                                  "args": {k: (sorted(v) if isinstance(v, set) else v)
                                                           for k, v in vars(args).items()},
                                                  "commit": commit}, indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
