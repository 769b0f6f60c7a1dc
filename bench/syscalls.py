#!/usr/bin/env python3
"""Syscalls per request and epoll_wait batch sizes of nginx and modelgate (plain HTTP, one core
each, as bench/bench.py sets them up) under a closed-loop load (wrk, 32 connections) and an
open-loop one (a fixed rate over 32 connections), counted with perf on the syscall tracepoints.

    python3 bench/syscalls.py --bin target/release/modelgate --mock-bin PATH/mock-upstream [--rates 300,1000]

Prints one JSON line per proxy and load. Only the counts are the point (perf records every
syscall exit of the proxy); the latencies of the small Python open-loop generator
(bench/openloop.py) are not a benchmark figure."""
import argparse, collections, json, os, re, subprocess, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench, https
from bench import PROCS, PROXY_CPU, LOAD_CPU, free_port
ap = argparse.ArgumentParser()
ap.add_argument("--bin", required=True); ap.add_argument("--mock-bin", required=True); ap.add_argument("--rates", default="3000")
ap.add_argument("--seconds", type=float, default=3)
ap.add_argument("--https", action="store_true", help="both proxies reach the mock through bench/https.py's TLS front")
a = ap.parse_args()
bench.BENCH_TARGET = Path(a.mock_bin).parent.parent
tmp = Path(tempfile.mkdtemp(prefix="modelgate-syscalls-")); os.chmod(tmp, 0o755)
NAMES = {0: "read", 1: "write", 20: "writev", 44: "sendto", 45: "recvfrom", 232: "epoll_wait", 281: "epoll_pwait", 202: "futex", 233: "epoll_ctl", 288: "accept4"}
def measure(pid, load):
    data = tmp / f"perf-{pid}-{time.time()}.data"
    rec = subprocess.Popen(["perf", "record", "-q", "-e", "raw_syscalls:sys_exit", "-p", str(pid), "-o", str(data)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    res = load()
    rec.send_signal(2); rec.wait(timeout=60)
    out = subprocess.run(["perf", "script", "-i", str(data)], capture_output=True, text=True).stdout
    counts, batches = collections.Counter(), []
    for m in re.finditer(r"NR (\d+) = (-?\d+)", out):
        nr, ret = int(m.group(1)), int(m.group(2))
        counts[NAMES.get(nr, str(nr))] += 1
        if nr in (232, 281) and ret >= 0:
            batches.append(ret)
    return res, counts, batches
try:
    ns = argparse.Namespace(chunks=20, chunk_interval_ms=10, burst_chunks=200)
    _, fast = bench.start_mock("mock", tmp, ns, 0)
    nd = tmp / "nginx"; nd.mkdir(); os.chmod(nd, 0o755)
    nport = free_port()
    if a.https:
        ca, crt, key = https.pki(tmp)
        _, front = https.start_front(tmp, fast, crt, key)
        config, nconf = https.modelgate_conf(tmp / "mg", front, ca), https.nginx_proxy_conf(nd, nport, front, ca, False)
    else:
        # the plain config names a second (slow) model too; only this path needs its mock
        _, slow = bench.start_mock("mock-slow", tmp, ns, 0)
        config, nconf = tmp / "mg", bench.nginx_conf(nd, [(nport, fast)], master=False)
        bench.write_modelgate_config(config, fast, slow)
    mport, madmin = free_port(), free_port()
    env = dict(os.environ, BENCH_UPSTREAM_KEY="sk-bench-dummy", RUST_LOG="warn")
    mg = PROCS.start("modelgate", [a.bin, "gateway", "--config", str(config), "--listen", f"127.0.0.1:{mport}", "--admin-listen", f"127.0.0.1:{madmin}"], PROXY_CPU, tmp, env=env)
    bench.wait_http_ok(f"http://127.0.0.1:{madmin}/readyz", 60, mg, "modelgate")
    ng = PROCS.start("nginx", [bench.nginx_bin() or "nginx", "-p", str(nd), "-c", str(nconf), "-e", str(nd / "error.log")], PROXY_CPU, tmp)
    time.sleep(0.5)
    body = bench.body_for("bench-model")
    rows = []
    for name, port, proc in (("nginx", nport, ng), ("modelgate", mport, mg)):
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        https.wrk(url, tmp, 4, 1)
        loads = [("closed loop, wrk -c32", lambda: https.wrk(url, tmp, 32, a.seconds))]
        for rate in a.rates.split(","):
            loads.append((f"open loop, {rate}/s over 32 connections", lambda rate=rate: json.loads(subprocess.run(
                ["taskset", "-c", LOAD_CPU, sys.executable, str(Path(__file__).resolve().parent / "openloop.py"), "127.0.0.1", str(port), "/v1/chat/completions", body, rate, str(a.seconds), "32"],
                capture_output=True, text=True, timeout=120).stdout)))
        for label, load in loads:
            res, counts, batches = measure(proc.pid, load)
            n = res["requests"]
            per = {k: round(v / n, 2) for k, v in counts.most_common()}
            row = {"proxy": name, "load": label, "requests": n, "p50_ms": round(res.get("p50_ms", res.get("p50", 0)), 3), "p99_ms": round(res.get("p99_ms", res.get("p99", 0)), 3),
                   "upstream": "HTTPS" if a.https else "plain HTTP", "syscalls_per_request": round(sum(counts.values()) / n, 2), "by_call": per,
                   "epoll_events_per_wait": round(sum(batches) / max(len(batches), 1), 2), "epoll_waits_returning_0": sum(1 for b in batches if b == 0)}
            print(json.dumps(row), flush=True)
finally:
    PROCS.stop_all()
