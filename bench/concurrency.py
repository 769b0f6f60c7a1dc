#!/usr/bin/env python3
"""Ten thousand concurrent slow streams, and a thousand HTTP/2 clients, through one gateway.

    python3 bench/concurrency.py [--modelgate-bin PATH] [--mock-bin PATH] [--streams 10000]
                                 [--ramp-rate 1000] [--hold 30] [--probes 50] [--fd-limit 65536]
                                 [--h2-streams-per-connection 100] [--h2-clients 1000]
                                 [--h2-requests 10] [--h2-rate 1000] [--no-request-id]
                                 [--skip http1,http2,h2-clients]

Standard-library Python plus the `h2` package for the HTTP/2 parts (not in the test venv:
`$MODELGATE_CACHE/venv/bin/pip install h2==4.4.1`, then run this with that venv's python; without
`h2` those parts are reported skipped).

The mock upstream (`bench/mock-upstream`, one thread) sends one chunk a second
(`--chunk-interval-ms 1000`; a stream's length is the request's `max_tokens`). A release gateway
with default flags serves it as an `openai-compatible` provider; each part gets a fresh gateway.
The gateway's connection cap derives from RLIMIT_NOFILE (half of what is left after a reserve),
so it runs under `prlimit --nofile=N:N`, N = `--fd-limit` or, where this process may not raise
its hard limit, that hard limit; this process raises its own limit the same way.

1. HTTP/1.1 streams: one connection each (and so one provider connection each: as many as the
   descriptor limit allows, up to `--streams`), opened at `--ramp-rate` a second, each asking
   for ramp + `--hold` chunks so that all are open when the last has its first chunk. Idle
   first: RSS (VmRSS, smaps_rollup) and the time to first chunk of `--probes` new requests
   (each on a new connection, a one-chunk stream) through the gateway and straight to the
   mock, interleaved, in a process of its own. With every stream open: RSS again (median of
   three samples 0.5 s apart), per stream = (load - idle) / streams, the gateway's CPU, the
   same probes. Every stream must end with every chunk, `data: [DONE]` and the terminator.
2. HTTP/2 streams: the same with `--streams` streams multiplexed on HTTP/2 connections with
   prior knowledge (h2c), `--h2-streams-per-connection` each.
3. HTTP/2 clients: `--h2-clients` h2c connections, all open before the first request (RSS
   then); then `--h2-requests` requests on each, sent open-loop at `--h2-rate` a second over
   all of them, alternately a plain completion and a one-chunk stream; every answer must be
   right; latency from the scheduled send, the gateway's CPU per request, RSS after.

Requests carry an `x-request-id` unless `--no-request-id` (ingress-nginx and Envoy add one).
The gateway runs on core 0; the mock, the load and the probes on core 1 (taskset). Every server
binds 127.0.0.1 on a free port chosen at run time; every load is bounded in count and time; the
processes this starts are ended by their pid. Results: bench/results/concurrency-latest.{md,json}.
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

try:
    import h2.config
    import h2.connection
    import h2.events
except ImportError:  # the HTTP/2 parts are reported as skipped
    h2 = None

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GATEWAY_CPU = "0"
LOAD_CPU = "1"
FD_LIMIT = 65536
ALIAS = "slow-stream"


def log(msg: str) -> None:
    print(f"[concurrency {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def raise_own_fd_limit(n: int) -> int:
    """Raises this process's RLIMIT_NOFILE to `n`, or to its hard limit where raising that is
    not allowed; returns the limit in force (the servers get the same)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, max(n, hard)))
        return n
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard


# --- processes -------------------------------------------------------------------------------

class Proc:
    """A server in its own process group, ended by its pid."""

    def __init__(self, name: str, argv: list[str], logdir: Path, stdout_pipe: bool = False):
        self.name = name
        self.log = open(logdir / f"{name}.log", "ab")
        # taskset and prlimit exec the server: the pid is the server's.
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE if stdout_pipe else self.log, stderr=self.log,
                                     start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


def status_kb(pid: int, field: str) -> int | None:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def smaps_rollup(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[-1] == "kB":
            out[key.strip()] = int(parts[0])
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory(pid: int) -> dict:
    """VmRSS: the median of three samples 0.5 s apart; smaps_rollup of the last."""
    samples = []
    for i in range(3):
        if i:
            time.sleep(0.5)
        samples.append(status_kb(pid, "VmRSS"))
    roll = smaps_rollup(pid)
    return {"vmrss_kb": statistics.median(samples), "vmrss_samples_kb": samples,
            "smaps_rollup_kb": {k: roll.get(k) for k in ("Rss", "Pss", "Anonymous", "Private_Dirty")}}


def admin_metrics(admin: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(("modelgate_connection", "modelgate_accept")):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def api_metric(metrics: dict[str, float], prefix: str) -> float | None:
    return next((v for k, v in metrics.items() if k.startswith(prefix) and 'listener="api"' in k), None)


def write_config(d: Path, mock_port: int) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "c.yaml").write_text(f"""---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {{name: mock-upstream}}
spec:
  type: openai-compatible
  baseUrl: http://127.0.0.1:{mock_port}/v1
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {{name: {ALIAS}}}
spec: {{target: mock-upstream/mock-model}}
""")


def start_mock(binary: str, tmp: Path, fd_limit: int) -> tuple[Proc, int]:
    mock = Proc("mock", ["taskset", "-c", LOAD_CPU, "prlimit", f"--nofile={fd_limit}:{fd_limit}", binary,
                         "--listen", "127.0.0.1:0", "--chunk-interval-ms", "1000", "--threads", "1"],
                tmp, stdout_pipe=True)
    line = mock.proc.stdout.readline().decode().strip()
    if not line:
        raise RuntimeError(f"the mock printed no address (see {tmp}/mock.log)")
    return mock, int(line.rsplit(":", 1)[1])


def start_gateway(binary: str, config: Path, tmp: Path, fd_limit: int, name: str) -> tuple[Proc, int, int]:
    port, admin = free_port(), free_port()
    gw = Proc(name, ["taskset", "-c", GATEWAY_CPU, "prlimit", f"--nofile={fd_limit}:{fd_limit}", binary,
                          "gateway", "--config", str(config), "--listen", f"127.0.0.1:{port}",
                          "--admin-listen", f"127.0.0.1:{admin}"], tmp)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if gw.proc.poll() is not None:
            raise RuntimeError(f"the gateway exited ({gw.proc.returncode}); see {tmp}/{name}.log")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1) as r:
                if r.status == 200:
                    return gw, port, admin
        except OSError:
            time.sleep(0.05)
    gw.stop()
    raise RuntimeError(f"the gateway did not become ready; see {tmp}/{name}.log")


# --- HTTP/1.1 streams ------------------------------------------------------------------------

# Whether stream requests carry an `x-request-id` (as behind ingress-nginx or Envoy, which add
# one to every request); set from `--request-id`.
REQUEST_ID = {"on": False}


def stream_request(port: int, chunks: int) -> bytes:
    body = json.dumps({"model": ALIAS, "stream": True, "max_tokens": chunks,
                       "messages": [{"role": "user", "content": "stream slowly"}]}).encode()
    rid = f"X-Request-Id: {os.urandom(16).hex()}\r\n" if REQUEST_ID["on"] else ""
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nAccept: text/event-stream\r\n{rid}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class Stream(asyncio.Protocol):
    """One streamed completion on its own connection: counts the SSE events as they arrive,
    and is complete when `data: [DONE]` and the chunked terminator have arrived."""

    EVENT, DONE, END = b"data: ", b"data: [DONE]", b"\r\n0\r\n\r\n"

    def __init__(self, request: bytes, finished: asyncio.Future, on_first=None):
        self.request, self.finished, self.on_first = request, finished, on_first
        self.head = b""
        self.status: int | None = None
        self.tail = b""
        self.events = 0
        self.done = False
        self.started = time.perf_counter()
        self.first_at: float | None = None
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.status is None:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            head, data = self.head.split(b"\r\n\r\n", 1)
            self.head = b""
            self.status = int(head.split(b" ", 2)[1])
        buf = self.tail + data
        new = buf.count(self.EVENT) - self.tail.count(self.EVENT)
        if new and self.events == 0:
            self.first_at = time.perf_counter()
            if self.on_first is not None:
                self.on_first()
        self.events += new
        self.done = self.done or self.DONE in buf
        if self.done and self.END in buf:
            self._finish(None)
            self.transport.close()
        self.tail = buf[-16:]

    def connection_lost(self, exc) -> None:
        if self.status is not None and self.status != 200:
            self._finish(f"status {self.status}")
        elif not self.done:
            self._finish(f"closed before [DONE] after {self.events} events ({exc or 'eof'})")
        else:
            self._finish(None)

    def _finish(self, error: str | None) -> None:
        if not self.finished.done():
            self.finished.set_result(error)


async def one_stream(port: int, request: bytes, timeout: float, on_first=None) -> Stream | str:
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    try:
        transport, proto = await asyncio.wait_for(
            loop.create_connection(lambda: Stream(request, finished, on_first), "127.0.0.1", port), 10)
    except (OSError, asyncio.TimeoutError) as e:
        return f"connect: {e!r}"
    try:
        error = await asyncio.wait_for(finished, timeout)
    except asyncio.TimeoutError:
        error = "timed out"
    transport.close()
    return error or proto


async def probe_ttfc(targets: dict[str, int], count: int) -> dict:
    """`count` one-chunk streams to each target, interleaved, each on a new connection: the time
    from connecting to the first event, and every stream must complete."""
    times: dict[str, list[float]] = {name: [] for name in targets}
    errors: dict[str, list[str]] = {name: [] for name in targets}
    for i in range(count):
        for name, port in (targets.items() if i % 2 == 0 else reversed(targets.items())):
            started = time.perf_counter()
            got = await one_stream(port, stream_request(port, 1), 20)
            if isinstance(got, str):
                errors[name].append(got)
            else:
                times[name].append((got.first_at - started) * 1000)
        await asyncio.sleep(0.05)
    return {name: {"n": len(times[name]), "errors": errors[name][:5], "error_count": len(errors[name]),
                   "p50_ms": pct(times[name], 0.5), "p90_ms": pct(times[name], 0.9),
                   "max_ms": max(times[name], default=None)} for name in targets}


def probe_process(targets: dict[str, int], count: int, queue) -> None:
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    queue.put(asyncio.run(probe_ttfc(targets, count)))


def run_probes(ctx, targets: dict[str, int], count: int) -> dict:
    """The probes in a process of their own, so the load's event loop does not delay them."""
    queue = ctx.Queue()
    p = ctx.Process(target=probe_process, args=(targets, count, queue), daemon=True)
    p.start()
    result = queue.get(timeout=count * 45 + 30)
    p.join(timeout=10)
    return result


async def hold_streams(n: int, rate: float, start, on_all_first, what: str) -> dict:
    """Starts `n` streams at `rate` a second (`start(i, on_first)` returns stream i's
    coroutine, which calls `on_first()` at its first event); calls `on_all_first()` (in a
    thread) once every stream has had its first event; returns when all have ended, with their
    results in order."""
    loop = asyncio.get_running_loop()
    first = 0
    all_first = asyncio.Event()

    def on_first():
        nonlocal first
        first += 1
        if first == n:
            all_first.set()

    started = time.perf_counter()
    tasks = []
    for i in range(n):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(start(i, on_first)))
    ramp = time.perf_counter() - started
    log(f"{n} {what} opened in {ramp:.1f} s; waiting for every first chunk")
    waiter = asyncio.ensure_future(all_first.wait())
    await asyncio.wait([waiter, asyncio.gather(*tasks)], return_when=asyncio.FIRST_COMPLETED)
    all_first_s = time.perf_counter() - started
    hold = None
    if all_first.is_set():
        log(f"every stream has its first chunk ({all_first_s:.1f} s after the first was opened)")
        hold = await loop.run_in_executor(None, on_all_first)
    else:
        waiter.cancel()
    results = await asyncio.gather(*tasks)
    return {"streams": n, "ramp_s": ramp, "all_first_chunk_s": all_first_s if all_first.is_set() else None,
            "first_chunks": first, "results": results, "duration_s": time.perf_counter() - started,
            "during": hold}


async def slow_streams(port: int, n: int, rate: float, chunks: int, on_all_first, timeout: float) -> dict:
    """`n` slow streams, each on its own HTTP/1.1 connection (see `hold_streams`)."""
    out = await hold_streams(
        n, rate, lambda _, on_first: one_stream(port, stream_request(port, chunks), timeout, on_first),
        on_all_first, "streams")
    results = out.pop("results")
    errors = [r for r in results if isinstance(r, str)]
    short = [r.events for r in results if not isinstance(r, str) and r.events != chunks + 1]
    return out | {"completed": len(results) - len(errors) - len(short), "errors": len(errors) + len(short),
                  "error_samples": errors[:5], "wrong_event_counts": short[:5], "events_per_stream": chunks + 1}


# --- HTTP/2 clients --------------------------------------------------------------------------

def chat_body(stream: bool, chunks: int = 1) -> bytes:
    d: dict = {"model": ALIAS, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        d |= {"stream": True, "max_tokens": chunks}
    return json.dumps(d).encode()


class H2Client(asyncio.Protocol):
    """One HTTP/2 connection with prior knowledge (h2c), many requests on it."""

    def __init__(self, port: int):
        self.port = port
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        # stream id -> (future, [status, data...], on_first)
        self.pending: dict[int, tuple[asyncio.Future, list, object]] = {}
        self.ready = asyncio.get_running_loop().create_future()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.conn.initiate_connection()
        transport.write(self.conn.data_to_send())

    def data_received(self, data):
        try:
            events = self.conn.receive_data(data)
        except Exception as e:  # noqa: BLE001 (a protocol error ends every request on it)
            self._fail(RuntimeError(f"HTTP/2 protocol error: {e!r}"))
            self.transport.close()
            return
        for ev in events:
            if isinstance(ev, h2.events.RemoteSettingsChanged) and not self.ready.done():
                self.ready.set_result(None)
            elif isinstance(ev, h2.events.ResponseReceived):
                self.pending[ev.stream_id][1].append(int(dict(ev.headers).get(b":status", b"0")))
            elif isinstance(ev, h2.events.DataReceived):
                _, parts, on_first = self.pending[ev.stream_id]
                if len(parts) == 1 and on_first is not None:
                    on_first()
                parts.append(ev.data)
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                fut, parts, _ = self.pending.pop(ev.stream_id)
                if not fut.done():
                    fut.set_result(parts)
            elif isinstance(ev, h2.events.StreamReset):
                fut, _, _ = self.pending.pop(ev.stream_id, (None, None, None))
                if fut is not None and not fut.done():
                    fut.set_exception(RuntimeError(f"stream reset ({ev.error_code})"))
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self._fail(RuntimeError(f"GOAWAY ({ev.error_code})"))
        out = self.conn.data_to_send()
        if out:
            self.transport.write(out)

    def connection_lost(self, exc):
        self._fail(RuntimeError(f"connection lost ({exc or 'eof'})"))

    def _fail(self, error):
        if not self.ready.done():
            self.ready.set_exception(error)
        for fut, _, _ in self.pending.values():
            if not fut.done():
                fut.set_exception(error)
        self.pending.clear()

    async def request(self, body: bytes, stream: bool, timeout: float = 30,
                      on_first=None, events: int | None = None) -> tuple[float, str | None]:
        """Latency in ms and an error, if any; a stream must end with `[DONE]` (and carry
        `events` events when given)."""
        sid = self.conn.get_next_available_stream_id()
        fut = asyncio.get_running_loop().create_future()
        self.pending[sid] = (fut, [], on_first)
        started = time.perf_counter()
        self.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"),
                                     (":authority", f"127.0.0.1:{self.port}"), (":path", "/v1/chat/completions"),
                                     ("content-type", "application/json"), ("content-length", str(len(body))),
                                     *([("x-request-id", os.urandom(16).hex())] if REQUEST_ID["on"] else [])])
        self.conn.send_data(sid, body, end_stream=True)
        self.transport.write(self.conn.data_to_send())
        try:
            parts = await asyncio.wait_for(fut, timeout)
        except Exception as e:  # noqa: BLE001
            return 0.0, repr(e)
        took = (time.perf_counter() - started) * 1000
        status = parts[0] if parts and isinstance(parts[0], int) else None
        text = b"".join(p for p in parts[1:] if isinstance(p, bytes))
        if status != 200:
            return took, f"status {status}: {text[:200]!r}"
        if stream and b"data: [DONE]" not in text:
            return took, "stream without [DONE]"
        if stream and events is not None and text.count(b"data: ") != events:
            return took, f"{text.count(b'data: ')} events, not {events}"
        if not stream and b'"chat.completion"' not in text:
            return took, "not a chat.completion"
        return took, None


async def h2_connect(port: int, count: int, rate: float) -> tuple[list[H2Client], list[str]]:
    loop = asyncio.get_running_loop()
    conns: list[H2Client] = []
    errors: list[str] = []

    async def connect(i: int):
        await asyncio.sleep(i / rate)
        try:
            _, proto = await asyncio.wait_for(loop.create_connection(lambda: H2Client(port), "127.0.0.1", port), 10)
            await asyncio.wait_for(proto.ready, 10)
            conns.append(proto)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    await asyncio.gather(*(connect(i) for i in range(count)))
    return conns, errors


def h2_clients(port: int, clients: int, requests: int, rate: float, on_connected, gateway_pid: int) -> dict:
    """`clients` connections, all open before the first request; then `requests` on each, sent
    open-loop at `rate` a second in all (request r on connection r mod clients, so every
    connection has requests in flight throughout), alternately a plain completion and a
    one-chunk stream. Latency is counted from the scheduled send time."""
    plain, streamed = chat_body(False), chat_body(True, 1)

    async def run() -> dict:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        conns, connect_errors = await h2_connect(port, clients, 1000)
        connect_s = time.perf_counter() - started
        log(f"HTTP/2: {len(conns)} connections open ({len(connect_errors)} failed) in {connect_s:.1f} s")
        open_state = await loop.run_in_executor(None, on_connected)
        latencies: list[float] = []
        errors: list[str] = []
        late = 0

        async def one(c: H2Client, stream: bool, due: float):
            took, err = await c.request(streamed if stream else plain, stream)
            if err:
                errors.append(err)
            else:
                latencies.append((time.perf_counter() - due) * 1000)

        total = len(conns) * requests
        cpu0, t0 = cpu_seconds(gateway_pid), time.perf_counter()
        tasks = []
        for r in range(total):
            due = t0 + r / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.01:
                late += 1
            tasks.append(asyncio.ensure_future(one(conns[r % len(conns)], r % 2 == 1, due)))
        await asyncio.gather(*tasks)
        took = time.perf_counter() - t0
        cpu = cpu_seconds(gateway_pid) - cpu0
        for c in conns:
            c.transport.close()
        return {"clients": clients, "connected": len(conns), "connect_errors": len(connect_errors),
                "connect_error_samples": connect_errors[:5], "connect_s": connect_s,
                "with_connections_open": open_state, "rate": rate, "sent_late": late,
                "requests": clients * requests, "ok": len(latencies), "errors": len(errors) + len(connect_errors),
                "error_samples": errors[:5], "seconds": took, "rps": len(latencies) / took if took else None,
                "gateway_cpu_us_per_request": cpu / max(1, len(latencies)) * 1e6,
                "p50_ms": pct(latencies, 0.5), "p99_ms": pct(latencies, 0.99), "max_ms": max(latencies, default=None)}

    return asyncio.run(run())


async def h2_slow_streams(port: int, n: int, per_conn: int, rate: float, chunks: int, on_all_first,
                          timeout: float) -> dict:
    """`n` slow streams multiplexed `per_conn` to an HTTP/2 connection (see `hold_streams`)."""
    conns, connect_errors = await h2_connect(port, -(-n // per_conn), 1000)
    if not conns:
        return {"streams": n, "errors": n, "error_samples": connect_errors[:5], "completed": 0, "first_chunks": 0}
    body = chat_body(True, chunks)
    out = await hold_streams(
        n, rate, lambda i, on_first: conns[(i // per_conn) % len(conns)].request(body, True, timeout, on_first,
                                                                                  chunks + 1),
        on_all_first, f"HTTP/2 streams on {len(conns)} connections")
    errors = [err for _, err in out.pop("results") if err]
    for c in conns:
        c.transport.close()
    return out | {"connections": len(conns), "completed": n - len(errors), "errors": len(errors) + len(connect_errors),
                  "error_samples": (connect_errors + errors)[:5], "events_per_stream": chunks + 1}


# --- phases ----------------------------------------------------------------------------------

def stream_phase(kind: str, args, ctx, tmp: Path, mock_port: int, streams: int, fd_limit: int) -> dict:
    """A fresh gateway: idle probes and RSS, then `streams` slow streams (`kind`: HTTP/1.1, one
    connection each, or HTTP/2, `--h2-streams-per-connection` each) and, with all open, RSS,
    CPU and the probes again; every stream must complete."""
    gw, port, admin = start_gateway(args.modelgate_bin, tmp / "config", tmp, fd_limit, f"gateway-{kind}")
    try:
        targets = {"gateway": port, "direct": mock_port}
        log(f"{kind}: gateway pid {gw.pid} on :{port}; idle probes")
        run_probes(ctx, targets, 5)  # warm-up: the first requests set up the route and its pools
        out: dict = {"kind": kind, "idle": {"probes": run_probes(ctx, targets, args.probes)}}
        time.sleep(1)
        out["idle"]["memory"] = memory(gw.pid)
        chunks = int(streams / args.ramp_rate) + args.hold

        def during() -> dict:
            time.sleep(1)
            cpu0, t0 = cpu_seconds(gw.pid), time.monotonic()
            mem = memory(gw.pid)
            cpu = (cpu_seconds(gw.pid) - cpu0) / (time.monotonic() - t0) * 100
            metrics = admin_metrics(admin)
            log(f"{kind}: RSS with every stream open {mem['vmrss_kb']} KB (idle {out['idle']['memory']['vmrss_kb']}); "
                "probes under load")
            probes = run_probes(ctx, targets, args.probes)
            return {"memory": mem, "cpu_pct": cpu, "open_connections": api_metric(metrics, "modelgate_connections{"),
                    "probes": probes}

        log(f"{kind}: {streams} streams of {chunks} chunks (one a second), opened at {args.ramp_rate:.0f}/s")
        timeout = chunks + 60
        if kind == "http1":
            out |= asyncio.run(slow_streams(port, streams, args.ramp_rate, chunks, during, timeout))
        else:
            out |= asyncio.run(h2_slow_streams(port, streams, args.h2_streams_per_connection, args.ramp_rate, chunks,
                                               during, timeout))
        time.sleep(1)
        out["after"] = memory(gw.pid)
        out["connection_cap"] = api_metric(admin_metrics(admin), "modelgate_connection_limit{")
        load = out.get("during")
        if load:
            idle = out["idle"]["memory"]
            out["rss_per_stream_kb"] = (load["memory"]["vmrss_kb"] - idle["vmrss_kb"]) / streams
            out["anon_per_stream_kb"] = (load["memory"]["smaps_rollup_kb"]["Anonymous"]
                                         - idle["smaps_rollup_kb"]["Anonymous"]) / streams
            gi, gl = out["idle"]["probes"]["gateway"], load["probes"]["gateway"]
            di, dl = out["idle"]["probes"]["direct"], load["probes"]["direct"]
            if gi["p50_ms"] and gl["p50_ms"]:
                out["ttfc_ratio"] = gl["p50_ms"] / gi["p50_ms"]
                out["ttfc_added_idle_ms"] = gi["p50_ms"] - di["p50_ms"]
                out["ttfc_added_load_ms"] = gl["p50_ms"] - dl["p50_ms"]
        log(f"{kind}: {out.get('completed')} of {streams} completed, {out.get('errors')} errors; "
            f"RSS per stream {out.get('rss_per_stream_kb')} KB")
        return out
    finally:
        gw.stop()


def h2_clients_phase(args, tmp: Path, fd_limit: int) -> dict:
    gw, port, admin = start_gateway(args.modelgate_bin, tmp / "config", tmp, fd_limit, "gateway-h2-clients")
    try:
        # warm up (the first requests build the routes' clients)
        asyncio.run(probe_ttfc({"gateway": port}, 5))
        time.sleep(1)
        before = memory(gw.pid)

        def connected() -> dict:
            time.sleep(0.5)
            return {"memory": memory(gw.pid),
                    "open_connections": api_metric(admin_metrics(admin), "modelgate_connections{")}

        out = h2_clients(port, args.h2_clients, args.h2_requests, args.h2_rate, connected, gw.pid)
        time.sleep(0.5)
        out["before"], out["after"] = before, memory(gw.pid)
        o = (out.get("with_connections_open") or {}).get("memory")
        if o and out["connected"]:
            out["rss_per_connection_kb"] = (o["vmrss_kb"] - before["vmrss_kb"]) / out["connected"]
        log(f"HTTP/2 clients: {out['ok']} of {out['requests']} answered right, {out['errors']} errors")
        return out
    finally:
        gw.stop()


# --- report ----------------------------------------------------------------------------------

def fmt(v, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"


def stream_rows(p: dict, label: str) -> list[str]:
    load = p.get("during") or {}
    pi, pl = p["idle"]["probes"], load.get("probes") or {}
    lm = (load.get("memory") or {})
    errs_i = pi["gateway"]["error_count"] + pi["direct"]["error_count"]
    errs_l = sum((pl.get(k) or {}).get("error_count", 0) for k in ("gateway", "direct"))
    return [
        f"| **{label}** streams opened / with a first chunk / complete (every chunk and `[DONE]`) / errors | "
        f"{fmt(p['streams'])} / {fmt(p.get('first_chunks'))} / {fmt(p.get('completed'))} / {fmt(p.get('errors'))} "
        f"| all, 0 errors |",
        f"| {label}: s to open all / s until every stream had its first chunk; gateway's open connections then | "
        f"{fmt(p.get('ramp_s'), 1)} / {fmt(p.get('all_first_chunk_s'), 1)}; {fmt(load.get('open_connections'), 0)} | |",
        f"| {label}: RSS idle / with every stream open / after they ended, KB | {fmt(p['idle']['memory']['vmrss_kb'])} / "
        f"{fmt(lm.get('vmrss_kb'))} / {fmt(p['after']['vmrss_kb'])} | |",
        f"| {label}: **RSS per open stream above idle, KB** (VmRSS; smaps_rollup Anonymous) | "
        f"**{fmt(p.get('rss_per_stream_kb'))}** ({fmt(p.get('anon_per_stream_kb'))}) | ≤ 16 KB |",
        f"| {label}: gateway CPU while holding the streams, % of a core | {fmt(load.get('cpu_pct'), 1)} | |",
        f"| {label}: time to first chunk of a new request, gateway idle → under load, ms (p50) | "
        f"{fmt(pi['gateway']['p50_ms'], 3)} → {fmt((pl.get('gateway') or {}).get('p50_ms'), 3)} "
        f"(**{fmt(p.get('ttfc_ratio'))}×**) | ≤ 2× |",
        f"| {label}: the same straight to the mock, idle → under load, ms (p50); added by the gateway | "
        f"{fmt(pi['direct']['p50_ms'], 3)} → {fmt((pl.get('direct') or {}).get('p50_ms'), 3)}; "
        f"{fmt(p.get('ttfc_added_idle_ms'), 3)} → {fmt(p.get('ttfc_added_load_ms'), 3)} | |",
        f"| {label}: probe errors idle / under load | {errs_i} / {errs_l} | 0 |",
    ]


def render(R: dict) -> str:
    lines = [
        f"Command: `{R['command']}` · {R['started_at']} · machine: {R['nproc']} cores, load average "
        f"{R['loadavg_start']} at the start{' (**shared with other work: timing figures are noisy**)' if R['noisy'] else ''}.",
        "",
        f"Gateway: {'release build' if '/release/' in R['modelgate_bin'] else 'build'} (commit {R['commit']}), default flags, under `prlimit --nofile={R['fd_limit']}:"
        f"{R['fd_limit']}` (connection cap {fmt(R.get('connection_cap'), 0)}), a fresh process for each part, "
        "pinned to core 0. Mock upstream (one chunk a second), load and probes on core 1.",
        "",
        "| figure | value | target |",
        "|---|---|---|",
    ]
    for kind, label in (("http1", "HTTP/1.1"), ("http2", "HTTP/2")):
        if kind in R["phases"]:
            lines += stream_rows(R["phases"][kind], label)
    h = R.get("h2_clients")
    if h and not h.get("skipped"):
        o = h.get("with_connections_open") or {}
        lines += [
            f"| **HTTP/2 (h2c) clients** connected / requests / answered right / errors | {fmt(h['connected'])} / "
            f"{fmt(h['requests'])} / {fmt(h['ok'])} / {fmt(h['errors'])} | all, 0 errors |",
            f"| HTTP/2 clients: latency p50 / p99 / max, ms (open loop, {fmt(h['rate'], 0)} requests a second over "
            f"all connections, from the scheduled send); gateway CPU per request, µs | {fmt(h['p50_ms'], 3)} / "
            f"{fmt(h['p99_ms'], 3)} / {fmt(h['max_ms'], 3)}; {fmt(h['gateway_cpu_us_per_request'], 0)} | |",
            f"| HTTP/2 clients: RSS before / with every connection open / after, KB; per connection | "
            f"{fmt(h['before']['vmrss_kb'])} / {fmt((o.get('memory') or {}).get('vmrss_kb'))} / "
            f"{fmt(h['after']['vmrss_kb'])}; {fmt(h.get('rss_per_connection_kb'))} | |",
        ]
    elif h:
        lines.append(f"| HTTP/2 clients | skipped: {h['skipped']} | |")
    lines += ["", "Verdicts: " + "; ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in R["verdicts"].items()) + "."]
    if R.get("notes"):
        lines += [""] + [f"* {n}" for n in R["notes"]]
    if R["problems"]:
        lines += ["", "Problems: " + "; ".join(R["problems"])]
    return "\n".join(lines) + "\n"


def verdicts(R: dict, args) -> dict[str, bool]:
    out = {}
    for kind, label in (("http1", "HTTP/1.1"), ("http2", "HTTP/2")):
        p = R["phases"].get(kind)
        if p is None:
            continue
        out[f"{label} streams without errors"] = p.get("errors") == 0 and p.get("completed") == p["streams"]
        out[f"{label} RSS per open stream ≤ 16 KB"] = (p.get("rss_per_stream_kb") or 1e9) <= 16
        out[f"{label} time to first chunk under load ≤ 2× idle"] = (p.get("ttfc_ratio") or 1e9) <= 2
    h = R.get("h2_clients")
    if h and not h.get("skipped"):
        out["HTTP/2 clients all answered"] = h.get("errors") == 0 and h.get("ok") == h.get("requests")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))
    cache = Path(os.environ.get("MODELGATE_CACHE", str(Path.home() / ".cache" / "modelgate")))
    parser.add_argument("--modelgate-bin", default=str(Path(target) / "release/modelgate"))
    parser.add_argument("--mock-bin", default=None,
                        help="default: $CARGO_TARGET_DIR/release/mock-upstream, else the bench's cache")
    parser.add_argument("--streams", type=int, default=10000)
    parser.add_argument("--ramp-rate", type=float, default=1000, help="new streams a second")
    parser.add_argument("--hold", type=int, default=30,
                        help="seconds each stream lasts beyond the ramp (every stream is open while measuring)")
    parser.add_argument("--probes", type=int, default=50)
    parser.add_argument("--fd-limit", type=int, default=FD_LIMIT,
                        help="RLIMIT_NOFILE for the gateway and the mock (lowered to the hard limit this "
                             "process may set)")
    parser.add_argument("--h2-streams-per-connection", type=int, default=100)
    parser.add_argument("--h2-clients", type=int, default=1000)
    parser.add_argument("--h2-requests", type=int, default=10)
    parser.add_argument("--h2-rate", type=float, default=1000,
                        help="requests a second over all the HTTP/2 clients (open loop)")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: http1,http2,h2-clients")
    parser.add_argument("--request-id", action=argparse.BooleanOptionalAction, default=True,
                        help="send an x-request-id with every request, as ingress-nginx and Envoy do (default on)")
    parser.add_argument("--out", default=str(HERE / "results" / "concurrency-latest"))
    args = parser.parse_args()
    REQUEST_ID["on"] = args.request_id
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    mock_bin = args.mock_bin or next(
        (str(p) for p in (Path(target) / "release/mock-upstream", cache / "bench-target/release/mock-upstream")
         if p.exists()), None)
    if mock_bin is None:
        log("no mock upstream: cargo build --release --manifest-path bench/mock-upstream/Cargo.toml")
        return 1
    if not Path(args.modelgate_bin).exists():
        log(f"no gateway binary at {args.modelgate_bin}: cargo build --release first")
        return 1
    fd_limit = raise_own_fd_limit(args.fd_limit)
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    ctx = multiprocessing.get_context("fork")
    tmp = Path(tempfile.mkdtemp(prefix="modelgate-concurrency-"))
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    R: dict = {"command": "python3 bench/concurrency.py " + " ".join(sys.argv[1:]), "args": vars(args),
               "started_at": time.strftime("%Y-%m-%d %H:%M"), "nproc": os.cpu_count(),
               "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
               "noisy": os.getloadavg()[0] > 0.5, "modelgate_bin": args.modelgate_bin, "commit": commit,
               "fd_limit": fd_limit, "phases": {}, "notes": [], "problems": []}
    # Each HTTP/1.1 stream holds a client and a provider descriptor: the gateway's automatic cap
    # is half of what is left after its reserve.
    cap = (fd_limit - 96) // 2
    h1_streams = min(args.streams, (cap - 10) // 100 * 100)
    if h1_streams < args.streams:
        R["notes"].append(
            f"RLIMIT_NOFILE is at most {fd_limit:,} here (the hard limit; this sandbox lacks CAP_SYS_RESOURCE to "
            f"raise it), so the gateway's automatic connection cap is {cap:,}, and every HTTP/1.1 stream holds a "
            f"client and a provider descriptor: the HTTP/1.1 part runs {h1_streams:,} streams. The HTTP/2 part "
            f"carries all {args.streams:,} on {-(-args.streams // args.h2_streams_per_connection):,} client "
            "connections (still one provider connection per stream).")
    procs: list[Proc] = []
    try:
        mock, mock_port = start_mock(mock_bin, tmp, fd_limit)
        procs.append(mock)
        write_config(tmp / "config", mock_port)
        if "http1" not in skip:
            R["phases"]["http1"] = stream_phase("http1", args, ctx, tmp, mock_port, h1_streams, fd_limit)
            R["connection_cap"] = R["phases"]["http1"].get("connection_cap")
        if "http2" not in skip:
            if h2 is None:
                R["problems"].append("HTTP/2 streams skipped: the `h2` package is missing (pip install h2==4.4.1 into the venv running this)")
            else:
                R["phases"]["http2"] = stream_phase("http2", args, ctx, tmp, mock_port, args.streams, fd_limit)
                R.setdefault("connection_cap", R["phases"]["http2"].get("connection_cap"))
        if "h2-clients" not in skip and args.h2_clients:
            R["h2_clients"] = h2_clients_phase(args, tmp, fd_limit) if h2 is not None else {
                "skipped": "the `h2` package is missing (run with the shared venv's python)"}
    except Exception as e:  # noqa: BLE001
        R["problems"].append(f"{type(e).__name__}: {e}")
        log(f"ERROR: {e!r}")
    finally:
        for p in reversed(procs):
            p.stop()
    R["verdicts"] = verdicts(R, args)
    Path(args.out + ".json").write_text(json.dumps(R, indent=1, default=str) + "\n")
    try:
        md = render(R)
    except (KeyError, TypeError) as e:
        md = f"incomplete run ({e!r}); see {args.out}.json\n"
    Path(args.out + ".md").write_text(md)
    print(md)
    log(f"wrote {args.out}.md and .json; logs in {tmp}")
    return 0 if R["verdicts"] and all(R["verdicts"].values()) and not R["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
