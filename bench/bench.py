#!/usr/bin/env python3
"""modelgate benchmark driver (Python 3.11, standard library only).

Run it through `bash bench/run.sh [--quick] [...]`; see bench/README.md for the
method. It installs its tools (nginx, oha, LiteLLM in a venv), builds the mock
upstream and modelgate, starts every server on 127.0.0.1 on free ports, sends
the same request four ways (direct, nginx, LiteLLM, modelgate), and writes a
markdown table and a JSON file under bench/results/.

Every process it starts is pinned with taskset (proxies on core 0, the mock
upstreams and every load generator on core 1), runs in its own process group,
and is ended by that pid when the run ends, fails or is interrupted. Every load
is bounded in time and count.
"""
from __future__ import annotations

import argparse
import atexit
import datetime as _dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = Path(os.environ.get("MODELGATE_CACHE", str(Path.home() / ".cache" / "modelgate")))
TOOLS = CACHE / "tools"
VENV = CACHE / "bench-venv"
BENCH_TARGET = CACHE / "bench-target"
GATEWAY_TARGET = CACHE / "target"

OHA_VERSION = "1.16.0"
# 1.82.7 / 1.82.8 (and 1.107.0) were withdrawn after a supply-chain compromise;
# 1.82.6 is the release most projects pinned as known-good.
LITELLM_VERSION = "1.82.6"

PROXY_CPU = "0"
LOAD_CPU = "1"
P99_LIMIT_MS = 5.0
TARGET_ORDER = ["direct", "nginx", "litellm", "modelgate"]
# The translated path: the modelgate process above, called for an alias on an Anthropic
# provider (Chat Completions in, Anthropic Messages out). Kept out of the main table.
TRANSLATED = "modelgate-anthropic"
TRANSLATED_MODEL = "bench-model-anthropic"
LABEL = {"direct": "direct", "nginx": "nginx", "litellm": "LiteLLM", "modelgate": "modelgate"}

BODY = json.dumps(
    {"model": "bench-model", "messages": [{"role": "user", "content": "Say hello to the benchmark."}]},
    separators=(",", ":"),
)


# Chunks a streamed answer has: the mock's `--chunks` (set from it at start), sent as the
# request's `max_tokens` too. The mock streams `max_tokens` chunks when a request names it, and a
# request translated for an Anthropic upstream always does (that API requires it; the
# gateway fills in its default, 4,096: 41 s a stream at 10 ms a chunk).
STREAM_CHUNKS = 20


def body_for(model: str, stream: bool = False) -> str:
    d = {"model": model, "messages": [{"role": "user", "content": "Say hello to the benchmark."}]}
    if stream:
        d |= {"stream": True, "max_tokens": STREAM_CHUNKS}
    return json.dumps(d, separators=(",", ":"))


def log(msg: str) -> None:
    ts = time.strftime("%H:%M:%S")
    print(f"[bench {ts}] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------
# process management


class Procs:
    """Every server the run starts; all are ended by pid at exit."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self._lock = threading.Lock()

    def start(self, name: str, argv: list[str], cpu: str, logdir: Path, env=None,
              stdout_pipe: bool = False, cwd=None) -> subprocess.Popen:
        full = ["taskset", "-c", cpu, *argv]
        errf = open(logdir / f"{name}.log", "ab")
        p = subprocess.Popen(
            full,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else errf,
            stderr=errf,
            env=env,
            cwd=cwd,
            start_new_session=True,  # own process group, pgid == pid
        )
        errf.close()
        with self._lock:
            self.procs.append((name, p))
        log(f"started {name} pid {p.pid} on cpu {cpu}")
        return p

    @staticmethod
    def _signal_group(p: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            try:
                p.send_signal(sig)
            except ProcessLookupError:
                pass

    def stop(self, p: subprocess.Popen, grace: float = 5.0) -> None:
        if p.poll() is None:
            self._signal_group(p, signal.SIGTERM)
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # whatever is left of its group (nginx workers, uvicorn children)
        self._signal_group(p, signal.SIGKILL)
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        with self._lock:
            self.procs = [(n, q) for (n, q) in self.procs if q is not p]

    def stop_all(self) -> None:
        with self._lock:
            items = list(reversed(self.procs))
        for name, p in items:
            self.stop(p, grace=3.0)
            log(f"stopped {name} pid {p.pid}")


PROCS = Procs()


def _on_signal(signum, _frame):
    raise SystemExit(128 + signum)


# --------------------------------------------------------------------------
# small helpers

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method: str, url: str, body: str | None = None, timeout: float = 10.0):
    data = body.encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with _OPENER.open(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


_GIVEN_PORTS: set[int] = set()


def free_port() -> int:
    """A port free on 127.0.0.1 now, never one this process was given before: two calls before
    either port is bound may otherwise get the same one from the kernel (a callgrind run of the
    gateway once got its admin port equal to its API port and could not start)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port
    raise BenchError("no free port that was not handed out already")


def wait_http_ok(url: str, deadline_s: float, proc: subprocess.Popen | None = None, what: str = "") -> float:
    t0 = time.monotonic()
    last = ""
    while time.monotonic() - t0 < deadline_s:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{what} exited with code {proc.returncode} before it was ready")
        try:
            st, _ = http("GET", url, timeout=2)
            if st == 200:
                return time.monotonic() - t0
            last = f"status {st}"
        except Exception as e:  # noqa: BLE001
            last = str(e)
        time.sleep(0.1)
    raise BenchError(f"{what} not ready at {url} after {deadline_s:.0f}s ({last})")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    k = (len(v) - 1) * q
    f = int(k)
    c = min(f + 1, len(v) - 1)
    return v[f] + (v[c] - v[f]) * (k - f)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def run_cmd(argv, timeout, **kw):
    return subprocess.run(argv, timeout=timeout, **kw)


# --------------------------------------------------------------------------
# memory


def rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def status_field(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def tree_pids(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            ppid = int(s[s.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def tree_rss_kb(root: int) -> int | None:
    vals = [rss_kb(p) for p in tree_pids(root)]
    vals = [v for v in vals if v is not None]
    return sum(vals) if vals else None


class RssSampler:
    """Samples the RSS of a process tree every `period` seconds in a thread."""

    def __init__(self, pid: int, period: float = 0.1):
        self.pid, self.period = pid, period
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        t0 = time.monotonic()
        pids, refreshed = [], -1e9
        while not self._stop.is_set():
            if time.monotonic() - refreshed > 5:
                pids, refreshed = tree_pids(self.pid), time.monotonic()
            vals = [x for x in (rss_kb(p) for p in pids) if x is not None]
            v = sum(vals) if vals else None
            if v is not None:
                self.samples.append((time.monotonic() - t0, v))
            self._stop.wait(self.period)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join(timeout=2)

    @property
    def peak_kb(self):
        return max((v for _, v in self.samples), default=None)


# --------------------------------------------------------------------------
# oha (load generator)


def oha_bin() -> str:
    p = TOOLS / "bin" / "oha"
    return str(p) if p.exists() else (shutil.which("oha") or str(p))


def oha(url: str, body: str, *, n: int | None = None, duration: float | None = None, c: int = 1,
        rate: float | None = None, latency_correction: bool = False, timeout_s: float = 120.0) -> dict:
    argv = ["taskset", "-c", LOAD_CPU, oha_bin(), "--no-tui", "--output-format", "json",
            "-m", "POST", "-H", "content-type: application/json", "-d", body,
            "-c", str(c), "-t", "10s"]
    if n is not None:
        argv += ["-n", str(n)]
    if duration is not None:
        argv += ["-z", f"{duration}s", "-w"]
    if rate is not None:
        argv += ["-q", str(rate)]
    if latency_correction:
        argv += ["--latency-correction"]
    argv.append(url)
    r = run_cmd(argv, timeout=timeout_s, capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"oha failed ({r.returncode}): {r.stderr.strip()[:500]}")
    return parse_oha(json.loads(r.stdout))


def parse_oha(d: dict) -> dict:
    codes = {str(k): int(v) for k, v in (d.get("statusCodeDistribution") or {}).items()}
    errs = {str(k): int(v) for k, v in (d.get("errorDistribution") or {}).items()}
    ok = codes.get("200", 0)
    total = sum(codes.values()) + sum(errs.values())
    lp = d.get("latencyPercentiles") or {}

    def ms(key):
        v = lp.get(key)
        return None if v is None else float(v) * 1000.0

    summ = d.get("summary") or {}
    return {
        "requests": total,
        "ok": ok,
        "errors": total - ok,
        "status_codes": codes,
        "error_kinds": errs,
        "p50_ms": ms("p50"),
        "p90_ms": ms("p90"),
        "p99_ms": ms("p99"),
        "p999_ms": ms("p99.9"),
        "max_ms": None if summ.get("slowest") is None else float(summ["slowest"]) * 1000.0,
        "rps": summ.get("requestsPerSec"),
    }


# --------------------------------------------------------------------------
# streaming client: one keep-alive HTTP/1.1 connection, timestamps each SSE event


class _StaleConnection(Exception):
    pass


class SseClient:
    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None):
        self.host, self.port = host, port
        self.sock: socket.socket | None = None
        # extra request headers (e.g. a client key), sent with every request
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def _connect(self):
        s = socket.create_connection((self.host, self.port), timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = s

    def request(self, path: str, body: str, timeout: float = 30.0) -> dict:
        reused = self.sock is not None
        try:
            return self._request(path, body, timeout)
        except _StaleConnection:
            if not reused:
                raise BenchError("connection closed before response headers")
            # the server closed an idle keep-alive connection (uvicorn does after 5 s): reconnect once
            self.close()
            return self._request(path, body, timeout)

    def _request(self, path: str, body: str, timeout: float) -> dict:
        if self.sock is None:
            self._connect()
        s = self.sock
        s.settimeout(timeout)
        payload = body.encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nAccept: text/event-stream\r\n{self.extra}"
                f"Content-Length: {len(payload)}\r\n\r\n").encode()
        t0 = time.perf_counter()
        buf = b""
        try:
            s.sendall(head + payload)
            # headers
            while b"\r\n\r\n" not in buf:
                d = s.recv(65536)
                if not d:
                    raise _StaleConnection()
                buf += d
        except (ConnectionResetError, BrokenPipeError, _StaleConnection):
            self.close()
            if buf:
                raise BenchError("connection closed in the middle of the response headers")
            raise _StaleConnection()
        t_headers = time.perf_counter()
        hdr, buf = buf.split(b"\r\n\r\n", 1)
        lines = hdr.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        clen = int(headers["content-length"]) if "content-length" in headers else None
        keep = headers.get("connection", "").lower() != "close"

        events: list[tuple[float, bytes]] = []
        sse = b""
        raw_left = clen
        chunk_left = 0  # bytes of chunk data still to read (chunked mode)
        state = "size"  # size | data | crlf | trailer | done
        pending = buf
        t_now = t_headers
        done = False

        def feed_sse(data: bytes, t: float):
            nonlocal sse
            sse += data.replace(b"\r\n", b"\n")
            while b"\n\n" in sse:
                ev, sse = sse.split(b"\n\n", 1)
                if ev.strip():
                    events.append((t, ev))

        while True:
            # consume what is pending
            if chunked:
                while pending and not done:
                    if state == "size":
                        if b"\r\n" not in pending:
                            break
                        line, pending = pending.split(b"\r\n", 1)
                        size = int(line.split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            state = "trailer"
                        else:
                            chunk_left, state = size, "data"
                    elif state == "data":
                        take = pending[:chunk_left]
                        pending = pending[chunk_left:]
                        chunk_left -= len(take)
                        feed_sse(take, t_now)
                        if chunk_left == 0:
                            state = "crlf"
                    elif state == "crlf":
                        if len(pending) < 2:
                            break
                        pending = pending[2:]
                        state = "size"
                    elif state == "trailer":
                        if b"\r\n" not in pending:
                            break
                        line, pending = pending.split(b"\r\n", 1)
                        if line == b"":
                            done = True
                if state == "trailer" and pending == b"" and done:
                    pass
            else:
                if pending:
                    if raw_left is not None:
                        take = pending[:raw_left]
                        raw_left -= len(take)
                    else:
                        take = pending
                    feed_sse(take, t_now)
                    pending = b""
                if raw_left is not None and raw_left <= 0:
                    done = True
            if done:
                break
            d = s.recv(65536)
            t_now = time.perf_counter()
            if not d:
                if not chunked and clen is None:
                    done = True
                    keep = False
                    break
                self.close()
                raise BenchError("connection closed mid-body")
            pending += d
        if sse.strip():
            events.append((t_now, sse))
        if not keep:
            self.close()
        data_events = [(t, e) for (t, e) in events if e.lstrip().startswith(b"data:")]
        done_seen = any(e.strip() == b"data: [DONE]" for _, e in data_events)
        chunks = [(t, e) for (t, e) in data_events if e.strip() != b"data: [DONE]"]
        times = [t - t0 for t, _ in chunks]
        return {
            "status": status,
            "headers_ms": (t_headers - t0) * 1000,
            "ttfc_ms": times[0] * 1000 if times else None,
            "gaps_ms": [(b - a) * 1000 for a, b in zip(times, times[1:])],
            "chunks": len(chunks),
            "done": done_seen,
            "total_ms": (t_now - t0) * 1000,
            "content_type": headers.get("content-type", ""),
            "first_event": chunks[0][1][:300].decode("utf-8", "replace") if chunks else "",
        }


# --------------------------------------------------------------------------
# installs and builds


def apt_install(package: str) -> None:
    """Installs a Debian package (sudo when not root)."""
    log(f"installing {package} (apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    run_cmd(sudo + ["apt-get", "update", "-qq"], timeout=600, check=True, env=env)
    run_cmd(sudo + ["apt-get", "install", "-y", "-qq", package], timeout=900, check=True, env=env)


def ensure_tools(args) -> dict:
    info = {}
    need_nginx = "nginx" in args.proxies
    need_litellm = "litellm" in args.proxies
    if need_nginx and not nginx_bin():
        if args.no_install:
            raise BenchError("nginx not installed (and --no-install)")
        apt_install("nginx")
    if "instructions" not in args.skip and not shutil.which("callgrind_control"):
        if args.no_install:
            raise BenchError("valgrind not installed (and --no-install); or --skip instructions")
        apt_install("valgrind")
    if not Path(oha_bin()).exists():
        if args.no_install:
            raise BenchError("oha not installed (and --no-install)")
        log(f"installing oha {OHA_VERSION} (cargo install, several minutes the first time)")
        run_cmd(["cargo", "install", "oha", "--locked", "--version", OHA_VERSION, "--root", str(TOOLS)],
                timeout=3600, check=True)
    if need_litellm:
        stamp = VENV / f".litellm-{LITELLM_VERSION}"
        if not stamp.exists() or not (VENV / "bin" / "litellm").exists():
            if args.no_install:
                raise BenchError("LiteLLM venv missing (and --no-install)")
            log(f"installing litellm[proxy]=={LITELLM_VERSION} into {VENV}")
            if not (VENV / "bin" / "python").exists():
                run_cmd([sys.executable, "-m", "venv", str(VENV)], timeout=300, check=True)
            run_cmd([str(VENV / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"],
                    timeout=3600, check=True)
            stamp.touch()
    log("building mock-upstream")
    run_cmd(["cargo", "build", "--release", "--quiet", "--manifest-path", str(HERE / "mock-upstream" / "Cargo.toml")],
            timeout=3600, check=True, env=dict(os.environ, CARGO_TARGET_DIR=str(BENCH_TARGET)))
    if "modelgate" in args.proxies and not args.modelgate_bin:
        log("building modelgate (cargo build --release)")
        r = run_cmd(["cargo", "build", "--release", "--quiet"], cwd=str(REPO), timeout=3600,
                    env=dict(os.environ, CARGO_TARGET_DIR=str(GATEWAY_TARGET)))
        if r.returncode != 0:
            raise BenchError("modelgate did not build; run with --proxies nginx,litellm to bench the others")
    # versions
    try:
        info["nginx"] = run_cmd([nginx_bin() or "nginx", "-v"], timeout=10, capture_output=True,
                                text=True).stderr.strip().rsplit("/", 1)[-1] if need_nginx else None
    except Exception:  # noqa: BLE001
        info["nginx"] = None
    try:
        info["oha"] = run_cmd([oha_bin(), "--version"], timeout=10, capture_output=True,
                              text=True).stdout.strip().split()[-1]
    except Exception:  # noqa: BLE001
        info["oha"] = None
    info["litellm"] = LITELLM_VERSION if need_litellm else None
    info["modelgate_bin"] = args.modelgate_bin
    try:
        info["modelgate_commit"] = run_cmd(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], timeout=10,
                                           capture_output=True, text=True).stdout.strip() or None
        dirty = run_cmd(["git", "-C", str(REPO), "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"],
                        timeout=10, capture_output=True, text=True).stdout.strip()
        info["modelgate_tree_dirty"] = bool(dirty)
    except Exception:  # noqa: BLE001
        info["modelgate_commit"] = None
    return info


def nginx_bin() -> str | None:
    for p in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if p and Path(p).exists():
            return p
    return None


def modelgate_bin(args) -> str:
    return args.modelgate_bin or str(GATEWAY_TARGET / "release" / "modelgate")


# --------------------------------------------------------------------------
# servers


class Target:
    def __init__(self, name: str, port: int, slow_port: int, model: str, slow_model: str,
                 proc: subprocess.Popen | None):
        self.name, self.port, self.slow_port = name, port, slow_port
        self.model, self.slow_model, self.proc = model, slow_model, proc
        self.failed: str | None = None

    def url(self, slow: bool = False) -> str:
        return f"http://127.0.0.1:{self.slow_port if slow else self.port}/v1/chat/completions"

    def body(self, slow: bool = False, stream: bool = False) -> str:
        return body_for(self.slow_model if slow else self.model, stream)


def start_mock(name: str, tmp: Path, args, delay_ms: int) -> tuple[subprocess.Popen, int]:
    binp = BENCH_TARGET / "release" / "mock-upstream"
    p = PROCS.start(name, [str(binp), "--listen", "127.0.0.1:0", "--delay-ms", str(delay_ms),
                           "--chunks", str(args.chunks), "--chunk-interval-ms", str(args.chunk_interval_ms),
                           "--threads", "1", "--burst-chunks", str(args.burst_chunks)],
                    LOAD_CPU, tmp, stdout_pipe=True)
    line = p.stdout.readline().decode().strip()  # first stdout line: bound address
    if not line:
        raise BenchError(f"{name} printed no address (see {tmp}/{name}.log)")
    port = int(line.rsplit(":", 1)[1])
    wait_http_ok(f"http://127.0.0.1:{port}/healthz", 10, p, name)
    return p, port


def start_nginx(tmp: Path, fast_port: int, slow_port: int) -> Target:
    d = tmp / "nginx"
    d.mkdir()
    os.chmod(tmp, 0o755)
    os.chmod(d, 0o755)
    p1, p2 = free_port(), free_port()
    nginx_conf(d, [(p1, fast_port), (p2, slow_port)], master=True)
    nb = nginx_bin()
    p = PROCS.start("nginx", [nb, "-p", str(d), "-c", str(d / "nginx.conf"), "-e", str(d / "error.log")],
                    PROXY_CPU, tmp)
    wait_http_ok(f"http://127.0.0.1:{p1}/v1/models", 20, p, "nginx")
    return Target("nginx", p1, p2, "bench-model", "bench-model-slow", p)


def start_litellm(tmp: Path, fast_port: int, slow_port: int) -> tuple[Target, float]:
    port = free_port()
    cfg = tmp / "litellm.yaml"
    cfg.write_text(f"""model_list:
  - model_name: bench-model
    litellm_params:
      model: openai/mock-model
      api_base: http://127.0.0.1:{fast_port}/v1
      api_key: sk-bench-dummy
  - model_name: bench-model-slow
    litellm_params:
      model: openai/mock-model
      api_base: http://127.0.0.1:{slow_port}/v1
      api_key: sk-bench-dummy
litellm_settings:
  telemetry: false
""")
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR",
               LITELLM_TELEMETRY="False", NO_PROXY="*", no_proxy="*")
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(k, None)
    p = PROCS.start("litellm", [str(VENV / "bin" / "litellm"), "--config", str(cfg), "--host", "127.0.0.1",
                                "--port", str(port), "--num_workers", "1"], PROXY_CPU, tmp, env=env)
    t = Target("litellm", port, port, "bench-model", "bench-model-slow", p)
    return t, port


def write_modelgate_config(d: Path, fast_port: int, slow_port: int, aliases: int = 0) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "00-bench.yaml").write_text(f"""apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {{name: mock-upstream, namespace: default}}
spec:
  type: openai-compatible
  baseUrl: http://127.0.0.1:{fast_port}/v1
  apiKey: {{env: BENCH_UPSTREAM_KEY}}
---
apiVersion: modelgate.dev/v1alpha1
kind: LLMProvider
metadata: {{name: mock-upstream-slow, namespace: default}}
spec:
  type: openai-compatible
  baseUrl: http://127.0.0.1:{slow_port}/v1
  apiKey: {{env: BENCH_UPSTREAM_KEY}}
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {{name: bench-model, namespace: default}}
spec:
  target: mock-upstream/mock-model
---
apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {{name: bench-model-slow, namespace: default}}
spec:
  target: mock-upstream-slow/mock-model
""")
    # The translated path: the same mocks as Anthropic providers (Chat Completions in, the
    # Anthropic Messages API out), and the burst model for CPU per streamed chunk.
    (d / "01-translated.yaml").write_text("---\n".join(f"""apiVersion: modelgate.dev/v1alpha1
kind: {kind}
metadata: {{name: {name}, namespace: default}}
spec: {spec}
""" for kind, name, spec in [
        ("LLMProvider", "mock-anthropic", f"{{type: anthropic, baseUrl: 'http://127.0.0.1:{fast_port}', apiKey: {{env: BENCH_UPSTREAM_KEY}}}}"),
        ("LLMProvider", "mock-anthropic-slow", f"{{type: anthropic, baseUrl: 'http://127.0.0.1:{slow_port}', apiKey: {{env: BENCH_UPSTREAM_KEY}}}}"),
        ("ModelAlias", TRANSLATED_MODEL, "{target: mock-anthropic/mock-model}"),
        ("ModelAlias", TRANSLATED_MODEL + "-slow", "{target: mock-anthropic-slow/mock-model}"),
        ("ModelAlias", "bench-burst", "{target: mock-upstream/mock-burst}"),
        ("ModelAlias", "bench-burst-anthropic", "{target: mock-anthropic/mock-burst}"),
    ]))
    per_file = 1000
    for f in range((aliases + per_file - 1) // per_file):
        docs = []
        for i in range(f * per_file + 1, min(aliases, (f + 1) * per_file) + 1):
            docs.append(f"""apiVersion: modelgate.dev/v1alpha1
kind: ModelAlias
metadata: {{name: alias-{i:05d}, namespace: default}}
spec:
  target: mock-upstream/mock-model
""")
        (d / f"10-aliases-{f:02d}.yaml").write_text("---\n".join(docs))


def start_modelgate(name: str, tmp: Path, args, cfg_dir: Path) -> tuple[Target, int]:
    port, admin = free_port(), free_port()
    env = dict(os.environ, BENCH_UPSTREAM_KEY="sk-bench-dummy")
    env.setdefault("RUST_LOG", "warn")
    p = PROCS.start(name, [modelgate_bin(args), "gateway", "--config", str(cfg_dir),
                           "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}"],
                    PROXY_CPU, tmp, env=env)
    return Target("modelgate", port, port, "bench-model", "bench-model-slow", p), admin


# --------------------------------------------------------------------------
# checks


def mock_stats(port: int) -> dict:
    return json.loads(http("GET", f"http://127.0.0.1:{port}/stats")[1])


def check_target(t: Target, args, mock_ports: dict[str, int]) -> dict:
    """One non-stream, one stream and one slow request; the mock's counters must move."""
    res: dict = {}
    before = {k: json.loads(http("GET", f"http://127.0.0.1:{p}/stats")[1])["completions"] for k, p in mock_ports.items()}
    st, body = http("POST", t.url(), t.body(), timeout=15)
    res["nonstream_status"] = st
    try:
        j = json.loads(body)
        content = j["choices"][0]["message"]["content"]
        res["nonstream_ok"] = st == 200 and "fixed answer" in content and "usage" in j
        res["nonstream_usage"] = j.get("usage")
    except Exception as e:  # noqa: BLE001
        res["nonstream_ok"] = False
        res["nonstream_error"] = f"{e}: {body[:300]!r}"
    st2, body2 = http("POST", t.url(slow=True), t.body(slow=True), timeout=15)
    res["slow_status"] = st2
    res["slow_ok"] = st2 == 200 and b"fixed answer" in body2
    cl = SseClient("127.0.0.1", t.port)
    try:
        s = cl.request("/v1/chat/completions", t.body(stream=True))
        res["stream"] = {k: s[k] for k in ("status", "chunks", "done", "ttfc_ms", "total_ms", "content_type")}
        res["stream_ok"] = s["status"] == 200 and s["chunks"] >= 1 and s["done"]
        if not res["stream_ok"]:
            res["stream_first_event"] = s["first_event"]
    except Exception as e:  # noqa: BLE001
        res["stream_ok"] = False
        res["stream_error"] = str(e)
    finally:
        cl.close()
    after = {k: json.loads(http("GET", f"http://127.0.0.1:{p}/stats")[1])["completions"] for k, p in mock_ports.items()}
    res["mock_fast_delta"] = after["fast"] - before["fast"]
    res["mock_slow_delta"] = after["slow"] - before["slow"]
    res["forwarded"] = res["mock_fast_delta"] == 2 and res["mock_slow_delta"] == 1
    res["ok"] = bool(res["nonstream_ok"] and res["slow_ok"] and res["stream_ok"] and res["forwarded"])
    if not res["ok"]:
        if st != 200:
            res["nonstream_body"] = body[:500].decode("utf-8", "replace")
        if st2 != 200:
            res["slow_body"] = body2[:500].decode("utf-8", "replace")
    return res


# --------------------------------------------------------------------------
# figures


def rotated(targets: list[Target], r: int) -> list[Target]:
    """Round r's order: each target follows each other one in turn, so none is always measured
    just after the same neighbour."""
    k = r % len(targets) if targets else 0
    return targets[k:] + targets[:k]


def wait_quiet(targets: list[Target], window: float = 0.1, bound: float = 3.0) -> float:
    """Waits until no target's process tree has used CPU for `window` seconds (at most `bound`),
    so a sample never overlaps the tail of the previous one's work: LiteLLM keeps running for
    tens of milliseconds after its load ends, on the core every proxy shares. Returns the wait."""
    pids = [t.proc.pid for t in targets if t.proc is not None and t.proc.poll() is None]
    started = time.monotonic()
    last = sum(cpu_ticks(p) for p in pids)
    while time.monotonic() - started < bound:
        time.sleep(window)
        now = sum(cpu_ticks(p) for p in pids)
        if now == last:
            break
        last = now
    return time.monotonic() - started


def fig_latency(targets: list[Target], rounds: int, n: int, slow: bool) -> dict:
    per: dict[str, list[dict]] = {t.name: [] for t in targets}
    for r in range(rounds):
        for t in rotated(targets, r):
            wait_quiet(targets)
            try:
                res = oha(t.url(slow), t.body(slow), n=n, c=1, timeout_s=max(60, n * 0.2))
            except Exception as e:  # noqa: BLE001
                res = {"error": str(e)}
            per[t.name].append(res)
        log(f"latency{' (20 ms upstream)' if slow else ''} round {r + 1}/{rounds}: " + ", ".join(
            f"{t.name} p50 {fmt(per[t.name][-1].get('p50_ms'), 3)} p99 {fmt(per[t.name][-1].get('p99_ms'), 3)}"
            for t in targets))
    out = {}
    for name, rs in per.items():
        good = [x for x in rs if "error" not in x]
        out[name] = {
            "p50_ms": median([x["p50_ms"] for x in good]),
            "p99_ms": median([x["p99_ms"] for x in good]),
            "errors": sum(x["errors"] for x in good) + (len(rs) - len(good)) * n,
            "rounds": rs,
        }
    base = out.get("direct", {})
    for name, v in out.items():
        if base.get("p50_ms") is not None and v["p50_ms"] is not None:
            v["added_p50_ms"] = v["p50_ms"] - base["p50_ms"]
            v["added_p99_ms"] = v["p99_ms"] - base["p99_ms"]
    return out


def rate_search(args, start: int):
    """Generator: yields the next rate to try, is sent True/False, returns (max passing, first failing)."""
    lo, hi = 0, None
    rate = start
    budget = args.max_steps
    while budget > 0 and rate <= args.max_rate:
        budget -= 1
        if (yield rate):
            lo = rate
            rate *= 2
        else:
            hi = rate
            break
    if hi is None and lo > 0:
        hi = min(rate, args.max_rate + 1)
    if hi is None:
        hi = start
    while budget > 0 and hi - lo > max(args.min_rate, lo * args.rate_precision):
        budget -= 1
        mid = (lo + hi) // 2
        if mid < args.min_rate:
            break
        if (yield mid):
            lo = mid
        else:
            hi = mid
    return lo, hi


def fig_maxrate(targets: list[Target], args, c1_p50: dict) -> dict:
    """Open-loop rate search for every target, in lockstep (one step per target per pass), so that a
    burst of outside noise hits every target alike rather than one target's whole search."""
    dur = args.step_seconds
    out: dict[str, dict] = {}
    steps: dict[str, list] = {t.name: [] for t in targets}
    gens, pending = {}, {}
    for t in targets:
        p50 = c1_p50.get(t.name)
        if p50 is not None and p50 >= P99_LIMIT_MS:
            log(f"max-rate {t.name}: skipped, its p50 at concurrency 1 ({p50:.2f} ms) is already over "
                f"{P99_LIMIT_MS:g} ms")
            out[t.name] = {"max_rate": 0, "first_failing_rate": None, "capped": False, "steps": [],
                           "skipped": f"p50 at concurrency 1 is {p50:.2f} ms >= {P99_LIMIT_MS:g} ms"}
            continue
        start = args.start_rate
        if p50 is not None and p50 > 1.0:
            start = int(max(args.min_rate, min(args.start_rate, 100.0 / p50)))
        gens[t.name] = rate_search(args, start)
        pending[t.name] = next(gens[t.name])

    def attempt(t: Target, rate: int) -> bool:
        try:
            res = oha(t.url(), t.body(), duration=dur, c=args.rate_connections, rate=rate,
                      latency_correction=True, timeout_s=dur + 60)
        except Exception as e:  # noqa: BLE001
            res = {"error": str(e), "errors": -1, "p99_ms": None, "requests": 0}
        expected = rate * dur
        ok = ("error" not in res and res["errors"] == 0 and res["p99_ms"] is not None
              and res["p99_ms"] < P99_LIMIT_MS and res["requests"] >= 0.9 * expected)
        steps[t.name].append({"rate": rate, "pass": ok, **{k: res.get(k) for k in (
            "requests", "errors", "p50_ms", "p99_ms", "max_ms", "rps", "error_kinds", "error")}})
        log(f"max-rate {t.name}: {rate}/s -> {'pass' if ok else 'FAIL'} "
            f"(p99 {fmt(res.get('p99_ms'), 2)} ms, errors {res.get('errors')}, n {res.get('requests')})")
        time.sleep(args.cooldown)
        return ok

    samplers = {t.name: RssSampler(t.proc.pid, 0.5) for t in targets if t.proc is not None}
    for sm in samplers.values():
        sm.__enter__()
    try:
        by_name = {t.name: t for t in targets}
        for _ in range(args.max_steps + 1):  # bounded: each search takes at most max_steps steps
            if not pending:
                break
            for name in list(pending):
                t = by_name[name]
                ok = attempt(t, pending[name])
                if not ok and steps[name][-1].get("errors") == 0 and args.retry_failed_steps:
                    ok = attempt(t, pending[name])  # one retry: a latency-only failure may be a noise spike
                try:
                    pending[name] = gens[name].send(ok)
                except StopIteration as e:
                    lo, hi = e.value
                    out[name] = {"max_rate": lo, "first_failing_rate": hi if hi and hi <= args.max_rate else None,
                                 "capped": lo >= args.max_rate}
                    del pending[name]
                    log(f"max rate {name}: {lo}/s")
    finally:
        for sm in samplers.values():
            sm.__exit__()
    for t in targets:
        o = out.setdefault(t.name, {"max_rate": 0, "first_failing_rate": None, "capped": False})
        o.update({"step_seconds": dur, "connections": args.rate_connections, "steps": steps[t.name],
                  "peak_rss_kb": samplers[t.name].peak_kb if t.name in samplers and steps[t.name] else None})
    return out


def is_buffered(s: dict, args) -> bool:
    """A stream arrived buffered when its first chunk came after half of the upstream's stream had been
    sent, or when most chunks arrived bunched (median gap under a quarter of the interval)."""
    if args.chunk_interval_ms <= 0 or s["chunks"] < 3:
        return False
    span = (args.chunks - 1) * args.chunk_interval_ms
    return s["ttfc_ms"] > span / 2 or statistics.median(s["gaps_ms"]) < args.chunk_interval_ms / 4


def fig_stream(targets: list[Target], rounds: int, per_round: int, args) -> dict:
    per: dict[str, list[dict]] = {t.name: [] for t in targets}
    clients = {t.name: SseClient("127.0.0.1", t.port) for t in targets}
    try:
        for t in targets:  # warm-up
            for _ in range(2):
                try:
                    clients[t.name].request("/v1/chat/completions", t.body(stream=True))
                except Exception:  # noqa: BLE001
                    clients[t.name].close()
        for r in range(rounds):
            for t in rotated(targets, r):
                wait_quiet(targets)
                ttfc, gaps, chunks, errors, buffered = [], [], [], 0, 0
                for _ in range(per_round):
                    try:
                        s = clients[t.name].request("/v1/chat/completions", t.body(stream=True))
                    except Exception:  # noqa: BLE001
                        clients[t.name].close()
                        errors += 1
                        continue
                    if s["status"] != 200 or s["ttfc_ms"] is None or not s["done"]:
                        errors += 1
                        continue
                    ttfc.append(s["ttfc_ms"])
                    gaps.extend(s["gaps_ms"])
                    chunks.append(s["chunks"])
                    if is_buffered(s, args):
                        buffered += 1
                per[t.name].append({
                    "ttfc_p50_ms": median(ttfc), "gap_p50_ms": median(gaps),
                    "gap_p99_ms": pct(gaps, 0.99) if gaps else None, "gap_max_ms": max(gaps) if gaps else None,
                    "chunks": median(chunks), "errors": errors, "buffered_streams": buffered,
                })
            log(f"stream round {r + 1}/{rounds}: " + ", ".join(
                f"{t.name} ttfc {fmt(per[t.name][-1]['ttfc_p50_ms'], 2)} gap {fmt(per[t.name][-1]['gap_p50_ms'], 2)}"
                for t in targets))
    finally:
        for c in clients.values():
            c.close()
    out = {}
    for name, rs in per.items():
        out[name] = {
            "ttfc_ms": median([x["ttfc_p50_ms"] for x in rs]),
            "gap_p50_ms": median([x["gap_p50_ms"] for x in rs]),
            "gap_p99_ms": median([x["gap_p99_ms"] for x in rs]),
            "gap_max_ms": max([x["gap_max_ms"] for x in rs if x["gap_max_ms"] is not None], default=None),
            "chunks": median([x["chunks"] for x in rs]),
            "errors": sum(x["errors"] for x in rs),
            "buffered_streams": sum(x["buffered_streams"] for x in rs),
            "rounds": rs,
        }
    base = out.get("direct", {})
    for name, v in out.items():
        if base.get("ttfc_ms") is not None and v["ttfc_ms"] is not None:
            v["added_ttfc_ms"] = v["ttfc_ms"] - base["ttfc_ms"]
        if base.get("gap_p50_ms") is not None and v["gap_p50_ms"] is not None:
            v["added_gap_p50_ms"] = v["gap_p50_ms"] - base["gap_p50_ms"]
        if base.get("gap_p99_ms") is not None and v["gap_p99_ms"] is not None:
            v["added_gap_p99_ms"] = v["gap_p99_ms"] - base["gap_p99_ms"]
    return out


def cpu_times():
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return sum(parts[:8]), idle


def cpu_times_all() -> tuple[int, int]:
    """(total, idle) jiffies of all CPUs."""
    return cpu_times()


def own_cpu_s() -> float:
    """CPU seconds used by this driver and every child it has waited for (servers, oha)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def background_busy(seconds: float) -> float:
    """Percent of all CPUs busy over `seconds` while the harness runs nothing: other people's work."""
    t1, i1 = cpu_times()
    time.sleep(seconds)
    t2, i2 = cpu_times()
    return 100.0 * (1 - (i2 - i1) / max(1, t2 - t1))


def settle_rss(pid: int, seconds: float = 1.0) -> int | None:
    time.sleep(seconds)
    return tree_rss_kb(pid)


def cpu_ticks(pid: int) -> int:
    """utime + stime of a live process tree, in clock ticks."""
    total = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
            fields = st[st.rindex(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return total


def fig_cpu(targets: list[Target], mock_pid: int, args, c1_p50: dict) -> dict:
    """CPU time each proxy spends per request at a fixed open-loop rate (interleaved rounds). Unlike
    latency percentiles, a process's own CPU time hardly moves when other work shares the machine."""
    hz = os.sysconf("SC_CLK_TCK")
    per: dict[str, list] = {t.name: [] for t in targets}
    rates = {}
    for t in targets:
        p50 = c1_p50.get(t.name)
        rates[t.name] = args.cpu_rate_slow if (p50 is not None and p50 > 2.0) else args.cpu_rate
    for r in range(args.cpu_rounds):
        for t in targets:
            pid = t.proc.pid if t.proc is not None else mock_pid
            c0 = cpu_ticks(pid)
            try:
                res = oha(t.url(), t.body(), duration=args.cpu_seconds, c=args.rate_connections, rate=rates[t.name],
                          latency_correction=True, timeout_s=args.cpu_seconds + 120)
            except Exception as e:  # noqa: BLE001
                per[t.name].append({"error": str(e)})
                continue
            c1 = cpu_ticks(pid)
            n = max(1, res["ok"])
            per[t.name].append({"requests": res["requests"], "errors": res["errors"],
                                "cpu_s": (c1 - c0) / hz, "cpu_us_per_request": (c1 - c0) / hz / n * 1e6})
        log(f"cpu round {r + 1}/{args.cpu_rounds}: " + ", ".join(
            f"{n} {fmt(v[-1].get('cpu_us_per_request'), 1)} µs/req" for n, v in per.items() if v))
    out = {}
    for name, rs in per.items():
        out[name] = {"rate": rates[name], "seconds": args.cpu_seconds,
                     "what": "mock upstream" if name == "direct" else "proxy",
                     "cpu_us_per_request": median([x.get("cpu_us_per_request") for x in rs]),
                     "errors": sum(x.get("errors", 0) for x in rs), "rounds": rs}
    return out


def callgrind_summary(path: Path) -> int | None:
    """The instruction count of a callgrind dump."""
    for ln in path.read_text(errors="replace").splitlines():
        if ln.startswith("summary:"):
            return int(ln.split()[1])
    return None


def nginx_conf(d: Path, servers: list[tuple[int, int]], master: bool) -> Path:
    """A plain keepalive reverse proxy: one worker; each (listen port, upstream port) pair is a
    server with its own upstream pool."""
    user = "user root;\n" if os.geteuid() == 0 else ""
    upstreams = "".join(f"    upstream mock_{i} {{ server 127.0.0.1:{up}; keepalive 128; keepalive_requests 1000000; }}\n"
                        for i, (_, up) in enumerate(servers))
    blocks = "".join(f"""    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://mock_{i};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
""" for i, (port, _) in enumerate(servers))
    conf = d / "nginx.conf"
    conf.write_text(f"""{user}worker_processes 1;
daemon off;
master_process {"on" if master else "off"};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
{upstreams}{blocks}}}
""")
    return conf


def fig_instructions(tmp: Path, args, fast_port: int, slow_port: int) -> dict:
    """User-space instructions each proxy executes per request, counted by callgrind over a fixed
    number of requests after a warm-up. The count does not depend on what else runs on the
    machine, so it shows the effect of a change even on a busy machine. Kernel work (the
    syscalls, roughly the same for every proxy here) is not counted."""
    out: dict = {}
    for name in [p for p in ("nginx", "modelgate") if p in args.proxies]:
        d = tmp / f"callgrind-{name}"
        d.mkdir()
        dump = d / "callgrind.out"
        port = free_port()
        env = dict(os.environ, BENCH_UPSTREAM_KEY="sk-bench-dummy", RUST_LOG="warn")
        if name == "nginx":
            os.chmod(d, 0o755)
            conf = nginx_conf(d, [(port, fast_port)], master=False)
            argv = [nginx_bin() or "nginx", "-p", str(d), "-c", str(conf), "-e", str(d / "error.log")]
            ready, model = f"http://127.0.0.1:{port}/v1/models", "bench-model"
        else:
            write_modelgate_config(d / "config", fast_port, slow_port)
            admin = free_port()
            argv = [modelgate_bin(args), "gateway", "--config", str(d / "config"),
                    "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}"]
            ready, model = f"http://127.0.0.1:{admin}/readyz", "bench-model"
        p = PROCS.start(f"callgrind-{name}", ["valgrind", "--tool=callgrind", "--dump-instr=no",
                                              f"--callgrind-out-file={dump}", *argv], PROXY_CPU, tmp, env=env)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        try:
            wait_http_ok(ready, 180, p, f"{name} under callgrind")
            oha(url, body_for(model), n=args.instr_warmup, c=4, timeout_s=300)
            run_cmd(["callgrind_control", "-z", str(p.pid)], timeout=60, check=True, capture_output=True)
            res = oha(url, body_for(model), n=args.instr_requests, c=4, timeout_s=600)
            run_cmd(["callgrind_control", "-d", str(p.pid)], timeout=60, check=True, capture_output=True)
            dumps = sorted(d.glob("callgrind.out.*"))
            total = callgrind_summary(dumps[-1]) if dumps else None
            ok = max(1, res["ok"])
            out[name] = {"requests": res["requests"], "errors": res["errors"], "instructions": total,
                         "per_request": None if total is None else round(total / ok)}
            log(f"instructions: {name} {fmt(out[name]['per_request'], 0)} per request")
        except (BenchError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            out[name] = {"error": str(e)}
        finally:
            PROCS.stop(p)
    return out


def fig_soak(t: Target, args) -> dict:
    pid = t.proc.pid
    rate = args.soak_rate
    stream_rate = args.soak_stream_rate
    out: dict = {"rate": rate, "stream_rate": stream_rate, "warmup_s": args.soak_warmup, "soak_s": args.soak_seconds}

    def load(seconds: float) -> dict:
        res: dict = {}

        def streams():
            try:
                res["stream"] = oha(t.url(), t.body(stream=True), duration=seconds, c=16, rate=stream_rate,
                                    timeout_s=seconds + 60)
            except Exception as e:  # noqa: BLE001
                res["stream"] = {"error": str(e)}

        th = threading.Thread(target=streams, daemon=True)
        th.start()
        try:
            res["plain"] = oha(t.url(), t.body(), duration=seconds, c=args.rate_connections, rate=rate,
                               latency_correction=True, timeout_s=seconds + 60)
        except Exception as e:  # noqa: BLE001
            res["plain"] = {"error": str(e)}
        th.join(timeout=seconds + 70)
        return res

    log(f"soak: warm-up {args.soak_warmup}s at {rate}/s (+{stream_rate}/s streams)")
    out["warmup"] = load(args.soak_warmup)
    out["rss_before_kb"] = settle_rss(pid)
    log(f"soak: {args.soak_seconds}s at {rate}/s (+{stream_rate}/s streams), RSS before {out['rss_before_kb']} kB")
    with RssSampler(pid, 0.5) as s:
        out["soak"] = load(args.soak_seconds)
    out["rss_after_kb"] = settle_rss(pid)
    out["rss_under_load_peak_kb"] = s.peak_kb
    out["rss_trace_kb"] = [v for _, v in s.samples[:: max(1, len(s.samples) // 60)]]
    if out["rss_before_kb"] is not None and out["rss_after_kb"] is not None:
        out["growth_kb"] = out["rss_after_kb"] - out["rss_before_kb"]
    log(f"soak: RSS after {out['rss_after_kb']} kB, peak under load {out['rss_under_load_peak_kb']} kB")
    return out


def fig_translation(pass_t: Target, tr: Target, args) -> dict:
    """CPU per streamed chunk on each path: burst streams (`--burst-chunks` events, no delay
    between them) at a fixed rate through the pass-through (OpenAI upstream) and the translated
    path (Anthropic upstream, Chat Completions out), interleaved rounds, the process's CPU time
    divided by the streams served; with the RSS peak of the process meanwhile (a stream is never
    buffered, so it stays flat)."""
    hz = os.sysconf("SC_CLK_TCK")
    pid = pass_t.proc.pid
    models = {pass_t.name: "bench-burst", tr.name: "bench-burst-anthropic"}
    out: dict = {"chunks": args.burst_chunks, "rate": args.burst_rate, "seconds": args.cpu_seconds}
    checks = {}
    for t in (pass_t, tr):  # each burst must arrive whole
        cl = SseClient("127.0.0.1", t.port)
        try:
            res = cl.request("/v1/chat/completions", body_for(models[t.name], stream=True))
            checks[t.name] = {"chunks": res["chunks"], "done": res["done"], "status": res["status"]}
        except Exception as e:  # noqa: BLE001
            checks[t.name] = {"error": str(e)}
        finally:
            cl.close()
    out["checks"] = checks
    per: dict[str, list] = {pass_t.name: [], tr.name: []}
    with RssSampler(pid, 0.1) as sampler:
        for r in range(args.cpu_rounds):
            for t in rotated([pass_t, tr], r):
                wait_quiet([pass_t])
                c0 = cpu_ticks(pid)
                try:
                    res = oha(t.url(), body_for(models[t.name], stream=True), duration=args.cpu_seconds, c=8,
                              rate=args.burst_rate, latency_correction=True, timeout_s=args.cpu_seconds + 120)
                except Exception as e:  # noqa: BLE001
                    per[t.name].append({"error": str(e)})
                    continue
                c1 = cpu_ticks(pid)
                per[t.name].append({"requests": res["requests"], "errors": res["errors"],
                                    "cpu_us_per_stream": (c1 - c0) / hz / max(1, res["ok"]) * 1e6})
            log(f"burst streams round {r + 1}/{args.cpu_rounds}: " + ", ".join(
                f"{n} {fmt(v[-1].get('cpu_us_per_stream'), 1)} µs/stream" for n, v in per.items() if v))
    out["peak_rss_kb"] = sampler.peak_kb
    for name, rs in per.items():
        out[name] = {"cpu_us_per_stream": median([x.get("cpu_us_per_stream") for x in rs if "error" not in x]),
                     "errors": sum(x.get("errors", 0) for x in rs), "rounds": rs}
    return out


def translation_summary(R: dict) -> dict:
    """The translated path beside the pass-through: both figures and their ratio or difference."""
    F = R["figures"]
    p, t = "modelgate", TRANSLATED

    def pair(fig, key):
        d = F.get(fig) or {}
        return (d.get(p) or {}).get(key), (d.get(t) or {}).get(key)

    out = {}
    for fig, label in (("latency", "0 ms upstream"), ("latency_slow", "20 ms upstream")):
        for key in ("added_p50_ms", "added_p99_ms"):
            out[f"{key} ({label})"] = pair(fig, key)
    out["cpu_us_per_request"] = pair("cpu", "cpu_us_per_request")
    for key in ("added_ttfc_ms", "added_gap_p50_ms", "added_gap_p99_ms", "buffered_streams", "errors"):
        out[key] = pair("stream", key)
    tr = F.get("translation") or {}
    streams = pair("translation", "cpu_us_per_stream")
    out["cpu_us_per_stream"] = streams
    n = tr.get("chunks")
    req = out["cpu_us_per_request"]
    if n and None not in streams and None not in req:
        # a burst stream's own cost beyond a plain request's, per event
        out["cpu_us_per_chunk"] = tuple((s - q) / n for s, q in zip(streams, req))
    return out


def fig_aliases(tmp: Path, args, fast_port: int, slow_port: int) -> dict:
    d = tmp / "modelgate-10k"
    write_modelgate_config(d, fast_port, slow_port, aliases=args.aliases)
    t, admin = start_modelgate("modelgate-10k", tmp, args, d)
    out: dict = {"aliases": args.aliases}
    try:
        out["ready_s"] = wait_http_ok(f"http://127.0.0.1:{admin}/readyz", 120, t.proc, "modelgate (10k aliases)")
        out["rss_idle_kb"] = settle_rss(t.proc.pid)
        last = f"alias-{args.aliases:05d}"
        st, body = http("POST", t.url(), body_for(last), timeout=15)
        out["last_alias_status"] = st
        if st != 200:
            out["last_alias_body"] = body[:300].decode("utf-8", "replace")
        res = oha(t.url(), body_for(last), n=args.alias_requests, c=4, timeout_s=120)
        out["requests"] = {k: res[k] for k in ("requests", "errors", "p50_ms", "p99_ms")}
        out["rss_after_requests_kb"] = settle_rss(t.proc.pid, 0.5)
        out["hwm_kb"] = status_field(t.proc.pid, "VmHWM")
    except Exception as e:  # noqa: BLE001
        out["error"] = str(e)
    finally:
        PROCS.stop(t.proc)
    return out


# --------------------------------------------------------------------------
# report


def fmt(v, nd=2):
    if v is None:
        return "–"
    if isinstance(v, float) and v != v:
        return "–"
    if isinstance(v, (int,)) and not isinstance(v, bool):
        return f"{v:,}"
    return f"{v:.{nd}f}"


def ratio(a, b, nd=2):
    if a is None or b is None:
        return "–"
    if b <= 0:
        return "n/a (nginx ≤ 0)"
    return f"{a / b:.{nd}f}×"


def mb(kb):
    return None if kb is None else kb / 1024.0


def render_md(R: dict) -> str:
    names = [n for n in TARGET_ORDER if n in R["targets"]]
    proxies = [n for n in names if n not in ("direct", "nginx")]
    L = []
    L.append(f"# modelgate benchmark — {R['finished_at']}{' (QUICK smoke run)' if R['quick'] else ''}")
    L.append("")
    L.append(f"Command: `{R['command']}` · total {R['duration_s'] / 60:.1f} min · machine: {R['env']['nproc']} cores "
             f"({R['env']['cpu_model']}). Other work on the machine (not this run's processes) kept "
             f"{R['env']['background_cpu_busy_pct']:.0f}% of the CPUs busy just before the run and "
             f"{R['env'].get('other_cpu_busy_pct_during_run', float('nan')):.0f}% during it "
             f"(load average {R['env']['loadavg_start']} at the start, {R['env']['loadavg_end']} at the end).")
    L.append("")
    if R["env"].get("noisy"):
        L.append("**Noisy run:** other work shared this 2-core machine during the run (more than 10% of the "
                 "CPUs), so absolute numbers, and to a lesser degree ratios, are unreliable. The max-rate figure is "
                 "the most fragile: a 5 ms p99 limit is about one scheduler time slice of another process on the "
                 "proxy's core. CPU per request is the least sensitive to such noise.")
        L.append("")
    L.append("Proxies pinned to core 0, mock upstream and load generators to core 1"
             + (f", every process at nice {R['config']['nice']}" if R['config'].get('nice') else "")
             + ". Added = proxy − direct, measured in the same run; ratios are against nginx (the floor).")
    L.append("")
    head = "| figure | " + " | ".join(LABEL[n] for n in names) + " | " + \
           " | ".join(f"{LABEL[p]} ÷ nginx" for p in proxies) + " | target (modelgate) |"
    L.append(head)
    L.append("|" + "---|" * (2 + len(names) + len(proxies)))

    def row(label, vals: dict, nd=3, ratios=True, target=""):
        cells = [fmt(vals.get(n), nd) if not isinstance(vals.get(n), str) else vals.get(n) for n in names]
        rcells = []
        for p in proxies:
            if ratios and "nginx" in vals and isinstance(vals.get(p), (int, float)) and \
                    isinstance(vals.get("nginx"), (int, float)):
                rcells.append(ratio(vals.get(p), vals.get("nginx")))
            else:
                rcells.append("")
        L.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(rcells) + f" | {target} |")

    F = R["figures"]
    for key, title in (("latency", "0 ms upstream"), ("latency_slow", "20 ms upstream")):
        lat = F.get(key)
        if not lat:
            continue
        row(f"c=1 p50 latency, ms ({title})", {n: lat[n]["p50_ms"] for n in lat}, ratios=False)
        row(f"c=1 p99 latency, ms ({title})", {n: lat[n]["p99_ms"] for n in lat}, ratios=False)
        tgt50 = "≤ 1.2× nginx" if key == "latency" else ""
        tgt99 = "≤ 1.5× nginx" if key == "latency" else ""
        row(f"**added p50, ms** ({title})", {n: lat[n].get("added_p50_ms") for n in lat if n != "direct"},
            target=tgt50)
        row(f"**added p99, ms** ({title})", {n: lat[n].get("added_p99_ms") for n in lat if n != "direct"},
            target=tgt99)
    mr = F.get("maxrate")
    if mr:
        vals = {}
        for n, v in mr.items():
            s = f"{v['max_rate']:,}"
            if v.get("skipped"):
                s = "0 (c=1 p50 ≥ 5 ms)"
            if v.get("capped"):
                s = f"≥ {s}"
            vals[n] = s
        L.append(f"| **max rate, req/s** (p99 < {P99_LIMIT_MS:g} ms, 0 errors, open loop) | "
                 + " | ".join(vals.get(n, "–") for n in names) + " | "
                 + " | ".join(ratio(mr[p]["max_rate"], mr["nginx"]["max_rate"]) if p in mr and "nginx" in mr else "–"
                              for p in proxies) + " | ≥ 0.8× nginx |")
    cpu = F.get("cpu")
    if cpu:
        rates = sorted({v["rate"] for v in cpu.values()})
        row("**CPU per request, µs** (the proxy process; direct: the mock) at "
            + " / ".join(f"{r:,}" for r in rates) + " req/s",
            {n: v["cpu_us_per_request"] for n, v in cpu.items()}, nd=1,
            target="≤ 1.25× nginx (≈ max rate ≥ 0.8×)")
        if len(rates) > 1:
            L.append(f"| (LiteLLM measured at {rates[0]} req/s: it cannot sustain {rates[-1]:,} req/s on one core) |"
                     + " |" * (len(names) + len(proxies) + 1))
    ins = F.get("instructions")
    if ins:
        row("**user-space instructions per request** (callgrind, "
            f"{R['config'].get('instr_requests', 0):,} requests at c=4; kernel work not counted)",
            {n: v.get("per_request") for n, v in ins.items()}, nd=0,
            target="(deterministic: unaffected by other work)")
    st = F.get("stream")
    if st:
        row("stream time to first chunk, ms", {n: st[n]["ttfc_ms"] for n in st}, ratios=False)
        row("**added time to first chunk, ms**", {n: st[n].get("added_ttfc_ms") for n in st if n != "direct"},
            target="≤ 1 ms")
        row(f"inter-chunk gap p50, ms (mock sends every {R['config']['chunk_interval_ms']} ms)",
            {n: st[n]["gap_p50_ms"] for n in st}, ratios=False)
        row("added inter-chunk gap p50 / p99, ms",
            {n: f"{fmt(st[n].get('added_gap_p50_ms'), 3)} / {fmt(st[n].get('added_gap_p99_ms'), 3)}"
             for n in st if n != "direct"}, ratios=False)
        row("streams that arrived buffered / with errors",
            {n: f"{st[n]['buffered_streams']} / {st[n]['errors']}" for n in st}, ratios=False, target="0 buffered")
    uc = R.get("upstream_connections") or {}
    if uc:
        n = next(iter(uc.values()))["requests"]
        row(f"upstream connections opened for {n:,} requests on 4 client connections",
            {k: str(v["upstream_connections_opened"]) for k, v in uc.items()}, ratios=False)
    mem = F.get("memory", {})
    if mem:
        idle = {n: mb(v) for n, v in mem.get("idle_rss_kb", {}).items()}
        row("RSS idle, MB", idle, nd=1, target="≤ 20 MB")
        load = {n: mb(v) for n, v in mem.get("peak_rss_under_load_kb", {}).items()}
        row("RSS peak under load (max-rate search), MB", load, nd=1)
        soak = mem.get("soak") or {}
        if soak:
            row(f"modelgate RSS peak during soak ({soak['rate']}/s + {soak['stream_rate']}/s streams), MB",
                {"modelgate": mb(soak.get("rss_under_load_peak_kb"))}, nd=1, ratios=False)
            g = soak.get("growth_kb")
            row(f"modelgate RSS growth over {soak['soak_s']:g} s soak, MB",
                {"modelgate": None if g is None else g / 1024.0}, nd=2, ratios=False, target="≤ 1 MB")
        al = mem.get("aliases") or {}
        if al:
            row(f"modelgate RSS with {al['aliases']:,} aliases, MB", {"modelgate": mb(al.get("rss_idle_kb"))},
                nd=1, ratios=False, target="≤ 100 MB")
            row(f"modelgate ready with {al['aliases']:,} aliases, s", {"modelgate": al.get("ready_s")},
                nd=2, ratios=False)
    L.append("")
    if TRANSLATED in R["targets"]:
        L.extend(render_translation(R))
    # verdicts
    V = R.get("verdicts") or {}
    if V:
        L.append("Targets (modelgate): " + "; ".join(f"{k}: {'met' if v is True else ('NOT met' if v is False else 'n/a')}"
                                                   for k, v in V.items()) + ".")
        L.append("")
    if R.get("problems"):
        L.append("Problems seen in this run:")
        L.append("")
        for p in R["problems"]:
            L.append(f"- {p}")
        L.append("")
    if R["figures"].get("resilience"):
        import resilience  # noqa: PLC0415
        L.append("**Figure 5: resilient routing** (bench/resilience.py)")
        L.append("")
        L.append(resilience.render(R["figures"]["resilience"]))
    L.append(f"Versions: nginx {R['env'].get('nginx') or '–'}; LiteLLM {R['env'].get('litellm') or '–'} (one worker); "
             f"oha {R['env'].get('oha') or '–'}; " + (
                 f"modelgate binary {R['env']['modelgate_bin']} (given)." if R['env'].get('modelgate_bin') else
                 f"modelgate built from commit {R['env'].get('modelgate_commit') or '–'}"
                 f"{' with uncommitted changes' if R['env'].get('modelgate_tree_dirty') else ''}."))
    L.append("")
    return "\n".join(L)


def render_translation(R: dict) -> list[str]:
    """The translated path's table: Chat Completions in, Anthropic Messages out, beside the
    pass-through, in the same modelgate process and the same run."""
    S = translation_summary(R)
    tr = R["figures"].get("translation") or {}
    L = ["Translated path (Chat Completions in, Anthropic Messages out, through an `anthropic` provider on the "
         "same mock), beside the pass-through (OpenAI in and out), in the same modelgate process and run:", "",
         "| figure | pass-through | translated | translated ÷ pass-through | target (translated) |",
         "|---|---|---|---|---|"]

    def line(label, key, nd=3, target="", diff=False):
        a, b = S.get(key, (None, None))
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            if diff:
                rel = f"{b - a:+.{nd}f}"
            else:
                rel = ratio(b, a) if a > 0 else "n/a (pass-through ≤ 0)"
        else:
            rel = "–"
        L.append(f"| {label} | {fmt(a, nd)} | {fmt(b, nd)} | {rel} | {target} |")

    line("**added p50, ms** (0 ms upstream)", "added_p50_ms (0 ms upstream)", target="≤ 1.3× pass-through")
    line("added p99, ms (0 ms upstream)", "added_p99_ms (0 ms upstream)")
    line("added p50, ms (20 ms upstream)", "added_p50_ms (20 ms upstream)")
    line("**CPU per request, µs**", "cpu_us_per_request", nd=1)
    line("added time to first chunk, ms", "added_ttfc_ms", target="≤ 1 ms")
    line("added inter-chunk gap p50, ms", "added_gap_p50_ms", diff=True)
    line("added inter-chunk gap p99, ms", "added_gap_p99_ms", diff=True)
    line("streams buffered", "buffered_streams", nd=0, diff=True, target="0")
    if tr:
        line(f"CPU per burst stream ({tr.get('chunks')} events, no delay, {tr.get('rate')}/s), µs",
             "cpu_us_per_stream", nd=1)
        line("**CPU per streamed chunk, µs** ((burst stream − plain request) ÷ events)", "cpu_us_per_chunk",
             nd=2, diff=True, target="≤ 5 µs added")
        L.append(f"| RSS peak of the process during the burst streams, MB | {fmt(mb(tr.get('peak_rss_kb')), 1)} "
                 "(both paths) | | | O(chunk): no growth |")
    L.append("")
    return L


README_START = "<!-- bench:latest:start -->"
README_END = "<!-- bench:latest:end -->"


def update_readme(path: Path, md: str) -> None:
    """Put the latest full run's table between the markers of bench/README.md."""
    try:
        text = path.read_text()
    except OSError:
        return
    if README_START not in text or README_END not in text:
        return
    body = md.split("\n", 1)[1].strip()  # drop the title line
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    path.write_text(f"{head}{README_START}\n{body}\n{README_END}{tail}")


def verdicts(R: dict) -> dict:
    F = R["figures"]
    v = {}

    def get(*path):
        d = F
        for p in path:
            if not isinstance(d, dict) or p not in d:
                return None
            d = d[p]
        return d

    a50, n50 = get("latency", "modelgate", "added_p50_ms"), get("latency", "nginx", "added_p50_ms")
    a99, n99 = get("latency", "modelgate", "added_p99_ms"), get("latency", "nginx", "added_p99_ms")
    if a50 is not None and n50 is not None:
        v["added p50 ≤ 1.2× nginx"] = a50 <= 1.2 * max(n50, 0) if n50 > 0 else a50 <= 0.05
    if a99 is not None and n99 is not None:
        v["added p99 ≤ 1.5× nginx"] = a99 <= 1.5 * max(n99, 0) if n99 > 0 else a99 <= 0.05
    m, n = get("maxrate", "modelgate", "max_rate"), get("maxrate", "nginx", "max_rate")
    if m is not None and n:
        v["max rate ≥ 0.8× nginx"] = m >= 0.8 * n
    c, n = get("cpu", "modelgate", "cpu_us_per_request"), get("cpu", "nginx", "cpu_us_per_request")
    if c is not None and n:
        v["CPU per request ≤ 1.25× nginx"] = c <= 1.25 * n
    t = get("stream", "modelgate", "added_ttfc_ms")
    if t is not None:
        v["added TTFC ≤ 1 ms"] = t <= 1.0
    b = get("stream", "modelgate", "buffered_streams")
    if b is not None:
        v["no buffering"] = b == 0
    i = get("memory", "idle_rss_kb", "modelgate")
    if i is not None:
        v["RSS idle ≤ 20 MB"] = i <= 20 * 1024
    a = get("memory", "aliases", "rss_idle_kb")
    if a is not None:
        v["RSS with 10k aliases ≤ 100 MB"] = a <= 100 * 1024
    g = get("memory", "soak", "growth_kb")
    if g is not None:
        v["soak growth ≤ 1 MB"] = g <= 1024
    if TRANSLATED in R["targets"]:
        S = translation_summary(R)
        a, b = S.get("added_p50_ms (0 ms upstream)", (None, None))
        if a is not None and b is not None:
            v["translated added p50 ≤ 1.3× pass-through"] = b <= 1.3 * a if a > 0 else b <= 0.05
        c = S.get("cpu_us_per_chunk")
        if c is not None:
            v["translation ≤ 5 µs per streamed chunk"] = c[1] - c[0] <= 5.0
        b = S.get("buffered_streams", (None, None))[1]
        if b is not None:
            v["translated streams not buffered"] = b == 0
    return v


# --------------------------------------------------------------------------
# main


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="modelgate benchmark harness (see bench/README.md)")
    ap.add_argument("--quick", action="store_true", help="short smoke run (results are not comparable)")
    ap.add_argument("--proxies", default="nginx,litellm,modelgate",
                    help="comma list of proxies besides direct (default: nginx,litellm,modelgate)")
    ap.add_argument("--no-install", action="store_true", help="do not install missing tools")
    ap.add_argument("--modelgate-bin", default=None, help="use this modelgate binary instead of building it")
    ap.add_argument("--out", default=None, help="results basename (default bench/results/latest or quick-latest)")
    ap.add_argument("--skip", default="",
                    help="comma list of figures to skip: latency,slow,stream,cpu,translation,instructions,maxrate,"
                         "soak,aliases,resilience")
    ap.add_argument("--nice", type=int, default=0,
                    help="run every benchmark process at this nice level (e.g. -10 on a shared machine; needs root "
                         "for < 0); the same for all targets, recorded in the results")
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--chunk-interval-ms", type=int, default=10)
    ap.add_argument("--burst-chunks", type=int, default=200,
                    help="events of a burst stream (no delay) for CPU per streamed chunk")
    a = ap.parse_args(argv)
    a.proxies = [p.strip() for p in a.proxies.split(",") if p.strip()]
    for p in a.proxies:
        if p not in ("nginx", "litellm", "modelgate"):
            ap.error(f"unknown proxy {p}")
    a.skip = {s.strip() for s in a.skip.split(",") if s.strip()}
    q = a.quick
    a.lat_rounds, a.lat_n = (2, 100) if q else (7, 1000)
    a.slow_rounds, a.slow_n = (1, 20) if q else (3, 150)
    a.stream_rounds, a.stream_per_round = (2, 3) if q else (5, 10)
    a.step_seconds = 1.5 if q else 5.0
    a.cooldown = 0.3 if q else 1.0
    a.start_rate = 500
    a.min_rate = 10
    a.max_rate = 64000
    a.max_steps = 8 if q else 14
    a.rate_precision = 0.10 if q else 0.05
    a.rate_connections = 32
    a.retry_failed_steps = True
    a.soak_rate = 1000
    a.soak_stream_rate = 20
    a.soak_warmup = 3.0 if q else 15.0
    a.soak_seconds = 5.0 if q else 60.0
    a.aliases = 10000
    a.alias_requests = 200 if q else 1000
    a.cpu_rate, a.cpu_rate_slow = 1000, 50
    a.cpu_seconds = 2.0 if q else 5.0
    a.cpu_rounds = 1 if q else 3
    a.instr_warmup = 100 if q else 300
    a.instr_requests = 300 if q else 2000
    a.burst_rate = 50
    return a


def main(argv=None) -> int:
    global STREAM_CHUNKS
    args = parse_args(argv)
    STREAM_CHUNKS = args.chunks
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    atexit.register(PROCS.stop_all)
    try:
        os.sched_setaffinity(0, {int(LOAD_CPU)})  # the driver's own client work runs beside the load generator
    except (AttributeError, OSError):
        pass
    t_start = time.time()
    R: dict = {
        "quick": args.quick,
        "command": "bash bench/run.sh" + (" " + " ".join(sys.argv[1:]) if len(sys.argv) > 1 else ""),
        "started_at": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "config": {k: v for k, v in vars(args).items() if k not in ("skip",)} | {"skip": sorted(args.skip)},
        "env": {},
        "targets": {},
        "checks": {},
        "figures": {},
        "problems": [],
    }
    env = R["env"]
    env["nproc"] = os.cpu_count()
    env["cpu_model"] = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                             if ln.startswith("model name")), platform.machine())
    env["kernel"] = platform.release()
    try:
        env.update(ensure_tools(args))
    except (BenchError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        log(f"ERROR while installing or building: {e}")
        return 2
    if args.nice:  # after the builds: every process started from here on inherits it
        try:
            os.nice(args.nice)
        except OSError as e:
            log(f"cannot change the nice level: {e}")
    env["loadavg_start"] = " ".join(open("/proc/loadavg").read().split()[:3])
    env["background_cpu_busy_pct"] = background_busy(3.0)
    log(f"before the run: load average {env['loadavg_start']}, other work kept "
        f"{env['background_cpu_busy_pct']:.0f}% of the CPUs busy")

    cpu0, own0 = cpu_times_all(), own_cpu_s()
    tmp = Path(tempfile.mkdtemp(prefix="modelgate-bench-"))
    env["tmpdir"] = str(tmp)
    log(f"work dir {tmp}")
    targets: list[Target] = []
    exit_code = 0
    try:
        mock_fast, fast_port = start_mock("mock-fast", tmp, args, 0)
        mock_slow, slow_port = start_mock("mock-slow", tmp, args, 20)
        mock_ports = {"fast": fast_port, "slow": slow_port}
        targets.append(Target("direct", fast_port, slow_port, "bench-model", "bench-model-slow", None))

        lite = None
        if "litellm" in args.proxies:  # slowest to start: start first, wait last
            lite, _ = start_litellm(tmp, fast_port, slow_port)
        if "nginx" in args.proxies:
            targets.append(start_nginx(tmp, fast_port, slow_port))
        mg_admin = None
        mg_translated = None
        if "modelgate" in args.proxies:
            d = tmp / "modelgate"
            write_modelgate_config(d, fast_port, slow_port)
            mg, mg_admin = start_modelgate("modelgate", tmp, args, d)
            try:
                R["figures"].setdefault("memory", {})["modelgate_ready_s"] = wait_http_ok(
                    f"http://127.0.0.1:{mg_admin}/readyz", 60, mg.proc, "modelgate")
                targets.append(mg)
                mg_translated = Target(TRANSLATED, mg.port, mg.port, TRANSLATED_MODEL, TRANSLATED_MODEL + "-slow",
                                       mg.proc)
            except BenchError as e:
                R["problems"].append(f"modelgate: {e} (log: {tmp}/modelgate.log)")
                PROCS.stop(mg.proc)
        if lite is not None:
            try:
                wait_http_ok(f"http://127.0.0.1:{lite.port}/health/liveliness", 180, lite.proc, "litellm")
                targets.append(lite)
            except BenchError as e:
                R["problems"].append(f"litellm: {e}")
                PROCS.stop(lite.proc)
        targets.sort(key=lambda t: TARGET_ORDER.index(t.name))
        time.sleep(1.0)
        idle = {}
        for t in targets:
            if t.proc is not None:
                idle[t.name] = tree_rss_kb(t.proc.pid)
        R["figures"].setdefault("memory", {})["idle_rss_kb"] = idle
        log("idle RSS (kB): " + ", ".join(f"{k} {v}" for k, v in idle.items()))

        # correctness: every target must really forward the same request
        good = []
        for t in targets:
            c = check_target(t, args, mock_ports)
            R["checks"][t.name] = c
            if c["ok"]:
                good.append(t)
            else:
                R["problems"].append(f"{t.name}: correctness check failed: {json.dumps(c)[:800]}")
                log(f"{t.name}: check FAILED {c}")
        targets = good
        # The translated path is measured beside the others (latency, streams, CPU) but it is the
        # modelgate process again: no separate memory, max-rate, instruction or soak figures.
        translated: list[Target] = []
        if mg_translated is not None and any(t.name == "modelgate" for t in targets):
            c = check_target(mg_translated, args, mock_ports)
            R["checks"][TRANSLATED] = c
            if c["ok"]:
                translated.append(mg_translated)
            else:
                R["problems"].append(f"{TRANSLATED}: correctness check failed: {json.dumps(c)[:800]}")
                log(f"{TRANSLATED}: check FAILED {c}")
        for t in targets + translated:
            R["targets"][t.name] = {"port": t.port, "pid": t.proc.pid if t.proc else None}
        if "direct" not in R["targets"]:
            raise BenchError("the mock upstream itself failed its check")

        # warm-up; also tells whether each proxy reuses its upstream connections
        warm_n = 200 if args.quick else 2000
        R["upstream_connections"] = {}
        for t in targets + translated:
            try:
                before = mock_stats(fast_port)
                w = oha(t.url(), t.body(), n=warm_n, c=4, timeout_s=120)
                after = mock_stats(fast_port)
                R["upstream_connections"][t.name] = {
                    "requests": warm_n, "client_connections": 4, "errors": w["errors"],
                    "upstream_completions": after["completions"] - before["completions"],
                    "upstream_connections_opened": after["connections"] - before["connections"]}
                oha(t.url(slow=True), t.body(slow=True), n=20, c=4, timeout_s=60)
            except Exception as e:  # noqa: BLE001
                R["problems"].append(f"{t.name}: warm-up failed: {e}")
        log("warm-up, upstream connections opened for " + f"{warm_n} requests on 4 client connections: " +
            ", ".join(f"{k} {v['upstream_connections_opened']}" for k, v in R["upstream_connections"].items()))

        if "latency" not in args.skip:
            log("figure 1: added latency at concurrency 1 (0 ms upstream)")
            R["figures"]["latency"] = fig_latency(targets + translated, args.lat_rounds, args.lat_n, slow=False)
        if "slow" not in args.skip:
            log("figure 1b: added latency at concurrency 1 (20 ms upstream)")
            R["figures"]["latency_slow"] = fig_latency(targets + translated, args.slow_rounds, args.slow_n,
                                                       slow=True)
        if "stream" not in args.skip:
            log("figure 3: streaming")
            R["figures"]["stream"] = fig_stream(targets + translated, args.stream_rounds, args.stream_per_round,
                                                args)
        if "cpu" not in args.skip:
            log("figure 2b: CPU time per request at a fixed rate")
            c1 = {n: v.get("p50_ms") for n, v in (R["figures"].get("latency") or {}).items()}
            R["figures"]["cpu"] = fig_cpu(targets + translated, mock_fast.pid, args, c1)
            if translated and "translation" not in args.skip:
                log("figure 2d: CPU per streamed chunk, pass-through and translated")
                mgt = next(t for t in targets if t.name == "modelgate")
                R["figures"]["translation"] = fig_translation(mgt, translated[0], args)
        if "instructions" not in args.skip:
            log("figure 2c: user-space instructions per request (callgrind)")
            R["figures"]["instructions"] = fig_instructions(tmp, args, fast_port, slow_port)
        if "resilience" not in args.skip and "modelgate" in args.proxies:
            log("figure 5: resilient routing: the happy path with every policy, and failover (bench/resilience.py)")
            import resilience  # noqa: PLC0415 (beside this file)
            try:
                R["figures"]["resilience"] = resilience.figure(tmp, fast_port, modelgate_bin(args),
                                                               args.instr_requests // 2, 3 if args.quick else 5)
            except Exception as e:  # noqa: BLE001 (resilience.py raises its own copy of BenchError)
                R["problems"].append(f"modelgate resilience figure: {e}")
        if "maxrate" not in args.skip:
            log("figure 2: max rate with p99 < 5 ms and no errors (open loop)")
            c1 = {n: v.get("p50_ms") for n, v in (R["figures"].get("latency") or {}).items()}
            mr = R["figures"]["maxrate"] = fig_maxrate(targets, args, c1)
            R["figures"].setdefault("memory", {})["peak_rss_under_load_kb"] = {
                n: v["peak_rss_kb"] for n, v in mr.items() if v.get("peak_rss_kb") is not None}
        mgt = next((t for t in targets if t.name == "modelgate"), None)
        if mgt is not None:
            mem = R["figures"].setdefault("memory", {})
            if "soak" not in args.skip:
                log("figure 4: modelgate soak")
                mem["soak"] = fig_soak(mgt, args)
            mem["hwm_kb"] = status_field(mgt.proc.pid, "VmHWM")
            if "aliases" not in args.skip:
                log(f"figure 4: modelgate with {args.aliases} aliases")
                PROCS.stop(mgt.proc)  # free core 0 and memory for the second instance
                mem["aliases"] = fig_aliases(tmp, args, fast_port, slow_port)
                if mem["aliases"].get("error"):
                    R["problems"].append(f"modelgate with {args.aliases} aliases: {mem['aliases']['error']}")
    except BenchError as e:
        R["problems"].append(str(e))
        log(f"ERROR: {e}")
        exit_code = 1
    finally:
        PROCS.stop_all()

    R["finished_at"] = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    R["duration_s"] = time.time() - t_start
    env["loadavg_end"] = " ".join(open("/proc/loadavg").read().split()[:3])
    cpu1, own1 = cpu_times_all(), own_cpu_s()
    hz = os.sysconf("SC_CLK_TCK")
    busy_s = ((cpu1[0] - cpu1[1]) - (cpu0[0] - cpu0[1])) / hz
    wall_cpu_s = (cpu1[0] - cpu0[0]) / hz
    env["run_cpu_busy_s"] = round(busy_s, 1)
    env["run_own_cpu_s"] = round(own1 - own0, 1)
    env["other_cpu_busy_pct_during_run"] = round(100.0 * max(0.0, busy_s - (own1 - own0)) / max(1.0, wall_cpu_s), 1)
    env["noisy"] = (env.get("background_cpu_busy_pct") or 0) > 10 or \
        (env.get("other_cpu_busy_pct_during_run") or 0) > 10
    R["verdicts"] = verdicts(R)
    if any("modelgate" in p for p in R["problems"]) or ("modelgate" in args.proxies and "modelgate" not in R["targets"]):
        exit_code = exit_code or 1

    base = Path(args.out) if args.out else HERE / "results" / ("quick-latest" if args.quick else "latest")
    base.parent.mkdir(parents=True, exist_ok=True)
    md = render_md(R)
    base.with_suffix(".json").write_text(json.dumps(R, indent=1, default=str) + "\n")
    base.with_suffix(".md").write_text(md)
    print(md)
    if not args.quick and not args.out:
        update_readme(HERE / "README.md", md)
    log(f"wrote {base.with_suffix('.md')} and {base.with_suffix('.json')}; logs kept in {tmp}")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
