#!/usr/bin/env python3
"""HTTPS upstream benchmark: modelgate and nginx side by side, both proxying plain-HTTP clients to
the same HTTPS upstream and both verifying it against the same private CA.

    python3 bench/https.py [--modelgate-bin PATH] [--rounds 5] [--seconds 5] [--requests 2000]

Set-up (every server on 127.0.0.1, free ports, ended by pid at exit):
  * the mock upstream (bench/mock-upstream, plain HTTP) behind a TLS front: an nginx on core 1
    terminating TLS 1.3 with a certificate (P-256) of a CA made for the run (openssl), HTTP/1.1
    only (no h2: nginx's proxy module speaks HTTP/1.1 upstream, so both proxies get the same
    protocol), session cache and tickets on, keep-alive;
  * nginx (core 0): `proxy_pass https://…` with `keepalive 128`, `proxy_ssl_verify on` against
    the CA, `proxy_ssl_session_reuse on`;
  * modelgate (core 0): an `openai-compatible` provider at `https://127.0.0.1:PORT/v1` with
    `tls.caSecretRef` naming a Secret in the config files that holds the CA.
  * direct: the load generator straight to the TLS front (it pays the TLS itself).

Figures (interleaved rounds, medians; in each round the three latency runs come back to back,
then the three throughput runs, each in an order that rotates from round to round):
  1. latency at concurrency 1 (wrk -c1, closed loop): p50 and p99, added = proxy - direct;
  2. closed-loop throughput, 32 connections (wrk -c32), one core per proxy;
  3. CPU per request of the proxy process over figure 2's runs (utime + stime / requests);
  4. user-space instructions per request (callgrind; sequential keep-alive requests from a
     Python client after a warm-up): deterministic, unaffected by other work on the machine;
  5. the first request after start, through each proxy (it opens the first upstream connection);
     TLS handshakes the front saw (its access log's $ssl_session_reused), per proxy;
  6. open-loop max rate (bench/run.sh's method: oha sends at a fixed rate over 32 connections,
     latency counted from when each request was due; the highest rate whose p99 stays under 5 ms
     with no errors, searched for both proxies in lockstep; `--maxrate-searches K` repeats the
     search and reports the middle one);
  7. the spread: each round's own modelgate ÷ nginx ratio for figures 1–3 (the two proxies ran
     back to back in that round), its median, worst and best round, and how many rounds met the
     goal; with several searches, each max-rate ratio. One median hides how often a noisy
     machine lets a figure slip: run with more rounds (`--rounds 15`) to see it.
Writes bench/results/https-latest.{md,json}.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
from bench import PROCS, LOAD_CPU, PROXY_CPU, BenchError, free_port, log, median, run_cmd  # noqa: E402

MODEL = "bench-model"
BODY = bench.body_for(MODEL)


def pki(d: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 and localhost, by the openssl command line."""
    ca_key, ca, key, csr, crt = d / "ca.key", d / "ca.pem", d / "server.key", d / "server.csr", d / "server.pem"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run_cmd(["openssl", "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
             "-subj", "/CN=modelgate bench CA", "-addext", "basicConstraints=critical,CA:TRUE"],
            timeout=30, check=True, capture_output=True)
    run_cmd(["openssl", "req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=bench upstream"],
            timeout=30, check=True, capture_output=True)
    ext = d / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n")
    run_cmd(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
             "-days", "2", "-extfile", str(ext), "-out", str(crt)], timeout=30, check=True, capture_output=True)
    return ca, crt, key


def nginx_common(d: Path) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
"""


def http_common(d: Path) -> str:
    return f"""    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
"""


def start_front(tmp: Path, mock_port: int, crt: Path, key: Path) -> tuple[subprocess.Popen, int]:
    """TLS in front of the mock, logging whether each request's TLS session was resumed."""
    d = tmp / "front"
    d.mkdir()
    os.chmod(d, 0o755)
    port = free_port()
    (d / "nginx.conf").write_text(nginx_common(d) + f"""http {{
{http_common(d)}    log_format tls '$connection $connection_requests $ssl_session_reused $ssl_protocol';
    access_log {d}/access.log tls;
    upstream mock {{ server 127.0.0.1:{mock_port}; keepalive 128; keepalive_requests 1000000; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {crt};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:4m;
        ssl_session_tickets on;
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
""")
    p = PROCS.start("tls-front", [bench.nginx_bin() or "nginx", "-p", str(d), "-c", str(d / "nginx.conf"),
                                  "-e", str(d / "error.log")], LOAD_CPU, tmp)
    return p, port


def nginx_proxy_conf(d: Path, port: int, front: int, ca: Path | None, master: bool) -> Path:
    """nginx proxying to the upstream: HTTPS verified against `ca`, or plain HTTP when `ca` is None."""
    conf = d / "nginx.conf"
    tls = "" if ca is None else f"""
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {ca};
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;"""
    conf.write_text(nginx_common(d) + f"""master_process {"on" if master else "off"};
http {{
{http_common(d)}    access_log off;
    upstream front {{ server 127.0.0.1:{front}; keepalive 128; keepalive_requests 1000000; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass {"http" if ca is None else "https"}://front;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;{tls}
        }}
    }}
}}
""")
    return conf


def modelgate_conf(d: Path, front: int, ca: Path | None) -> Path:
    """modelgate's config: an HTTPS provider trusting `ca` (a Secret in the files), or plain HTTP when `ca` is None."""
    d.mkdir(parents=True, exist_ok=True)
    scheme, tls, secret = "http", "", ""
    if ca is not None:
        pem = "".join(f"    {line}\n" for line in ca.read_text().splitlines())
        scheme, tls = "https", "  tls: {caSecretRef: {name: bench-ca, key: ca.crt}}\n"
        secret = f"---\napiVersion: v1\nkind: Secret\nmetadata: {{name: bench-ca, namespace: default}}\nstringData:\n  ca.crt: |\n{pem}"
    (d / "bench.yaml").write_text(f"""apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {{name: tls-upstream, namespace: default}}
spec:
  type: openai-compatible
  baseUrl: {scheme}://127.0.0.1:{front}/v1
  apiKey: {{env: BENCH_UPSTREAM_KEY}}
{tls}{secret}---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {{name: {MODEL}, namespace: default}}
spec:
  target: tls-upstream/mock-model
""")
    return d


def modelgate_argv(args, config: Path, port: int, admin: int) -> list[str]:
    return [bench.modelgate_bin(args), "gateway", "--config", str(config),
            "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}"]


def wrk(url: str, tmp: Path, connections: int, seconds: float) -> dict:
    """A closed-loop wrk run on the load core: requests, errors and latency percentiles (ms)."""
    script = tmp / "post.lua"
    if not script.exists():
        script.write_text(f"""wrk.method = "POST"
wrk.body = {json.dumps(BODY)}
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format("JSON {{\\"requests\\": %d, \\"non2xx\\": %d, \\"errors\\": %d, \\"seconds\\": %f, \\"p50\\": %f, \\"p99\\": %f}}\\n",
    summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
""")
    r = run_cmd(["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", str(script), url],
                timeout=seconds + 60, capture_output=True, text=True)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("JSON ")), None)
    if r.returncode != 0 or line is None:
        raise BenchError(f"wrk failed: {r.stderr.strip()[:300]}")
    out = json.loads(line[5:])
    out["rps"] = out["requests"] / max(out["seconds"], 1e-9)
    return out


def steal_ticks(cpu: str) -> int:
    """Time the hypervisor ran something else while `cpu` wanted to run (/proc/stat), in ticks."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                return int(line.split()[8])
    return 0


def check(name: str, port: int, https: bool = False) -> float:
    """One request, which must succeed; returns how long it took (ms), connecting included."""
    started = time.perf_counter()
    if https:
        import ssl
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/v1/chat/completions", BODY, {"content-type": "application/json"})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    if r.status != 200 or b"choices" not in body:
        raise BenchError(f"{name}: {r.status} {body[:300]!r}")
    return (time.perf_counter() - started) * 1000


def sequential(port: int, n: int) -> int:
    """n keep-alive requests one after another; returns how many got 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    ok = 0
    for _ in range(n):
        conn.request("POST", "/v1/chat/completions", BODY, {"content-type": "application/json"})
        r = conn.getresponse()
        r.read()
        ok += r.status == 200
    conn.close()
    return ok


def modelgate_env(args) -> dict:
    """`--modelgate-env KEY=VALUE`: set for modelgate's processes only (an A/B of, say, an
    allocator preloaded with LD_PRELOAD), not for nginx, the load or the mock."""
    return dict(kv.split("=", 1) for kv in args.modelgate_env)


def instructions(args, tmp: Path, front: int, ca: Path) -> dict:
    out: dict = {}
    for name in ("nginx", "modelgate"):
        d = Path(args.profile_dir) / name if args.profile_dir else tmp / f"callgrind-{name}"
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o755)
        port = free_port()
        env = dict(os.environ, BENCH_UPSTREAM_KEY="sk-bench-dummy", RUST_LOG="warn")
        if name == "modelgate":
            env.update(modelgate_env(args))
        if name == "nginx":
            argv = [bench.nginx_bin() or "nginx", "-p", str(d), "-c", str(nginx_proxy_conf(d, port, front, ca, False)),
                    "-e", str(d / "error.log")]
            ready = f"http://127.0.0.1:{port}/v1/models"
        else:
            admin = free_port()
            argv = modelgate_argv(args, modelgate_conf(d / "config", front, ca), port, admin)
            ready = f"http://127.0.0.1:{admin}/readyz"
        p = PROCS.start(f"callgrind-{name}", ["valgrind", "--tool=callgrind", f"--dump-instr={'yes' if args.profile_dir else 'no'}",
                                              f"--callgrind-out-file={d}/callgrind.out", *argv], PROXY_CPU, tmp, env=env)
        try:
            bench.wait_http_ok(ready, 180, p, f"{name} under callgrind")
            sequential(port, args.warmup)
            run_cmd(["callgrind_control", "-z", str(p.pid)], timeout=60, check=True, capture_output=True)
            ok = sequential(port, args.requests)
            run_cmd(["callgrind_control", "-d", str(p.pid)], timeout=60, check=True, capture_output=True)
            dumps = sorted(d.glob("callgrind.out.*"))
            total = bench.callgrind_summary(dumps[-1]) if dumps else None
            out[name] = {"requests": args.requests, "ok": ok, "instructions": total,
                         "per_request": None if total is None else round(total / max(ok, 1))}
            log(f"instructions: {name} {out[name]['per_request']} per request")
        except (BenchError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            out[name] = {"error": str(e)}
        finally:
            PROCS.stop(p)
    return out


def handshakes(front_dir: Path) -> dict:
    """Connections and resumed sessions the TLS front saw: (connection id -> reused flag)."""
    seen: dict[str, str] = {}
    log_path = front_dir / "access.log"
    if log_path.exists():
        for line in log_path.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3:
                seen.setdefault(parts[0], parts[2])
    return {"connections": len(seen), "resumed": sum(1 for v in seen.values() if v == "r")}


class RateTarget:
    """What bench.fig_maxrate needs of a proxy: its URL, the request body and its process."""

    def __init__(self, name: str, url: str, proc):
        self.name, self._url, self.proc = name, url, proc

    def url(self, slow: bool = False) -> str:
        return self._url

    def body(self, slow: bool = False, stream: bool = False) -> str:
        return BODY


def maxrate(args, targets: dict) -> dict:
    """The open-loop max rate of nginx and modelgate (bench/run.sh's figure, same parameters)."""
    rate_args = argparse.Namespace(step_seconds=args.step_seconds, cooldown=1.0, start_rate=500, min_rate=10,
                                   max_rate=64000, max_steps=14, rate_precision=0.05, rate_connections=32,
                                   retry_failed_steps=True)
    return bench.fig_maxrate([RateTarget(n, *targets[n]) for n in ("nginx", "modelgate")], rate_args, {})


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


# Goals of issue 16, per figure: (the figure's per-round ratio, whether higher is better, the line).
GOALS = {"throughput": (True, 0.9), "cpu_per_request": (False, 1.1), "added_p50": (False, 1.1), "added_p99": (False, 1.3)}


def spread(lat: dict, thr: dict) -> dict:
    """Each round's own modelgate ÷ nginx ratio (the two ran one after the other in that round, so
    a slow minute of the machine hits both), with the median, the worst and best rounds, and how
    many rounds met the goal: the run-to-run spread a single median hides."""
    per: dict[str, list] = {k: [] for k in GOALS}
    for r in range(min(len(thr["nginx"]), len(thr["modelgate"]))):
        n, m = thr["nginx"][r], thr["modelgate"][r]
        per["throughput"].append(ratio(m["rps"], n["rps"]))
        per["cpu_per_request"].append(ratio(m.get("cpu_us_per_request"), n.get("cpu_us_per_request")))
    for r in range(min(len(lat["nginx"]), len(lat["modelgate"]), len(lat["direct"]))):
        for q in ("p50", "p99"):
            d = lat["direct"][r][q]
            added_n, added_m = lat["nginx"][r][q] - d, lat["modelgate"][r][q] - d
            # An added latency at or under zero (the proxy's round beat direct's) has no ratio.
            per[f"added_{q}"].append(ratio(added_m, added_n) if added_n > 0 and added_m > 0 else None)
    out = {}
    for k, rounds in per.items():
        vals = [v for v in rounds if v is not None]
        if not vals:
            continue
        higher, line = GOALS[k]
        met = sum(1 for v in vals if (v >= line if higher else v <= line))
        out[k] = {"rounds": [None if v is None else round(v, 3) for v in rounds], "median": median(vals),
                  "worst": min(vals) if higher else max(vals), "best": max(vals) if higher else min(vals),
                  "met": met, "of": len(vals), "goal": f"{'≥' if higher else '≤'} {line}×"}
    return out


# A round counts as left alone by the hypervisor when at most this much was stolen from the
# proxies' core in it: two clock ticks, a stall too short to reach the p99 of a 5 s round.
QUIET_STEAL_MS = 20


def quiet_p99(fig: dict) -> None:
    """Each proxy's added p99 over only its latency rounds with at most QUIET_STEAL_MS stolen
    from its core: on a host that takes its cores away for 50-800 ms a round, the plain median
    says which proxy had more such rounds."""
    direct = fig.get("direct", {}).get("p99_ms")
    for name in ("nginx", "modelgate"):
        rounds = fig[name]["rounds"]["latency"]
        quiet = [x["p99"] for x in rounds if x.get("steal_ms") is not None and x["steal_ms"] <= QUIET_STEAL_MS]
        p99 = median(quiet) if quiet else None
        fig[name]["quiet_rounds"] = len(quiet)
        fig[name]["added_p99_quiet_ms"] = None if p99 is None or direct is None else p99 - direct


def median_search(searches: list[dict]) -> dict:
    """Of several lockstep max-rate searches, the one whose modelgate ÷ nginx ratio is the median."""
    ranked = sorted(searches, key=lambda s: ratio(s["modelgate"]["max_rate"], s["nginx"]["max_rate"]) or 0)
    return ranked[(len(ranked) - 1) // 2]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modelgate-bin")
    ap.add_argument("--mock-bin", help="a built bench/mock-upstream (default: the one bench/run.sh builds)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=2000, help="requests counted by callgrind")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--skip", default="", help="comma list: latency,throughput,maxrate,instructions")
    ap.add_argument("--step-seconds", type=float, default=5.0, help="length of each open-loop rate step")
    ap.add_argument("--maxrate-searches", type=int, default=1,
                    help="repeat the open-loop max-rate search (both proxies in lockstep) this many times")
    ap.add_argument("--plain", action="store_true",
                    help="the same figures with a plain-HTTP upstream (the mock itself, no TLS front)")
    ap.add_argument("--modelgate-env", action="append", default=[], metavar="KEY=VALUE",
                    help="set for modelgate's processes only (repeatable)")
    ap.add_argument("--out")
    ap.add_argument("--profile-dir", help="keep each proxy's callgrind dump here (for callgrind_annotate)")
    args = ap.parse_args(argv)
    args.out = args.out or str(bench.HERE / "results" / ("plain-latest" if args.plain else "https-latest"))
    skip = set(filter(None, args.skip.split(",")))
    for tool in ("nginx", "wrk", "openssl", "taskset") + (() if "instructions" in skip else ("valgrind",)):
        if not (shutil.which(tool) or (tool == "nginx" and bench.nginx_bin())):
            raise BenchError(f"{tool} is not installed (apt-get install -y nginx wrk valgrind openssl)")
    if "maxrate" not in skip and not (Path(bench.oha_bin()).exists() or shutil.which("oha")):
        raise BenchError("oha is not installed (bash bench/run.sh installs it, or: cargo install oha --locked "
                         f"--version {bench.OHA_VERSION} --root {bench.TOOLS}); or --skip maxrate")
    mock_bin = Path(args.mock_bin) if args.mock_bin else bench.BENCH_TARGET / "release" / "mock-upstream"
    if args.mock_bin:
        bench.BENCH_TARGET = mock_bin.parent.parent
    if not mock_bin.exists():
        run_cmd(["cargo", "build", "--release", "--manifest-path", str(bench.HERE / "mock-upstream" / "Cargo.toml"),
                 "--target-dir", str(bench.BENCH_TARGET)], timeout=3600, check=True)
    if not Path(bench.modelgate_bin(args)).exists():
        raise BenchError(f"no modelgate binary at {bench.modelgate_bin(args)}; build it or pass --modelgate-bin")
    tmp = Path(tempfile.mkdtemp(prefix="modelgate-https-bench-"))
    os.chmod(tmp, 0o755)
    result: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "args": vars(args),
                    "background_busy_pct": round(bench.background_busy(1.0), 1)}
    try:
        ca, crt, key = pki(tmp)
        mock_args = argparse.Namespace(chunks=20, chunk_interval_ms=10, burst_chunks=200)
        mock_proc, mock_port = bench.start_mock("mock", tmp, mock_args, 0)
        if args.plain:
            front_proc, front, ca = mock_proc, mock_port, None
        else:
            front_proc, front = start_front(tmp, mock_port, crt, key)
        bench.wait_http_ok(f"http://127.0.0.1:{mock_port}/healthz", 10, front_proc, "mock")
        # nginx proxy
        nd = tmp / "nginx"
        nd.mkdir()
        os.chmod(nd, 0o755)
        nport = free_port()
        nginx_proc = PROCS.start("nginx", [bench.nginx_bin() or "nginx", "-p", str(nd), "-c",
                                           str(nginx_proxy_conf(nd, nport, front, ca, True)), "-e", str(nd / "error.log")],
                                 PROXY_CPU, tmp)
        # modelgate
        mport, madmin = free_port(), free_port()
        env = dict(os.environ, BENCH_UPSTREAM_KEY="sk-bench-dummy", RUST_LOG="warn", **modelgate_env(args))
        mg_proc = PROCS.start("modelgate", modelgate_argv(args, modelgate_conf(tmp / "modelgate", front, ca), mport, madmin),
                              PROXY_CPU, tmp, env=env)
        bench.wait_http_ok(f"http://127.0.0.1:{madmin}/readyz", 60, mg_proc, "modelgate")
        time.sleep(0.2)
        check("direct", front, https=not args.plain)
        # The first request after start: it opens the proxy's first connection to the upstream.
        result["first_request_ms"] = {"nginx": check("nginx", nport), "modelgate": check("modelgate", mport)}
        targets = {"direct": (f"{'http' if args.plain else 'https'}://127.0.0.1:{front}/v1/chat/completions", None),
                   "nginx": (f"http://127.0.0.1:{nport}/v1/chat/completions", nginx_proc),
                   "modelgate": (f"http://127.0.0.1:{mport}/v1/chat/completions", mg_proc)}
        hz = os.sysconf("SC_CLK_TCK")
        names = list(targets)
        for name in names:  # warm-up
            wrk(targets[name][0], tmp, 4, 1)
        lat: dict = {n: [] for n in names}
        thr: dict = {n: [] for n in names}
        # Each run starts once every server has been idle for 0.1 s (at most 3 s), not while the
        # previous 32-connection run's connections are still being closed. In one 15-round run
        # without this wait, modelgate's four rounds at a 48-74 ms p99 all came right after
        # nginx's 32-connection run.
        quiet = [argparse.Namespace(proc=p) for p in {id(p): p for p in (mock_proc, front_proc, nginx_proc, mg_proc)}.values()]
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            # The three latency runs of a round come back to back, before any of its 32-connection
            # runs, so the runs compared are as close in time as they can be and none follows
            # another target's 32-connection run (whose connections are still being closed).
            if "latency" not in skip:
                for name in order:
                    bench.wait_quiet(quiet)
                    s0 = steal_ticks(PROXY_CPU)
                    lat[name].append(wrk(targets[name][0], tmp, 1, args.seconds))
                    lat[name][-1]["steal_ms"] = (steal_ticks(PROXY_CPU) - s0) * 1000 / hz
            if "throughput" not in skip:
                for name in order:
                    url, proc = targets[name]
                    bench.wait_quiet(quiet)
                    c0 = bench.cpu_ticks(proc.pid) if proc else None
                    res = wrk(url, tmp, 32, args.seconds)
                    if proc:
                        res["cpu_us_per_request"] = (bench.cpu_ticks(proc.pid) - c0) / hz / max(res["requests"], 1) * 1e6
                    thr[name].append(res)
            log(f"round {r + 1}/{args.rounds}: " + ", ".join(
                f"{n} p50 {lat[n][-1]['p50']:.3f} ms, {thr[n][-1]['rps']:.0f} rps" for n in names if lat[n] and thr[n]))
        fig: dict = {}
        for name in names:
            fig[name] = {
                "p50_ms": median([x["p50"] for x in lat[name]]) if lat[name] else None,
                "p99_ms": median([x["p99"] for x in lat[name]]) if lat[name] else None,
                "rps_c32": median([x["rps"] for x in thr[name]]) if thr[name] else None,
                "cpu_us_per_request": median([x["cpu_us_per_request"] for x in thr[name] if "cpu_us_per_request" in x]) if thr[name] and name != "direct" else None,
                "errors": sum(x["errors"] + x["non2xx"] for x in lat[name] + thr[name]),
                "rounds": {"latency": lat[name], "throughput": thr[name]},
            }
        for name in ("nginx", "modelgate"):
            for q in ("p50", "p99"):
                p, d = fig[name][f"{q}_ms"], fig["direct"][f"{q}_ms"]
                fig[name][f"added_{q}_ms"] = None if p is None or d is None else p - d
        quiet_p99(fig)
        result["figures"] = fig
        result["spread"] = spread(lat, thr)
        if "maxrate" not in skip:
            searches = [maxrate(args, targets) for _ in range(max(1, args.maxrate_searches))]
            result["maxrate"] = median_search(searches)
            result["maxrate_searches"] = [{n: s[n]["max_rate"] for n in ("nginx", "modelgate")} for s in searches]
        if not args.plain:
            result["handshakes_at_front"] = handshakes(tmp / "front")
        PROCS.stop(mg_proc)
        PROCS.stop(nginx_proc)
        if "instructions" not in skip:
            result["instructions"] = instructions(args, tmp, front, ca)
        result["upstream"] = "plain HTTP" if args.plain else "HTTPS"
    finally:
        PROCS.stop_all()
    write(result, Path(args.out))
    return 0


def fmt(v, digits=2):
    return "–" if v is None else f"{v:,.{digits}f}"


def write(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    f = result.get("figures", {})
    ins = result.get("instructions", {})
    mr = result.get("maxrate", {})
    n, m, d = f.get("nginx", {}), f.get("modelgate", {}), f.get("direct", {})
    # (figure, direct, nginx, modelgate, goal, digits, whether the goal holds for plain HTTP too)
    rows = [
        ("added latency p50, ms (c=1)", d.get("p50_ms"), n.get("added_p50_ms"), m.get("added_p50_ms"), "≤ 1.1×", 3, False),
        ("added latency p99, ms (c=1)", d.get("p99_ms"), n.get("added_p99_ms"), m.get("added_p99_ms"), "≤ 1.3×", 3, False),
        (f"added latency p99, ms (c=1), rounds with at most {QUIET_STEAL_MS} ms stolen from the proxy's core "
         f"(nginx {n.get('quiet_rounds', '–')}, modelgate {m.get('quiet_rounds', '–')} of them)",
         d.get("p99_ms"), n.get("added_p99_quiet_ms"), m.get("added_p99_quiet_ms"), "≤ 1.3×", 3, False),
        ("throughput, req/s (closed loop, 32 connections, one core)", d.get("rps_c32"), n.get("rps_c32"), m.get("rps_c32"),
         "≥ 0.9×", 0, True),
        ("CPU per request, µs (the proxy process, during the 32-connection runs)", None, n.get("cpu_us_per_request"),
         m.get("cpu_us_per_request"), "≤ 1.1×", 1, False),
        ("user-space instructions per request (callgrind, sequential keep-alive)", None,
         ins.get("nginx", {}).get("per_request"), ins.get("modelgate", {}).get("per_request"), "(deterministic)", 0, True),
        ("max rate with p99 < 5 ms, req/s (open loop, oha, 32 connections, one core)", None,
         mr.get("nginx", {}).get("max_rate"), mr.get("modelgate", {}).get("max_rate"), "≥ 0.9×", 0, True),
    ]
    plain = result.get("upstream") == "plain HTTP"
    upstream = ("the same plain-HTTP upstream (the mock itself), with keep-alive. " if plain else
                "the same HTTPS upstream (TLS 1.3, HTTP/1.1, a private CA both verify against), with keep-alive and session reuse. ")
    lines = [f"# {'Plain-HTTP' if plain else 'HTTPS'} upstream: modelgate vs nginx ({result['started']})", "",
             "Both proxies take plain HTTP/1.1 from the load generator and reach " + upstream +
             f"`bench/https.py{' --plain' if plain else ''}`; other work on the machine when it started: {result.get('background_busy_pct')} % of both cores "
             "(wall-clock figures on a shared machine are noisy; instructions are not).", "",
             "| figure | direct | nginx | modelgate | modelgate ÷ nginx | goal |", "| --- | --- | --- | --- | --- | --- |"]
    for label, dv, nv, mv, goal, digits, for_plain in rows:
        goal = goal if not plain or for_plain else "– (the issue's goal is for HTTPS)"
        lines.append(f"| {label} | {fmt(dv, digits)} | {fmt(nv, digits)} | {fmt(mv, digits)} | {fmt(ratio(mv, nv))}× | {goal} |")
    first = result.get("first_request_ms")
    if first:
        lines += ["", f"The first request after start (a new client connection; it opens the proxy's first connection "
                      f"to the upstream): nginx {first['nginx']:.2f} ms, modelgate {first['modelgate']:.2f} ms."]
    hs = result.get("handshakes_at_front")
    if hs:
        lines += ["", f"TLS connections the upstream saw over the whole run (all three clients): {hs['connections']}, "
                      f"of which resumed: {hs['resumed']}."]
    lines += spread_lines(result)
    errs = {k: v.get("errors") for k, v in f.items()}
    lines += ["", f"Errors (non-2xx or socket errors) per target: {errs}.", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    log(f"wrote {out.with_suffix('.md')}")


def spread_lines(result: dict) -> list[str]:
    sp, searches = result.get("spread", {}), result.get("maxrate_searches", [])
    if not sp and len(searches) < 2:
        return []
    labels = {"throughput": "throughput (closed loop)", "cpu_per_request": "CPU per request",
              "added_p50": "added p50", "added_p99": "added p99"}
    lines = ["", "Spread: each round's own modelgate ÷ nginx ratio (the two ran back to back in that round; a "
                 "round whose added latency was at or under zero for either proxy has no ratio).", "",
             "| figure | median of rounds | worst round | best round | rounds meeting the goal | goal | every round |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for k, label in labels.items():
        s = sp.get(k)
        if s:
            every = ", ".join("–" if v is None else f"{v:.2f}" for v in s["rounds"])
            lines.append(f"| {label} | {fmt(s['median'])}× | {fmt(s['worst'])}× | {fmt(s['best'])}× | "
                         f"{s['met']} of {s['of']} | {s['goal']} | {every} |")
    ratios = [r for r in (ratio(s["modelgate"], s["nginx"]) for s in searches) if r is not None]
    if len(searches) >= 2 and ratios:
        met = sum(1 for r in ratios if r >= 0.9)
        lines.append(f"| open-loop max rate ({len(searches)} searches; the table above shows the middle one, the lower of two middles) | "
                     f"{fmt(median(ratios))}× | {fmt(min(ratios))}× | {fmt(max(ratios))}× | {met} of {len(searches)} | ≥ 0.9× | "
                     + ", ".join(f"{s['modelgate']:,} ÷ {s['nginx']:,}" for s in searches) + " |")
    lat = {n: v.get("rounds", {}).get("latency", []) for n, v in result.get("figures", {}).items()}
    if any(lat.get(n) for n in ("nginx", "modelgate")):
        lines.append("")
        lines.append("At concurrency 1 wrk corrects for coordinated omission, so one stall of the proxy's core "
                     "(say 50 ms while the hypervisor runs something else) fills a 5 s round's p99 by itself. Per "
                     "round, p99 in ms (time stolen from the proxy's core in that round, ms): " + "; ".join(
                         f"{n} " + ", ".join(f"{x['p99']:.2f} ({x.get('steal_ms', 0):.0f})" for x in rounds)
                         for n, rounds in lat.items() if n != "direct") + ".")
    return lines


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"error: {e}")
        PROCS.stop_all()
        sys.exit(1)
