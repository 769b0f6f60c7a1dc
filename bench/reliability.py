#!/usr/bin/env python3
"""The gateway's front door under abuse (Python 3.11, standard library only).

    python3 bench/reliability.py [--modelgate-bin PATH] [--seconds 20] [--slow 2000] [--fd-limit 1024]

1. Slowloris: a release gateway runs under `prlimit --nofile=FD:FD` (default 1,024) with its
   default flags. A client sends normal chat requests at a fixed pace, each on a fresh
   connection, for SECONDS: first alone (idle), then while an attacker process holds SLOW
   connections (default 2,000) that each send half a request and one more header line every
   5 s, reopening any the gateway closes (at most 1,000 new connections a second). The
   figures: p50 / p99 / max latency and failures of the normal requests in both phases, and
   what the gateway closed and why (its metrics).
2. Drain: SIGTERM to exit, with nothing in flight; with 1,000 idle keep-alive connections;
   with a never-ending stream (--shutdown-grace 5s: the stream must get its error event);
   and during the slowloris attack.

The gateway runs on core 0 and every client on core 1 (taskset). Every server binds
127.0.0.1 on a free port, every load is bounded in time and count, and every process this
starts is ended by its pid. Results: bench/results/reliability-latest.{md,json}.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GATEWAY_CPU = "0"
CLIENT_CPU = {1}

CHAT = json.dumps({"model": "fast", "messages": [{"role": "user", "content": "hello"}]}).encode()
PARTIAL = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"


def log(msg: str) -> None:
    print(f"[reliability {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- servers ---------------------------------------------------------------------------------

def held_upstream(port: int) -> None:
    """An OpenAI-compatible upstream whose streams send one chunk and then nothing, forever."""
    os.sched_setaffinity(0, CLIENT_CPU)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            await reader.readexactly(length)
            chunk = b'data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"first"}}]}\n\n'
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                         + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            await writer.drain()
            await reader.read()  # until the gateway hangs up
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class Gateway:
    def __init__(self, binary: str, config: Path, fd_limit: int, args: list[str], logfile: Path, nice: int = 0):
        self.port, self.admin = free_port(), free_port()
        argv = ["nice", "-n", str(nice), "taskset", "-c", GATEWAY_CPU, "prlimit", f"--nofile={fd_limit}:{fd_limit}", binary, "gateway",
                "--config", str(config), "--listen", f"127.0.0.1:{self.port}",
                "--admin-listen", f"127.0.0.1:{self.admin}", *args]
        self.log = open(logfile, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                                     start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the gateway did not become ready; see {logfile}")

    def cpu_seconds(self) -> float:
        """User and system CPU time of the gateway process so far."""
        pid = self.proc.pid
        # nice, taskset and prlimit exec the gateway: the pid is the gateway's.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics", timeout=5) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line.startswith("modelgate_connection") or line.startswith("modelgate_accept"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def terminate(self, timeout: float) -> tuple[float, int | None]:
        """SIGTERM; returns (seconds to exit, exit status)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        return time.monotonic() - started, code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


def write_config(d: Path, upstream_port: int) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "c.yaml").write_text(f"""---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {{name: mock}}
spec: {{type: mock}}
---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {{name: held}}
spec:
  type: openai-compatible
  baseUrl: http://127.0.0.1:{upstream_port}/v1
  timeouts: {{request: 10m, idle: 10m}}
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {{name: fast}}
spec: {{target: mock/m}}
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {{name: endless}}
spec: {{target: held/m}}
""")


# --- clients ---------------------------------------------------------------------------------

async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), None)
    if length is not None:
        await reader.readexactly(length)
    else:  # chunked
        while not (await reader.readuntil(b"\r\n")).startswith(b"0\r\n"):
            pass
    return status


async def one_request(port: int, timeout: float = 10.0) -> tuple[float, str | None]:
    """A chat request on a fresh connection; (seconds, error or None)."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n"
                         + f"Content-Length: {len(CHAT)}\r\nConnection: close\r\n\r\n".encode() + CHAT)
            status = await read_response(reader)
            writer.close()
        return time.perf_counter() - started, None if status == 200 else f"status {status}"
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
        return time.perf_counter() - started, type(e).__name__


def measure(port: int, seconds: float, rate: float, nice: int = 0) -> dict:
    """Normal requests, paced at `rate` a second, for `seconds` (in a process of its own)."""
    os.sched_setaffinity(0, CLIENT_CPU)
    if nice:
        os.nice(nice)

    async def run() -> dict:
        latencies, errors = [], []
        start = time.perf_counter()
        n = 0
        while (now := time.perf_counter()) - start < seconds:
            due = start + n / rate
            if due > now:
                await asyncio.sleep(due - now)
            took, error = await one_request(port)
            (errors.append(error) if error else latencies.append(took * 1000))
            n += 1
        return {"requests": n, "failures": len(errors), "errors": sorted(set(errors)),
                "p50_ms": pct(latencies, 0.5), "p99_ms": pct(latencies, 0.99),
                "max_ms": max(latencies, default=float("nan"))}

    return asyncio.run(run())


def attack(port: int, count: int, seconds: float, stats) -> None:
    """Holds `count` half-sent requests open for `seconds`, reopening closed ones."""
    os.sched_setaffinity(0, CLIENT_CPU)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1024), hard))

    async def run() -> None:
        end = time.monotonic() + seconds
        opens = asyncio.Semaphore(200)
        budget = {"t": time.monotonic(), "n": 0}

        async def paced_open():
            # At most 1,000 new connections a second.
            while True:
                now = time.monotonic()
                if now - budget["t"] >= 1:
                    budget["t"], budget["n"] = now, 0
                if budget["n"] < 1000:
                    budget["n"] += 1
                    break
                await asyncio.sleep(budget["t"] + 1 - now)
            async with opens:
                return await asyncio.open_connection("127.0.0.1", port)

        async def one() -> None:
            while time.monotonic() < end:
                try:
                    reader, writer = await paced_open()
                except OSError:
                    stats["connect_errors"] += 1
                    await asyncio.sleep(0.1)
                    continue
                stats["opened"] += 1
                try:
                    writer.write(PARTIAL)
                    while time.monotonic() < end:
                        try:
                            async with asyncio.timeout(5):
                                data = await reader.read(1024)
                            if not data:
                                break
                        except TimeoutError:
                            writer.write(b"X-Slow: a\r\n")
                            await writer.drain()
                    else:
                        writer.close()
                        return
                except OSError:
                    pass
                stats["closed_by_gateway"] += 1
                writer.close()

        await asyncio.gather(*(one() for _ in range(count)))

    asyncio.run(run())


def held_stream(port: int, result) -> None:
    """Opens a never-ending stream; records whether it ended with an error event."""
    os.sched_setaffinity(0, CLIENT_CPU)

    async def run() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = json.dumps({"model": "endless", "stream": True, "messages": []}).encode()
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await reader.readuntil(b"\r\n\r\n")
        result["started"] = True
        data = await reader.read()
        result["error_event"] = b"gateway_shutting_down" in data
        result["done"] = b"[DONE]" in data

    asyncio.run(run())


def idle_connections(port: int, count: int, ready, hold: float) -> None:
    """`count` keep-alive connections, each idle after one request."""
    os.sched_setaffinity(0, CLIENT_CPU)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1024), hard))

    async def run() -> None:
        conns = []
        for _ in range(count):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /v1/models HTTP/1.1\r\nHost: g\r\n\r\n")
            await read_response(reader)
            conns.append((reader, writer))
        ready.set()
        await asyncio.gather(*(r.read() for r, _ in conns), return_exceptions=True)

    try:
        asyncio.run(asyncio.wait_for(run(), hold))
    except TimeoutError:
        pass


# --- the run ---------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache/modelgate/target"))
    parser.add_argument("--modelgate-bin", default=str(Path(target) / "release/modelgate"))
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--slow", type=int, default=2000)
    parser.add_argument("--fd-limit", type=int, default=1024)
    parser.add_argument("--rate", type=float, default=100, help="normal requests a second")
    parser.add_argument("--nice", type=int, default=0,
                        help="run the gateway and the measuring client at this nice level (e.g. -10 on a "
                             "machine shared with builds; the attacker stays at 0)")
    parser.add_argument("--out", default=str(HERE / "results" / "reliability-latest"))
    args = parser.parse_args()
    if not Path(args.modelgate_bin).exists():
        log(f"no gateway binary at {args.modelgate_bin}: cargo build --release first")
        return 1
    ctx = multiprocessing.get_context("fork")
    manager = ctx.Manager()
    tmp = Path(tempfile.mkdtemp(prefix="modelgate-reliability-"))
    upstream_port = free_port()
    upstream = ctx.Process(target=held_upstream, args=(upstream_port,), daemon=True)
    upstream.start()
    write_config(tmp / "config", upstream_port)
    results: dict = {"args": vars(args), "slowloris": {}, "drain": {}, "load_before": os.getloadavg()[0]}
    started = time.monotonic()
    children = [upstream]
    try:
        # 1. Slowloris.
        gw = Gateway(args.modelgate_bin, tmp / "config", args.fd_limit, [], tmp / "gateway-slowloris.log", args.nice)
        pool = ctx.Pool(1)
        try:
            log(f"idle: {args.seconds:.0f} s of normal requests at {args.rate:.0f}/s on fresh connections")
            cpu = gw.cpu_seconds()
            results["slowloris"]["idle"] = pool.apply(measure, (gw.port, args.seconds, args.rate, args.nice))
            results["slowloris"]["idle"]["gateway_cpu"] = (gw.cpu_seconds() - cpu) / args.seconds
            stats = manager.dict(opened=0, closed_by_gateway=0, connect_errors=0)
            attack_seconds = args.seconds + 15
            attacker = ctx.Process(target=attack, args=(gw.port, args.slow, attack_seconds, stats), daemon=True)
            attacker.start()
            children.append(attacker)
            deadline = time.monotonic() + 10
            while stats["opened"] < args.slow and time.monotonic() < deadline:
                time.sleep(0.1)
            log(f"attack: {stats['opened']} slow connections opened; measuring for {args.seconds:.0f} s")
            cpu = gw.cpu_seconds()
            results["slowloris"]["attack"] = pool.apply(measure, (gw.port, args.seconds, args.rate, args.nice))
            results["slowloris"]["attack"]["gateway_cpu"] = (gw.cpu_seconds() - cpu) / args.seconds
            results["slowloris"]["attacker"] = dict(stats)
            results["slowloris"]["gateway_metrics"] = gw.metrics()
            took, code = gw.terminate(timeout=40)
            results["drain"]["during the slowloris attack"] = {"seconds": took, "exit": code}
            attacker.join(timeout=attack_seconds + 10)
            if attacker.is_alive():
                attacker.kill()
        finally:
            pool.terminate()
            gw.stop()

        # 2. Drain.
        gw = Gateway(args.modelgate_bin, tmp / "config", args.fd_limit, [], tmp / "gateway-drain.log")
        try:
            took, code = gw.terminate(timeout=40)
            results["drain"]["nothing in flight"] = {"seconds": took, "exit": code}
        finally:
            gw.stop()
        gw = Gateway(args.modelgate_bin, tmp / "config", 4096, [], tmp / "gateway-idle.log")
        try:
            ready = ctx.Event()
            idle = ctx.Process(target=idle_connections, args=(gw.port, 1000, ready, 60), daemon=True)
            idle.start()
            children.append(idle)
            ready.wait(timeout=60)
            took, code = gw.terminate(timeout=40)
            results["drain"]["1,000 idle keep-alive connections"] = {"seconds": took, "exit": code}
            idle.join(timeout=10)
        finally:
            gw.stop()
        gw = Gateway(args.modelgate_bin, tmp / "config", args.fd_limit, ["--shutdown-grace", "5s"],
                     tmp / "gateway-stream.log")
        try:
            outcome = manager.dict(started=False, error_event=False, done=False)
            stream = ctx.Process(target=held_stream, args=(gw.port, outcome), daemon=True)
            stream.start()
            children.append(stream)
            deadline = time.monotonic() + 10
            while not outcome["started"] and time.monotonic() < deadline:
                time.sleep(0.05)
            took, code = gw.terminate(timeout=40)
            stream.join(timeout=10)
            results["drain"]["a never-ending stream, --shutdown-grace 5s"] = {
                "seconds": took, "exit": code, "error_event": outcome["error_event"], "done": outcome["done"]}
        finally:
            gw.stop()
    finally:
        for child in children:
            if child.is_alive():
                child.kill()
                child.join(timeout=5)
    results["total_seconds"] = time.monotonic() - started
    results["load_after"] = os.getloadavg()[0]
    md = render(results)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(results, indent=2))
    Path(args.out + ".md").write_text(md)
    print(md)
    return 0


def render(r: dict) -> str:
    a = r["args"]
    idle, attack_ = r["slowloris"]["idle"], r["slowloris"]["attack"]
    m = r["slowloris"].get("gateway_metrics", {})
    cap = int(m.get('modelgate_connection_limit{listener="api"}', 0))
    accept_errors = int(m.get('modelgate_accept_errors_total{listener="api"}', 0))
    closed = {k.split('reason="')[1].rstrip('"}'): int(v) for k, v in m.items()
              if k.startswith('modelgate_connections_closed_total{listener="api"')}
    lines = [
        f"Slowloris: {a['slow']:,} slow connections against a gateway with RLIMIT_NOFILE {a['fd_limit']:,} "
        f"(default flags), normal chat requests at {a['rate']:.0f}/s on fresh connections for {a['seconds']:.0f} s per phase.",
        "",
        f"Load average of the machine: {r['load_before']:.1f} before the run, {r['load_after']:.1f} after "
        f"({os.cpu_count()} CPUs; other work inflates the absolute latencies, for both phases alike); "
        f"gateway and measuring client at nice {a['nice']}.",
        "",
        "| phase | requests | failures | p50, ms | p99, ms | max, ms | gateway CPU |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, x in (("idle", idle), ("under slowloris", attack_)):
        lines.append(f"| {name} | {x['requests']:,} | {x['failures']} | {x['p50_ms']:.2f} | {x['p99_ms']:.2f} "
                     f"| {x['max_ms']:.2f} | {x['gateway_cpu']:.0%} |")
    lines += [
        "",
        f"p99 under slowloris ÷ idle: **{attack_['p99_ms'] / idle['p99_ms']:.2f}×** (target ≤ 2×). "
        f"The attacker opened {r['slowloris']['attacker']['opened']:,} connections; the gateway closed "
        f"{r['slowloris']['attacker']['closed_by_gateway']:,} of them "
        f"({', '.join(f'{v:,} {k}' for k, v in sorted(closed.items())) or 'none'}), held at most "
        f"{cap:,} (its cap), and failed {accept_errors} accepts.",
        "",
        "| drain (SIGTERM → exit) | seconds | exit status | |",
        "|---|---|---|---|",
    ]
    for name, x in r["drain"].items():
        extra = ""
        if "error_event" in x:
            extra = f"stream ended with the error event: {x['error_event']}; [DONE] sent: {x['done']}"
        lines.append(f"| {name} | {x['seconds']:.2f} | {x['exit']} | {extra} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
