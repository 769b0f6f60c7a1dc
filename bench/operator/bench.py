#!/usr/bin/env python3
"""Operator benchmarks of issue 5: apply-to-served latency, 1,000 aliases to Ready, and the
controller's and gateway's memory at 10,000 aliases.

Run through bench/operator/run.sh, which builds modelgate and gives this script a control
plane (KUBECONFIG set, the matching kubectl first on PATH). Standard library only.

Everything it starts (one `modelgate controller`, one `modelgate gateway`) binds 127.0.0.1 on
port 0, is ended by its pid when the run ends, fails or is interrupted (and gets SIGTERM from
the kernel if this script dies outright: PR_SET_PDEATHSIG). Every loop is bounded in count and
time.
"""

import argparse
import base64
import ctypes
import http.client
import json
import math
import os
import platform
import queue
import random
import re
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import threading
import time
from urllib.parse import quote, urlparse

GROUP_VERSION = "modelgate.dev/v1alpha1"
API = "/apis/modelgate.dev/v1alpha1"
BENCH_LABEL = "modelgate.dev/bench"
TARGETS = {
    "apply_to_served_p99_s": 1.0,
    "ready_1000_s": 2.0,
    "controller_rss_mb": 64.0,
    "gateway_rss_mb": 100.0,
}

T0 = time.monotonic()


def log(message):
    print(f"bench-operator [{time.monotonic() - T0:7.1f}s]: {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# --- processes -------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_parent():
    # The child gets SIGTERM if this script dies without running its cleanup (SIGKILL).
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Proc:
    """A modelgate process this script started; ended by its pid."""

    def __init__(self, name, argv, env, log_path):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            preexec_fn=_die_with_parent,
        )
        self.pid = self.popen.pid
        self.api = None
        self.admin = None

    def wait_started(self, timeout):
        """Reads the start-up line (`admin=http://…`, and `api=http://…` for the gateway)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")
            with open(self.log_path, "rb") as f:
                text = ANSI.sub("", f.read().decode("utf-8", "replace"))
            for line in text.splitlines():
                if "admin=http://" in line:
                    fields = dict(re.findall(r"(\w+)=http://(\S+)", line))
                    self.admin = fields.get("admin", "").strip('"')
                    self.api = fields.get("api", "").strip('"') or None
                    return
            time.sleep(0.05)
        raise BenchError(f"{self.name} did not log its addresses within {timeout}s:\n{self.tail()}")

    def tail(self, lines=30):
        try:
            with open(self.log_path, "rb") as f:
                text = ANSI.sub("", f.read().decode("utf-8", "replace"))
            return "\n".join("    " + l for l in text.splitlines()[-lines:])
        except OSError:
            return "    (no log)"

    def alive(self):
        return self.popen.poll() is None

    def stop(self):
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log(f"{self.name} (pid {self.pid}) ignored SIGTERM for 10 s; killing it")
                self.popen.kill()
                self.popen.wait(timeout=10)
        self._log.close()


def proc_status(pid):
    """VmRSS and VmHWM (MiB) and CPU seconds (user+system) of a process."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) / 1024.0
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        out["cpu_s"] = (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, IndexError, ValueError):
        pass
    return out


def machine_cpu():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return sum(parts) - idle, sum(parts)


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


class Sampler(threading.Thread):
    """Samples RSS, CPU and the load average every `interval` seconds, tagged by phase."""

    def __init__(self, procs, interval=0.5):
        super().__init__(daemon=True)
        self.procs = procs
        self.interval = interval
        self.phase = "setup"
        self.samples = []
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.wait(self.interval):
            self.sample()

    def sample(self):
        entry = {"t": round(time.monotonic() - T0, 2), "phase": self.phase, "load1": loadavg()[0]}
        for name, proc in self.procs.items():
            s = proc_status(proc.pid)
            if "VmRSS" in s:
                entry[f"{name}_rss_mb"] = round(s["VmRSS"], 1)
        self.samples.append(entry)
        return entry

    def peak(self, key, phase=None):
        values = [s[key] for s in self.samples if key in s and (phase is None or s["phase"] == phase)]
        return max(values) if values else None


# --- HTTP ------------------------------------------------------------------------------------


class Kube:
    """A minimal Kubernetes API client with the admin credentials of KUBECONFIG."""

    def __init__(self, tmpdir):
        raw = subprocess.run(
            ["kubectl", "config", "view", "--raw", "--minify", "-o", "json"],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        self.config = json.loads(raw)
        cluster = self.config["clusters"][0]["cluster"]
        user = self.config["users"][0]["user"]
        url = urlparse(cluster["server"])
        if url.scheme != "https":
            raise BenchError(f"only https API servers are supported, not {cluster['server']}")
        self.host = url.hostname
        self.port = url.port or 443
        import ssl

        ctx = ssl.create_default_context()
        if cluster.get("insecure-skip-tls-verify"):
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif "certificate-authority-data" in cluster:
            ctx.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        elif "certificate-authority" in cluster:
            ctx.load_verify_locations(cafile=cluster["certificate-authority"])
        if "client-certificate-data" in user:
            cert = os.path.join(tmpdir, "admin.crt")
            key = os.path.join(tmpdir, "admin.key")
            for path, data in ((cert, user["client-certificate-data"]), (key, user["client-key-data"])):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(base64.b64decode(data))
            ctx.load_cert_chain(cert, key)
        elif "client-certificate" in user:
            ctx.load_cert_chain(user["client-certificate"], user["client-key"])
        self.headers = {"Accept": "application/json"}
        token = user.get("token")
        if not token and user.get("tokenFile"):
            with open(user["tokenFile"]) as f:
                token = f.read().strip()
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        elif "exec" in user or "auth-provider" in user:
            raise BenchError("kubeconfig users with exec/auth-provider plugins are not supported; use a cert or token")
        self.ctx = ctx
        self.local = threading.local()

    def connect(self, timeout=30):
        return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)

    def request(self, method, path, body=None, content_type="application/json", timeout=30):
        """One request on this thread's persistent connection; (status, parsed JSON or None)."""
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        headers = dict(self.headers)
        if data is not None:
            headers["Content-Type"] = content_type
        for attempt in range(3):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = self.connect(timeout)
            try:
                conn.request(method, path, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read()
                try:
                    parsed = json.loads(raw) if raw else None
                except ValueError:
                    parsed = None
                return response.status, parsed
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
                time.sleep(0.1 * (attempt + 1))
        raise AssertionError("unreachable")


class Gateway:
    """Sends chat completions through the gateway on one keep-alive connection."""

    def __init__(self, address):
        host, port = address.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.conn = None

    def ask(self, model):
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            try:
                self.conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
                response = self.conn.getresponse()
                raw = response.read()
                return response.status, raw
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")


def http_get(address, path, timeout=10):
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def scrape(address):
    """Prometheus text from an admin port: {series: value}."""
    try:
        status, text = http_get(address, "/metrics")
    except OSError:
        return {}
    series = {}
    if status != 200:
        return series
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            series[name] = float(value)
        except ValueError:
            pass
    return series


# --- the alias watch ---------------------------------------------------------------------------


def is_ready(obj):
    generation = obj.get("metadata", {}).get("generation")
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True" and c.get("observedGeneration") == generation
    return False


class AliasWatch(threading.Thread):
    """Lists and watches the benchmark's ModelAliases; knows which are Ready, and when each first
    became Ready (the time the watch event arrived here)."""

    def __init__(self, kube, namespace, selector):
        super().__init__(daemon=True)
        self.kube = kube
        self.path = f"{API}/namespaces/{namespace}/modelaliases"
        self.selector = quote(selector)
        self.cond = threading.Condition()
        self.ready = {}  # name -> bool
        self.ready_at = {}  # name -> monotonic time first seen Ready (cleared on delete)
        self.ready_count = 0
        self.events = {"ADDED": 0, "MODIFIED": 0, "DELETED": 0}
        self.lists = 0
        self.synced = threading.Event()
        self.stopped = threading.Event()
        self.error = None

    def _set(self, name, obj, now):
        was = self.ready.get(name, False)
        now_ready = obj is not None and is_ready(obj)
        if obj is None:
            self.ready.pop(name, None)
            self.ready_at.pop(name, None)
        else:
            self.ready[name] = now_ready
            if now_ready and name not in self.ready_at:
                self.ready_at[name] = now
        self.ready_count += int(now_ready) - int(was)

    def run(self):
        rv = None
        while not self.stopped.is_set():
            try:
                if rv is None:
                    rv = self._list()
                rv = self._watch(rv)  # None after an ERROR event (e.g. 410 Gone): list again
            except Exception as e:  # noqa: BLE001 - reported, then retried from a fresh list
                self.error = repr(e)
                rv = None
                time.sleep(0.5)

    def _list(self):
        items, cont = [], ""
        for _ in range(1000):
            path = f"{self.path}?labelSelector={self.selector}&limit=500"
            if cont:
                path += f"&continue={quote(cont)}"
            status, body = self.kube.request("GET", path, timeout=60)
            if status != 200:
                raise BenchError(f"list modelaliases: HTTP {status}: {body}")
            items.extend(body.get("items", []))
            cont = body["metadata"].get("continue")
            rv = body["metadata"]["resourceVersion"]
            if not cont:
                break
        now = time.monotonic()
        with self.cond:
            names = set()
            for obj in items:
                name = obj["metadata"]["name"]
                names.add(name)
                self._set(name, obj, now)
            for name in list(self.ready):
                if name not in names:
                    self._set(name, None, now)
            self.lists += 1
            self.cond.notify_all()
        self.synced.set()
        return rv

    def _watch(self, rv):
        """Watches from `rv`; returns the last resourceVersion seen when the server ends the
        watch (so the next watch resumes there, without listing again), None on an ERROR."""
        conn = self.kube.connect(timeout=400)
        try:
            conn.request(
                "GET",
                f"{self.path}?labelSelector={self.selector}&watch=1&allowWatchBookmarks=true"
                f"&timeoutSeconds=300&resourceVersion={rv}",
                headers=self.kube.headers,
            )
            response = conn.getresponse()
            if response.status != 200:
                raise BenchError(f"watch modelaliases: HTTP {response.status}")
            while not self.stopped.is_set():
                line = response.readline()
                if not line:
                    return rv  # the server closed the watch (timeoutSeconds): resume
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object", {})
                if kind == "ERROR":
                    return None
                rv = obj.get("metadata", {}).get("resourceVersion", rv)
                if kind == "BOOKMARK":
                    continue
                now = time.monotonic()
                with self.cond:
                    self.events[kind] = self.events.get(kind, 0) + 1
                    name = obj["metadata"]["name"]
                    self._set(name, None if kind == "DELETED" else obj, now)
                    self.cond.notify_all()
            return rv
        finally:
            conn.close()

    def wait_for(self, predicate, timeout):
        """Waits until predicate() (called under the lock) holds; False on timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 1.0))
            return True

    def counts(self):
        with self.cond:
            return len(self.ready), self.ready_count, dict(self.events)


# --- objects -----------------------------------------------------------------------------------


def alias_body(name, labels):
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "ModelAlias",
        "metadata": {"name": name, "labels": labels},
        "spec": {"target": "mock/some-model"},
    }


def run_parallel(items, workers, task):
    """Runs task(item) on `workers` threads (each with its own API connection); returns
    (seconds, failures) where failures are the non-None results."""
    work = queue.Queue()
    for item in items:
        work.put(item)
    failures = []

    def worker():
        while True:
            try:
                item = work.get_nowait()
            except queue.Empty:
                return
            failure = task(item)
            if failure is not None:
                failures.append(failure)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=900)
    return time.monotonic() - started, failures


def with_retries(kube, method, path, body, content_type="application/json", ok=(200, 201)):
    """One API call, retried (bounded) on transport errors, 429 and 5xx; None or a failure."""
    status, reply = 0, None
    for attempt in range(6):
        try:
            status, reply = kube.request(method, path, body, content_type=content_type)
        except (OSError, http.client.HTTPException) as e:
            status, reply = 0, repr(e)
        if status in ok:
            return None
        if status in (0, 429, 500, 503, 504) and attempt < 5:
            time.sleep(0.2 * (attempt + 1))
            continue
        break
    return (path, status, str(reply)[:300])


def baseline_status(name):
    """A status of the size and shape the controller writes for a Ready alias (server-side
    apply body; JSON is YAML)."""
    def cond(type_, status, reason, message):
        return {"type": type_, "status": status, "reason": reason, "message": message,
                "observedGeneration": 1, "lastTransitionTime": "2026-01-01T00:00:00Z"}
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "ModelAlias",
        "status": {
            "observedGeneration": 1,
            "conditions": [
                cond("Accepted", "True", "Accepted", f"alias '{name}' is valid and belongs to this ModelAlias"),
                cond("ResolvedRefs", "True", "ResolvedRefs", "every target reaches a provider with its key"),
                cond("Ready", "True", "Serving", f"serving '{name}' from mock some-model (100%)"),
                cond("Stalled", "False", "Serving", "nothing blocks this alias"),
            ],
            "resolved": {"alias": name, "generation": 1, "active": True, "hidden": False,
                         "targets": [{"provider": "mock", "model": "some-model", "weight": 100.0}]},
        },
    }


def baseline_event(namespace, name, uid):
    """An Event like the controller's `Accepted` (events.k8s.io/v1)."""
    return {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": f"{name}.{time.time_ns():x}", "namespace": namespace},
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
        "action": "Reconcile",
        "reason": "Accepted",
        "note": f"serving '{name}' from mock some-model (100%)",
        "type": "Normal",
        "regarding": {"apiVersion": GROUP_VERSION, "kind": "ModelAlias", "name": name,
                      "namespace": namespace, "uid": uid},
        "reportingController": "modelgate-bench-baseline",
        "reportingInstance": "modelgate-bench-baseline",
    }


def create_aliases(kube, namespace, names, labels, workers):
    """Creates the aliases with `workers` parallel connections. Returns (seconds, failures)."""
    path = f"{API}/namespaces/{namespace}/modelaliases"

    def create(name):
        body = json.dumps(alias_body(name, labels)).encode()
        return with_retries(kube, "POST", path, body, ok=(200, 201, 409))

    return run_parallel(names, workers, create)


def kubectl(*args, stdin=None, timeout=120, check=True):
    result = subprocess.run(
        ["kubectl", *args], input=stdin, capture_output=True, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise BenchError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}")
    return result.stdout


def service_account_kubeconfig(kube_config, account, path):
    token = kubectl("create", "token", account, "-n", "modelgate-system", "--duration", "2h").strip()
    cluster = kube_config["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "bench", "cluster": cluster}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": account}}],
        "current-context": "bench",
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f)


# --- statistics --------------------------------------------------------------------------------


def percentile(values, q):
    """Nearest-rank percentile; None if empty. Timeouts are passed in as math.inf."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def finite(x):
    return None if x is None or math.isinf(x) else round(x, 4)


# --- the benchmark -----------------------------------------------------------------------------


class Bench:
    def __init__(self, args):
        self.args = args
        self.repo = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
        self.tmp = tempfile.mkdtemp(prefix="modelgate-opbench.")
        # A private copy: a rebuild of the shared target directory during the run cannot swap
        # the binary under a restarted controller.
        self.binary = os.path.join(self.tmp, "modelgate")
        shutil.copy2(args.modelgate_bin, self.binary)
        self.run_id = "".join(random.choices(string.ascii_lowercase + string.digits, k=6))
        self.namespace = f"modelgate-bench-{self.run_id}"
        self.selector = f"{BENCH_LABEL}={self.run_id}"
        self.labels = {BENCH_LABEL: self.run_id}
        self.procs = {}
        self.retired = []
        self.controllers_started = 0
        self.sampler = None
        self.watch = None
        self.result = {"phases": {}, "problems": []}
        self.deadline = time.monotonic() + args.time_budget

    def left(self):
        return self.deadline - time.monotonic()

    def bounded(self, seconds):
        """A phase bound, never past the run's overall budget."""
        return max(1.0, min(seconds, self.left()))

    def problem(self, text):
        log(f"PROBLEM: {text}")
        self.result["problems"].append(text)

    # -- setup --

    def setup(self):
        log(f"run {self.run_id}: namespace {self.namespace}, selector {self.selector}, tmp {self.tmp}")
        kubectl("apply", "--server-side", "--force-conflicts", "-f", os.path.join(self.repo, "crds"))
        kubectl("wait", "--for=condition=Established", "--timeout=60s",
                "crd/modelaliases.modelgate.dev", "crd/llmproviders.modelgate.dev", timeout=90)
        kubectl("apply", "--server-side", "--force-conflicts", "-k", os.path.join(self.repo, "config", "rbac"))
        kubectl("create", "namespace", self.namespace)
        provider = {
            "apiVersion": GROUP_VERSION,
            "kind": "LLMProvider",
            "metadata": {"name": "mock", "namespace": self.namespace, "labels": self.labels},
            "spec": {"type": "mock"},
        }
        kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(provider))
        self.kube = Kube(self.tmp)
        version = json.loads(kubectl("version", "-o", "json"))
        self.result["context"]["kubernetes"] = version.get("serverVersion", {}).get("gitVersion")
        self.result["context"]["cluster"] = os.environ.get("MODELGATE_TEST_CLUSTER", "?")

        for account in ("modelgate-controller", "modelgate-gateway"):
            service_account_kubeconfig(self.kube.config, account, os.path.join(self.tmp, f"{account}.kubeconfig"))

        self.procs["gateway"] = Proc(
            "gateway",
            [self.binary, "gateway", "--selector", self.selector, "--listen", "127.0.0.1:0",
             "--admin-listen", "127.0.0.1:0", "--replica-namespace", "modelgate-system",
             "--auth", "none"],
            self.env("modelgate-gateway"),
            os.path.join(self.tmp, "gateway.log"),
        )
        self.start_controller()
        gateway = self.procs["gateway"]
        gateway.wait_started(60)
        log(f"gateway pid {gateway.pid}: admin {gateway.admin}, api {gateway.api}")
        self.sampler = Sampler(self.procs)
        self.sampler.start()
        self.gateway = Gateway(gateway.api)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if http_get(gateway.admin, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            raise BenchError(f"the gateway was not ready within 60 s:\n{gateway.tail()}")
        self.wait_leading()
        self.watch = AliasWatch(self.kube, self.namespace, self.selector)
        self.watch.start()
        if not self.watch.synced.wait(30):
            raise BenchError(f"the alias watch did not sync: {self.watch.error}")
        # Sanity: one alias through the whole path before measuring anything.
        self.probe("bench-warmup", timeout=60, delete=True)

    def env(self, account):
        e = dict(os.environ)
        e["KUBECONFIG"] = os.path.join(self.tmp, f"{account}.kubeconfig")
        e["RUST_LOG"] = self.args.rust_log
        for item in self.args.process_env:
            key, _, value = item.partition("=")
            e[key] = value
        e.pop("POD_NAME", None)
        e.pop("POD_NAMESPACE", None)
        return e

    def start_controller(self):
        """Starts a controller (the n-th of this run) as the controller ServiceAccount."""
        self.controllers_started += 1
        n = self.controllers_started
        proc = Proc(
            "controller",
            [self.binary, "controller", "--selector", self.selector, "--admin-listen", "127.0.0.1:0",
             "--lease-namespace", "modelgate-system", "--lease-name", f"modelgate-bench-{self.run_id}",
             "--identity", f"bench-{self.run_id}-{n}"],
            self.env("modelgate-controller"),
            os.path.join(self.tmp, f"controller-{n}.log"),
        )
        self.procs["controller"] = proc
        proc.wait_started(60)
        log(f"controller #{n} pid {proc.pid}: admin {proc.admin}")
        return proc

    def wait_leading(self):
        proc = self.procs["controller"]
        deadline = time.monotonic() + 60
        while scrape(proc.admin).get("modelgate_controller_leader") != 1.0:
            if time.monotonic() > deadline or not proc.alive():
                raise BenchError(f"the controller did not lead within 60 s:\n{proc.tail()}")
            time.sleep(0.1)

    def controller_reconciles(self):
        m = scrape(self.procs["controller"].admin)
        return int(sum(v for k, v in m.items() if k.startswith('modelgate_controller_reconciles_total{kind="ModelAlias"')))

    # -- phase bookkeeping --

    def phase_begin(self, name):
        self.sampler.phase = name
        return {
            "name": name,
            "t": time.monotonic(),
            "controller": scrape(self.procs["controller"].admin),
            "gateway": scrape(self.procs["gateway"].admin),
            "pids": {n: p.pid for n, p in self.procs.items()},
            "cpu": {n: proc_status(p.pid).get("cpu_s", 0.0) for n, p in self.procs.items()},
            "machine": machine_cpu(),
            "watch": self.watch.counts()[2] if self.watch else {},
        }

    def phase_end(self, begin, **figures):
        end = self.phase_begin(begin["name"])
        seconds = end["t"] - begin["t"]
        # A controller restarted within the phase: its counters and CPU start from zero.
        restarted = begin["pids"]["controller"] != end["pids"]["controller"]
        start_metrics = {} if restarted else begin["controller"]

        def delta(series):
            return end["controller"].get(series, 0.0) - start_metrics.get(series, 0.0)

        def cpu(name):
            if begin["pids"][name] != end["pids"][name]:
                return end["cpu"][name]
            return end["cpu"][name] - begin["cpu"][name]

        reconciles = {}
        for kind in ("ModelAlias", "LLMProvider"):
            for outcome in ("unchanged", "written", "error"):
                n = delta(f'modelgate_controller_reconciles_total{{kind="{kind}",outcome="{outcome}"}}')
                if n:
                    reconciles[f"{kind}/{outcome}"] = int(n)
        errors = {
            k: int(delta(k)) for k in end["controller"] if k.startswith("modelgate_controller_errors_total") and delta(k)
        }
        dur_sum = delta('modelgate_controller_reconcile_duration_seconds_sum{kind="ModelAlias"}')
        dur_count = delta('modelgate_controller_reconcile_duration_seconds_count{kind="ModelAlias"}')
        busy = end["machine"][0] - begin["machine"][0]
        total = end["machine"][1] - begin["machine"][1]
        phase = {
            "seconds": round(seconds, 2),
            "controller_restarted": restarted,
            "controller_reconciles": reconciles,
            "controller_errors": errors,
            "controller_alias_reconcile_mean_ms": round(1000 * dur_sum / dur_count, 3) if dur_count else None,
            "controller_cpu_s": round(cpu("controller"), 2),
            "gateway_cpu_s": round(cpu("gateway"), 2),
            "machine_cpu_busy_pct": round(100.0 * busy / total, 1) if total else None,
            "watch_events": {k: end["watch"].get(k, 0) - begin["watch"].get(k, 0) for k in end["watch"]},
            "gateway_routes": end["gateway"].get("modelgate_routes"),
            "load1_end": loadavg()[0],
            "controller_rss_mb_peak": self.sampler.peak("controller_rss_mb", begin["name"]),
            "gateway_rss_mb_peak": self.sampler.peak("gateway_rss_mb", begin["name"]),
        }
        phase.update(figures)
        self.result["phases"][begin["name"]] = phase
        log(f"phase {begin['name']}: {json.dumps({k: v for k, v in phase.items() if k not in ('progress', 'served_all_s')})}")
        for name, proc in self.procs.items():
            if not proc.alive():
                raise BenchError(f"the {name} exited during {begin['name']}:\n{proc.tail()}")
        return phase

    # -- measurements --

    def probe(self, name, timeout, delete):
        """Creates alias `name` and polls the gateway until it answers 200 for it.
        Returns (served seconds or inf, ready seconds or None, create seconds)."""
        path = f"{API}/namespaces/{self.namespace}/modelaliases"
        body = json.dumps(alias_body(name, self.labels)).encode()
        interval = self.args.poll_ms / 1000.0
        started = time.monotonic()
        status, reply = self.kube.request("POST", path, body)
        created = time.monotonic() - started
        if status not in (200, 201):
            raise BenchError(f"create {name}: HTTP {status}: {reply}")
        served = math.inf
        next_at = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            code, raw = self.gateway.ask(name)
            if code == 200:
                served = time.monotonic() - started
                break
            if code != 404:
                raise BenchError(f"the gateway answered {code} for {name}: {raw[:300]!r}")
            next_at += interval
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:
                next_at = time.monotonic()
        # Ready as the watch saw it (it may trail the first 200 by a little).
        self.watch.wait_for(lambda: name in self.watch.ready_at, min(5.0, max(0.5, timeout)))
        with self.watch.cond:
            ready_t = self.watch.ready_at.get(name)
        ready = None if ready_t is None else ready_t - started
        if delete:
            status, reply = self.kube.request("DELETE", f"{path}/{name}")
            if status not in (200, 202):
                raise BenchError(f"delete {name}: HTTP {status}: {reply}")
            # Settle: the gateway forgets it (404) before the next probe.
            settle = time.monotonic() + 30
            while time.monotonic() < settle and self.gateway.ask(name)[0] == 200:
                time.sleep(interval)
            self.watch.wait_for(lambda: name not in self.watch.ready, 10)
        if math.isinf(served):
            self.problem(f"alias {name} was not served within {timeout:.0f} s")
        return served, ready, created

    def wait_quiet(self, window=0.25, bound=15.0):
        """Waits until neither the controller nor the gateway used any CPU for `window` seconds
        (so a probe never starts while the previous one's delete is still being processed).
        Returns the seconds until quiet, or None at the bound."""
        started = time.monotonic()
        last = None
        while time.monotonic() - started < bound:
            cpu = tuple(proc_status(p.pid).get("cpu_s", 0.0) for p in self.procs.values())
            if cpu == last:
                return max(0.0, time.monotonic() - started - window)
            last = cpu
            time.sleep(window)
        return None

    def latency_series(self, loaded):
        phase = self.phase_begin(f"apply_to_served_at_{loaded}")
        served, ready, created, quiet = [], [], [], []
        budget_end = time.monotonic() + self.bounded(self.args.probe_budget)
        self.wait_quiet()
        for i in range(self.args.probes):
            if time.monotonic() > budget_end:
                self.problem(f"apply-to-served at {loaded}: stopped after {i} of {self.args.probes} probes (time budget)")
                break
            s, r, c = self.probe(f"probe-{loaded}-{i:03d}", timeout=min(30.0, max(1.0, budget_end - time.monotonic())), delete=True)
            served.append(s)
            created.append(c)
            if r is not None:
                ready.append(r)
            q = self.wait_quiet()
            quiet.append(math.inf if q is None else q)
            time.sleep(self.args.probe_gap_ms / 1000.0)
        total, ready_now, _ = self.watch.counts()
        figures = {
            "loaded_aliases": total,
            "loaded_ready": ready_now,
            "probes": len(served),
            "timeouts": sum(1 for s in served if math.isinf(s)),
            "served_p50_s": finite(percentile(served, 50)),
            "served_p90_s": finite(percentile(served, 90)),
            "served_p99_s": finite(percentile(served, 99)),
            "served_max_s": finite(max(served)) if served else None,
            "served_min_s": finite(min(served)) if served else None,
            "ready_p50_s": finite(percentile(ready, 50)),
            "ready_p99_s": finite(percentile(ready, 99)),
            "create_call_p50_s": finite(percentile(created, 50)),
            "busy_after_delete_p50_s": finite(percentile(quiet, 50)),
            "busy_after_delete_max_s": finite(max(quiet)) if quiet else None,
            "served_all_s": [finite(s) for s in served],
        }
        return self.phase_end(phase, **figures)

    def profile(self, seconds, out):
        """Records a CPU profile of the controller (perf, with DWARF call graphs), bounded; in a
        thread. `profile_report` reads it later, when the run no longer needs the CPU."""
        if not self.args.perf or not shutil.which("perf"):
            return None
        pid = self.procs["controller"].pid
        data = os.path.join(self.tmp, "controller.perf")
        out["data"] = data

        def run():
            try:
                rec = subprocess.run(
                    ["perf", "record", "-F", "99", "--call-graph", "dwarf,16384", "-o", data, "-p", str(pid),
                     "--", "sleep", str(seconds)],
                    capture_output=True, text=True, timeout=seconds + 60,
                )
                if rec.returncode != 0:
                    out["error"] = rec.stderr[-300:]
                    return
                out["seconds"] = seconds
            except (OSError, subprocess.SubprocessError) as e:
                out["error"] = repr(e)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    @staticmethod
    def profile_report(out):
        data = out.pop("data", None)
        if not data or "error" in out or not os.path.exists(data):
            return
        try:
            flat = subprocess.run(
                ["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "symbol", "-g", "none",
                 "--percent-limit", "1"],
                capture_output=True, text=True, timeout=300,
            )
            rows = []
            for line in flat.stdout.splitlines():
                m = re.match(r"\s*([\d.]+)%\s+\[\.\]\s+(.*)", line)
                if m:
                    rows.append([float(m.group(1)), re.split(r"\s{3,}", m.group(2).strip())[0][:200]])
            out["top_symbols"] = rows[:25]
            incl = subprocess.run(
                ["perf", "report", "-i", data, "--stdio", "--children", "--sort", "symbol", "-g", "none",
                 "--percent-limit", "2"],
                capture_output=True, text=True, timeout=300,
            )
            rows = []
            for line in incl.stdout.splitlines():
                m = re.match(r"\s*([\d.]+)%\s+([\d.]+)%\s+\[\.\]\s+(.*)", line)
                if m and ("modelgate::" in m.group(3) or "kube_runtime::" in m.group(3)):
                    rows.append([float(m.group(1)), re.split(r"\s{3,}", m.group(3).strip())[0][:200]])
            out["top_inclusive"] = rows[:25]
        except (OSError, subprocess.SubprocessError) as e:
            out["error"] = repr(e)

    def load(self, phase_name, start_index, count, expected_total, bound, profile=None):
        """Creates `count` aliases at once and waits (bounded) until all `expected_total` are Ready."""
        names = [f"bench-{i:05d}" for i in range(start_index, start_index + count)]
        phase = self.phase_begin(phase_name)
        started = phase["t"]
        seconds, failures = create_aliases(self.kube, self.namespace, names, self.labels, self.args.workers)
        # Profile once every alias is in the controller's store.
        profiler = None if profile is None else self.profile(self.args.perf_seconds, profile)
        if failures:
            self.problem(f"{phase_name}: {len(failures)} creates failed, e.g. {failures[:3]}")
        log(f"{phase_name}: created {count} aliases in {seconds:.2f} s; waiting for {expected_total} Ready")
        progress = []
        cpu0 = proc_status(self.procs["controller"].pid).get("cpu_s", 0.0)
        reconciles0 = sum(
            v for k, v in phase["controller"].items()
            if k.startswith('modelgate_controller_reconciles_total{kind="ModelAlias"')
        )
        modified0 = phase["watch"].get("MODIFIED", 0)

        def all_ready():
            return self.watch.ready_count >= expected_total

        deadline = started + self.bounded(bound)
        ok = False
        while True:
            if self.watch.wait_for(all_ready, max(0.0, min(self.args.progress_every, deadline - time.monotonic()))):
                ok = True
                break
            _, ready_now, events = self.watch.counts()
            s = proc_status(self.procs["controller"].pid)
            progress.append({
                "t": round(time.monotonic() - started, 1),
                "ready": ready_now,
                "reconciles": int(self.controller_reconciles() - reconciles0),
                "modified_events": events.get("MODIFIED", 0) - modified0,
                "controller_cpu_s": round(s.get("cpu_s", 0.0) - cpu0, 1),
                "controller_rss_mb": round(s.get("VmRSS", 0.0), 1),
            })
            log(f"{phase_name}: {ready_now}/{expected_total} Ready after {time.monotonic() - started:.0f} s")
            if time.monotonic() >= deadline:
                break
        with self.watch.cond:
            times = [self.watch.ready_at[n] for n in names if n in self.watch.ready_at]
            ready_now = self.watch.ready_count
        all_ready_s = (max(times) - started) if ok and times else None
        if not ok:
            self.problem(
                f"{phase_name}: only {ready_now} of {expected_total} aliases Ready after {deadline - started:.0f} s "
                f"(the bound)"
            )
        ordered = sorted(t - started for t in times)

        def nth(fraction):
            if not ordered:
                return None
            return round(ordered[max(0, math.ceil(fraction * len(ordered)) - 1)], 3)

        routes_s = None
        if ok:
            # When the gateway serves all of them (its route count), bounded.
            routes_deadline = time.monotonic() + self.bounded(30)
            while time.monotonic() < routes_deadline:
                if scrape(self.procs["gateway"].admin).get("modelgate_routes", 0) >= expected_total:
                    routes_s = time.monotonic() - started
                    break
                time.sleep(0.05)
        if profiler is not None:
            profiler.join(timeout=self.args.perf_seconds + 70)
        s = proc_status(self.procs["controller"].pid)
        return self.phase_end(
            phase,
            created=count,
            create_failures=len(failures),
            create_seconds=round(seconds, 3),
            all_ready=ok,
            ready_now=ready_now,
            all_ready_s=None if all_ready_s is None else round(all_ready_s, 3),
            all_ready_after_last_create_s=None if all_ready_s is None else round(all_ready_s - seconds, 3),
            first_ready_s=nth(0.0001),
            half_ready_s=nth(0.5),
            ready_p90_s=nth(0.9),
            gateway_all_routes_s=None if routes_s is None else round(routes_s, 3),
            controller_rss_mb_end=round(s.get("VmRSS", 0.0), 1),
            progress=progress,
        )

    def complete_and_restart(self, expected_total):
        """Stops the controller; gives every alias it has not made Ready yet the very status it
        writes for its peers (a Ready alias's status with the name replaced); starts a new
        controller, which must find all of them up to date (no writes)."""
        phase = self.phase_begin(f"complete_to_{expected_total}_and_restart")
        old = self.procs["controller"]
        old.stop()
        self.retired.append(old)
        log(f"stopped controller pid {old.pid}")
        items, cont = [], ""
        path = f"{API}/namespaces/{self.namespace}/modelaliases"
        for _ in range(1000):
            status, body = self.kube.request(
                "GET", f"{path}?labelSelector={quote(self.selector)}&limit=500" + (f"&continue={quote(cont)}" if cont else ""),
                timeout=60,
            )
            if status != 200:
                raise BenchError(f"list modelaliases: HTTP {status}")
            items.extend(body["items"])
            cont = body["metadata"].get("continue")
            if not cont:
                break
        ready = [o for o in items if is_ready(o)]
        missing = [o for o in items if not is_ready(o)]
        if not ready:
            raise BenchError("no Ready alias to copy a status from")
        template = ready[0]
        template_name = template["metadata"]["name"]
        template_status = json.dumps({"status": template["status"]})
        if any(o["metadata"].get("generation") != template["metadata"].get("generation") for o in missing):
            raise BenchError("aliases at different generations: cannot copy a status")

        def seed(obj):
            name = obj["metadata"]["name"]
            body = template_status.replace(template_name, name).encode()
            return with_retries(self.kube, "PATCH", f"{path}/{name}/status", body,
                                content_type="application/merge-patch+json")

        seed_seconds, failures = run_parallel(missing, self.args.workers, seed)
        if failures:
            raise BenchError(f"{len(failures)} status patches failed, e.g. {failures[:3]}")
        log(f"copied the status to {len(missing)} aliases in {seed_seconds:.1f} s; starting a new controller")
        seeded = self.watch.wait_for(lambda: self.watch.ready_count >= expected_total, self.bounded(120))
        if not seeded:
            raise BenchError(f"only {self.watch.ready_count} of {expected_total} aliases Ready after copying")
        # The gateway serves all of them before the new controller starts.
        gateway_deadline = time.monotonic() + self.bounded(120)
        while scrape(self.procs["gateway"].admin).get("modelgate_routes", 0) < expected_total:
            if time.monotonic() > gateway_deadline:
                raise BenchError("the gateway did not load every route")
            time.sleep(0.1)
        restart = time.monotonic()
        self.start_controller()
        self.wait_leading()
        # Done when it has reconciled every alias and then nothing for 2 s (bounded).
        synced_s, last, last_change = None, -1, time.monotonic()
        deadline = time.monotonic() + self.bounded(180)
        while time.monotonic() < deadline:
            n = self.controller_reconciles()
            now = time.monotonic()
            if n != last:
                last, last_change = n, now
            if n >= expected_total and now - last_change >= 2.0:
                synced_s = last_change - restart
                break
            time.sleep(0.1)
        if synced_s is None:
            self.problem(f"the restarted controller reconciled {last} of {expected_total} aliases within the bound")
        phase = self.phase_end(
            phase,
            completed_by_copy=len(missing),
            copy_seconds=round(seed_seconds, 2),
            template=template_name,
            restarted_controller_reconciled=last,
            restarted_controller_all_reconciled_s=None if synced_s is None else round(synced_s, 2),
        )
        written = phase["controller_reconciles"].get("ModelAlias/written", 0)
        if written:
            self.problem(f"the restarted controller rewrote {written} statuses it should have found up to date")
        return phase

    def baseline_creates(self, count):
        """The same bulk create, of aliases no modelgate process selects: what the apiserver and
        this client alone take. They are deleted again before the real measurements."""
        selector = f"{BENCH_LABEL}={self.run_id}-baseline"
        names = [f"baseline-{i:05d}" for i in range(count)]
        phase = self.phase_begin(f"baseline_{count}_creates_unwatched")
        seconds, failures = create_aliases(
            self.kube, self.namespace, names, {BENCH_LABEL: f"{self.run_id}-baseline"}, self.args.workers
        )
        if failures:
            self.problem(f"baseline: {len(failures)} creates failed, e.g. {failures[:3]}")
        # What the controller's own writes cost the apiserver with nothing else running: one
        # server-side-apply status patch per alias (as many at a time as the controller runs
        # reconciles), then one Event per alias (as many at a time as its Event writer sends).
        base = f"{API}/namespaces/{self.namespace}/modelaliases"

        def apply_status(name):
            body = json.dumps(baseline_status(name)).encode()
            return with_retries(self.kube, "PATCH",
                                f"{base}/{name}/status?fieldManager=modelgate-bench-baseline&force=true",
                                body, content_type="application/apply-patch+yaml")

        ssa_seconds, ssa_failures = run_parallel(names, self.args.controller_concurrency, apply_status)
        if ssa_failures:
            self.problem(f"baseline: {len(ssa_failures)} status patches failed, e.g. {ssa_failures[:3]}")
        events_path = f"/apis/events.k8s.io/v1/namespaces/{self.namespace}/events"

        def create_event(name):
            body = json.dumps(baseline_event(self.namespace, name, "00000000-0000-0000-0000-000000000000")).encode()
            return with_retries(self.kube, "POST", events_path, body)

        event_seconds, event_failures = run_parallel(names, 4, create_event)
        if event_failures:
            self.problem(f"baseline: {len(event_failures)} Event creates failed, e.g. {event_failures[:3]}")
        path = f"{API}/namespaces/{self.namespace}/modelaliases?labelSelector={quote(selector)}"
        status, reply = self.kube.request("DELETE", path, timeout=120)
        if status != 200:
            raise BenchError(f"delete the baseline aliases: HTTP {status}: {reply}")
        deadline = time.monotonic() + self.bounded(60)
        while self.kube.request("GET", path + "&limit=1")[1].get("items"):
            if time.monotonic() > deadline:
                raise BenchError("the baseline aliases were not deleted within 60 s")
            time.sleep(0.2)
        self.wait_quiet()
        return self.phase_end(
            phase,
            create_seconds=round(seconds, 3),
            create_failures=len(failures),
            status_apply_seconds=round(ssa_seconds, 3),
            status_apply_failures=len(ssa_failures),
            event_create_seconds=round(event_seconds, 3),
            event_create_failures=len(event_failures),
        )

    def steady(self, name, seconds):
        phase = self.phase_begin(name)
        time.sleep(seconds)
        return self.phase_end(phase)

    def memory(self):
        out = {}
        for name, proc in self.procs.items():
            s = proc_status(proc.pid)
            out[f"{name}_rss_mb"] = round(s.get("VmRSS", 0.0), 1)
            out[f"{name}_hwm_mb"] = round(s.get("VmHWM", 0.0), 1)
        return out

    # -- the run --

    def run(self):
        a = self.args
        self.result["context"] = context(a, self.binary)
        self.result["parameters"] = {
            "aliases_at_once": a.at_once,
            "aliases_large": a.large,
            "probes": a.probes,
            "poll_ms": a.poll_ms,
            "probe_gap_ms": a.probe_gap_ms,
            "create_workers": a.workers,
            "load_bound_s": a.load_bound,
            "rust_log": a.rust_log,
            "process_env": a.process_env,
        }
        load_start = loadavg()
        started = time.monotonic()
        self.setup()
        self.result["setup_seconds"] = round(time.monotonic() - started, 1)

        # 0. The apiserver alone: the same creates, watched by nobody.
        self.baseline_creates(a.at_once)
        # 1. `at_once` aliases created at once -> all Ready.
        self.load(f"ready_{a.at_once}_at_once", 0, a.at_once, a.at_once, a.ready_bound)
        self.steady(f"settle_at_{a.at_once}", a.settle)
        # 2. apply-to-served with `at_once` aliases loaded.
        self.latency_series(a.at_once)
        # 3. the rest up to `large`, created at once while the controller runs (bounded).
        profile = {}
        load = self.load(f"load_to_{a.large}", a.at_once, a.large - a.at_once, a.large, a.load_bound, profile=profile)
        self.result["controller_profile_during_load"] = profile
        self.result["memory_at_large_first_controller"] = {
            "controller_rss_mb": load["controller_rss_mb_end"],
            "controller_hwm_mb": round(proc_status(self.procs["controller"].pid).get("VmHWM", 0.0), 1),
            "ready_then": load["ready_now"],
        }
        # 4. A fresh controller over the complete set (what a restart or failover sees).
        self.complete_and_restart(a.large)
        self.steady(f"settle_at_{a.large}", a.settle)
        self.result["memory_at_large_settled"] = self.memory()
        # 5. apply-to-served with `large` aliases loaded; a steady world; memory.
        self.latency_series(a.large)
        self.result["steady_at_large"] = self.steady(f"steady_at_{a.large}", a.steady)
        self.result["memory_at_large"] = self.memory()
        self.result["memory_peak"] = {
            "controller_rss_mb": self.sampler.peak("controller_rss_mb"),
            "gateway_rss_mb": self.sampler.peak("gateway_rss_mb"),
        }
        self.result["context"]["load_start"] = load_start
        self.result["context"]["load_end"] = loadavg()
        loads = [s["load1"] for s in self.sampler.samples]
        self.result["context"]["load1_mean"] = round(sum(loads) / len(loads), 2) if loads else None
        self.result["context"]["load1_max"] = max(loads) if loads else None
        self.result["run_seconds"] = round(time.monotonic() - started, 1)
        self.result["watch_lists"] = self.watch.lists
        self.profile_report(profile)
        self.result["samples"] = self.sampler.samples[:: max(1, len(self.sampler.samples) // 600)]

    def cleanup(self):
        if self.sampler:
            self.sampler.stopped.set()
        if self.watch:
            self.watch.stopped.set()
        for proc in list(self.procs.values()) + self.retired:
            try:
                proc.stop()
            except Exception as e:  # noqa: BLE001
                log(f"stopping {proc.name}: {e}")
        if os.environ.get("MODELGATE_TEST_CLUSTER") != "local":
            # A cluster that outlives the run: remove what this run made (without waiting).
            kubectl("delete", "namespace", self.namespace, "--wait=false", check=False, timeout=60)
            kubectl("delete", "lease", "-n", "modelgate-system", f"modelgate-bench-{self.run_id}",
                    "--ignore-not-found", check=False, timeout=60)
        if self.args.keep_logs:
            log(f"kept logs in {self.tmp}")
        else:
            for name in os.listdir(self.tmp):
                if name.endswith(".log"):
                    shutil.copy(os.path.join(self.tmp, name), os.path.join(self.args.log_dir, name))
            shutil.rmtree(self.tmp, ignore_errors=True)


def context(args, binary):
    def read(path):
        try:
            with open(path) as f:
                return f.read()
        except OSError:
            return ""

    cpu = next((l.split(":", 1)[1].strip() for l in read("/proc/cpuinfo").splitlines() if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) // 1024 for l in read("/proc/meminfo").splitlines() if l.startswith("MemTotal")), None)
    repo = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

    def git(*a):
        try:
            return subprocess.run(["git", "-C", repo, *a], capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_mb": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        # The build's commit when run.sh built the binary; else HEAD now.
        "commit": os.environ.get("MODELGATE_BENCH_BUILD_COMMIT") or git("rev-parse", "--short", "HEAD"),
        "src_dirty": (
            os.environ["MODELGATE_BENCH_BUILD_DIRTY"].strip() != "0"
            if "MODELGATE_BENCH_BUILD_DIRTY" in os.environ
            else bool(git("status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"))
        ),
        "binary_built_here": "MODELGATE_BENCH_BUILD_COMMIT" in os.environ,
        "modelgate_bin": args.modelgate_bin,
        "modelgate_bin_sha256": file_sha256(binary),
        "modelgate_bin_mtime": time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(os.stat(args.modelgate_bin).st_mtime)
        ),
    }


def file_sha256(path):
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- report --------------------------------------------------------------------------------------


def fmt_s(x):
    if x is None:
        return "n/a"
    return f"{x * 1000:.0f} ms" if x < 10 else f"{x:.1f} s"


def fmt_mb(x):
    return "n/a" if x is None else f"{x:.1f} MB"


def verdict(value, target):
    if value is None:
        return "not reached"
    return "yes" if value <= target else "**no**"


def markdown(result, args):
    c = result["context"]
    p = result["phases"]
    n_small, n_large = args.at_once, args.large
    small = p.get(f"apply_to_served_at_{n_small}", {})
    large = p.get(f"apply_to_served_at_{n_large}", {})
    at_once = p.get(f"ready_{n_small}_at_once", {})
    load = p.get(f"load_to_{n_large}", {})
    restart = p.get(f"complete_to_{n_large}_and_restart", {})
    mem = result.get("memory_at_large", {})
    first = result.get("memory_at_large_first_controller", {})
    cluster = "local control plane: etcd + kube-apiserver on loopback" if c.get("cluster") == "local" else c.get("cluster")
    lines = [
        "# modelgate operator benchmark",
        "",
        f"{c['date']}, commit `{c['commit']}`{' (src/ had uncommitted changes)' if c.get('src_dirty') else ''}, "
        f"{c['nproc']} CPUs ({c['cpu']}), {c['mem_mb']} MiB, Kubernetes {c.get('kubernetes')} ({cluster}). "
        f"Load average (1 min): {c['load_start'][0]:.2f} at the start, mean {c['load1_mean']} and max "
        f"{c['load1_max']} during the run, {c['load_end'][0]:.2f} at the end; the machine is shared, and other "
        f"work counts in these. The run took {result['run_seconds']:.0f} s after the build. Method: "
        "`bench/operator/README.md`; every raw number: `latest.json` beside this file.",
        "",
        "| figure | measured | target | met |",
        "| --- | --- | --- | --- |",
    ]
    for ph, loaded in ((small, n_small), (large, n_large)):
        if not ph:
            continue
        timeouts = f" ({ph['timeouts']} of {ph['probes']} timed out)" if ph["timeouts"] else ""
        lines.append(f"| apply-to-served p50, {loaded:,} aliases loaded ({ph['probes']} probes) | {fmt_s(ph['served_p50_s'])} | | |")
        lines.append(
            f"| apply-to-served p99, {loaded:,} aliases loaded | {fmt_s(ph['served_p99_s'])}{timeouts} | ≤ 1 s | "
            f"{verdict(ph['served_p99_s'], TARGETS['apply_to_served_p99_s'])} |"
        )
    if at_once:
        lines.append(
            f"| {n_small:,} aliases created at once → all `Ready=True` (from the first create) | "
            f"{fmt_s(at_once['all_ready_s'])}{'' if at_once['all_ready'] else ' (not all Ready: ' + str(at_once['ready_now']) + ')'} "
            f"| ≤ 2 s | {verdict(at_once['all_ready_s'], TARGETS['ready_1000_s'])} |"
        )
    lines.append(
        f"| controller RSS, {n_large:,} aliases loaded (restarted controller, after the probes) | "
        f"{fmt_mb(mem.get('controller_rss_mb'))} | ≤ 64 MB | {verdict(mem.get('controller_rss_mb'), TARGETS['controller_rss_mb'])} |"
    )
    if first:
        lines.append(
            f"| controller RSS, {n_large:,} aliases in its store (the controller that loaded them, at the end of the load) | "
            f"{fmt_mb(first.get('controller_rss_mb'))} | ≤ 64 MB | "
            f"{verdict(first.get('controller_rss_mb'), TARGETS['controller_rss_mb'])} |"
        )
    lines.append(
        f"| gateway RSS, {n_large:,} aliases loaded | {fmt_mb(mem.get('gateway_rss_mb'))} | ≤ 100 MB | "
        f"{verdict(mem.get('gateway_rss_mb'), TARGETS['gateway_rss_mb'])} |"
    )
    lines += ["", "MB is MiB (VmRSS / 1024). p99 of 50 probes is their maximum (nearest rank).", "", "## Details", ""]
    details = ["| detail | value |", "| --- | --- |"]
    for ph, loaded in ((small, n_small), (large, n_large)):
        if ph:
            details.append(
                f"| apply-to-served at {loaded:,}: min / p50 / p90 / p99 / max | "
                f"{fmt_s(ph['served_min_s'])} / {fmt_s(ph['served_p50_s'])} / {fmt_s(ph['served_p90_s'])} / "
                f"{fmt_s(ph['served_p99_s'])} / {fmt_s(ph['served_max_s'])} |"
            )
            details.append(
                f"| apply-to-`Ready` (as a watch sees it) at {loaded:,}: p50 / p99 | "
                f"{fmt_s(ph['ready_p50_s'])} / {fmt_s(ph['ready_p99_s'])} |"
            )
            details.append(
                f"| after each probe's delete at {loaded:,}: controller and gateway busy for (p50 / max) | "
                f"{fmt_s(ph['busy_after_delete_p50_s'])} / {fmt_s(ph['busy_after_delete_max_s'])} |"
            )
    baseline = p.get(f"baseline_{n_small}_creates_unwatched", {})
    if baseline:
        details.append(
            f"| {n_small:,} creates with no modelgate process selecting them (apiserver and this client alone) | "
            f"{fmt_s(baseline['create_seconds'])} |"
        )
        if "status_apply_seconds" in baseline:
            details.append(
                f"| … then a server-side-apply status patch on each ({args.controller_concurrency} at a time) / "
                f"an Event for each (4 at a time), nothing else running | {fmt_s(baseline['status_apply_seconds'])} / "
                f"{fmt_s(baseline['event_create_seconds'])} |"
            )
    if at_once:
        details += [
            f"| {n_small:,} at once: the creates themselves ({args.workers} parallel API connections) | {fmt_s(at_once['create_seconds'])} |",
            f"| {n_small:,} at once: first / half / 90 % / all Ready | {fmt_s(at_once['first_ready_s'])} / "
            f"{fmt_s(at_once['half_ready_s'])} / {fmt_s(at_once['ready_p90_s'])} / {fmt_s(at_once['all_ready_s'])} |",
            f"| {n_small:,} at once: all Ready, after the last create returned | {fmt_s(at_once['all_ready_after_last_create_s'])} |",
            f"| {n_small:,} at once: the gateway serving all of them | {fmt_s(at_once['gateway_all_routes_s'])} |",
            f"| {n_small:,} at once: status writes / watch MODIFIED events | "
            f"{at_once['controller_reconciles'].get('ModelAlias/written', 0)} / {at_once['watch_events'].get('MODIFIED', 0)} |",
        ]
    if load:
        if load["all_ready"]:
            outcome = f"all {n_large:,} Ready {fmt_s(load['all_ready_s'])} after the first create"
        else:
            outcome = f"{load['ready_now']:,} of {n_large:,} Ready when the bound ({fmt_s(load['seconds'])}) ran out"
        details += [
            f"| {load['created']:,} more aliases (to {n_large:,}), created at once while the controller runs: the creates | {fmt_s(load['create_seconds'])} |",
            f"| … then | {outcome} |",
        ]
    if restart:
        details += [
            f"| aliases the loading controller had not made Ready, given a copy of a peer's status | {restart['completed_by_copy']:,} |",
            f"| a new controller over {n_large:,} Ready aliases: time to reconcile all / status writes | "
            f"{fmt_s(restart['restarted_controller_all_reconciled_s'])} / {restart['controller_reconciles'].get('ModelAlias/written', 0)} |",
        ]
    settled = result.get("memory_at_large_settled", {})
    details += [
        f"| RSS at {n_large:,}, restarted controller settled (before the probes): controller / gateway | "
        f"{fmt_mb(settled.get('controller_rss_mb'))} / {fmt_mb(settled.get('gateway_rss_mb'))} |",
        f"| RSS high-water mark (VmHWM): loading controller / restarted controller / gateway | "
        f"{fmt_mb(first.get('controller_hwm_mb'))} / {fmt_mb(mem.get('controller_hwm_mb'))} / {fmt_mb(mem.get('gateway_hwm_mb'))} |",
    ]
    steady = result.get("steady_at_large", {})
    if steady:
        details.append(
            f"| steady world at {n_large:,} for {steady['seconds']:.0f} s: reconciles / status writes (watch MODIFIED) | "
            f"{sum(steady['controller_reconciles'].values())} / {steady['watch_events'].get('MODIFIED', 0)} |"
        )
    lines += details
    if load and load.get("progress"):
        lines += [
            "",
            f"Loading {load['created']:,} more aliases with the controller running (every {args.progress_every:.0f} s "
            "after the creates; seconds, alias reconciles, status writes seen by the watch and controller CPU "
            "are counted from the first create):",
            "",
            "| s | Ready | reconciles | watch MODIFIED | controller CPU s | controller RSS |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for row in load["progress"]:
            lines.append(
                f"| {row['t']} | {row['ready']:,} | {row['reconciles']:,} | {row['modified_events']:,} | "
                f"{row['controller_cpu_s']} | {fmt_mb(row['controller_rss_mb'])} |"
            )
    lines += [
        "",
        "Work per phase (controller `/metrics`, `/proc/PID/stat`, `/proc/stat`, and a watch on the aliases):",
        "",
        "| phase | s | alias reconciles: unchanged / written / error | mean alias reconcile | controller CPU s | "
        "gateway CPU s | machine CPU busy | watch MODIFIED | peak RSS controller / gateway |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, ph in p.items():
        r = ph["controller_reconciles"]
        mean = ph["controller_alias_reconcile_mean_ms"]
        lines.append(
            f"| {name}{' (new controller)' if ph.get('controller_restarted') else ''} | {ph['seconds']} | "
            f"{r.get('ModelAlias/unchanged', 0)} / {r.get('ModelAlias/written', 0)} / {r.get('ModelAlias/error', 0)} | "
            f"{'n/a' if mean is None else f'{mean:.1f} ms'} | {ph['controller_cpu_s']} | {ph['gateway_cpu_s']} | "
            f"{ph['machine_cpu_busy_pct']} % | {ph['watch_events'].get('MODIFIED', 0)} | "
            f"{fmt_mb(ph['controller_rss_mb_peak'])} / {fmt_mb(ph['gateway_rss_mb_peak'])} |"
        )
    prof = result.get("controller_profile_during_load") or {}
    if prof.get("top_symbols"):
        lines += [
            "",
            f"Where the loading controller spent its CPU (`perf record -F 99 --call-graph dwarf` for "
            f"{prof['seconds']:.0f} s once all {n_large:,} aliases were created; self time by symbol, top entries):",
            "",
            "| self % | symbol |",
            "| --- | --- |",
        ]
        lines += [f"| {pct} | `{sym.replace('|', '/')}` |" for pct, sym in prof["top_symbols"][:15]]
        if prof.get("top_inclusive"):
            lines += ["", "Inclusive (children), modelgate and kube frames:", "", "| incl. % | symbol |", "| --- | --- |"]
            lines += [f"| {pct} | `{sym.replace('|', '/')}` |" for pct, sym in prof["top_inclusive"][:15]]
    if result["problems"]:
        lines += ["", "## Problems seen in this run", ""] + [f"- {x}" for x in result["problems"]]
    lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--modelgate-bin", required=True)
    parser.add_argument("--at-once", type=int, default=1000, help="aliases created at once (and the small load)")
    parser.add_argument("--large", type=int, default=10000, help="the large load")
    parser.add_argument("--probes", type=int, default=50, help="apply-to-served probes per load")
    parser.add_argument("--poll-ms", type=float, default=5.0, help="gateway poll interval while probing")
    parser.add_argument("--probe-gap-ms", type=float, default=200.0, help="pause between probes")
    parser.add_argument("--workers", type=int, default=8, help="parallel API connections for bulk creates")
    parser.add_argument("--controller-concurrency", type=int, default=16,
                        help="parallel status patches in the baseline (the controller's reconcile concurrency)")
    parser.add_argument("--ready-bound", type=float, default=180.0, help="max seconds for the at-once batch to be Ready")
    parser.add_argument("--load-bound", type=float, default=300.0, help="max seconds for the large load to be Ready")
    parser.add_argument("--probe-budget", type=float, default=150.0, help="max seconds per apply-to-served series")
    parser.add_argument("--settle", type=float, default=5.0, help="pause after each load")
    parser.add_argument("--steady", type=float, default=10.0, help="watched idle interval at the large load")
    parser.add_argument("--time-budget", type=float, default=1080.0, help="max seconds for the whole run")
    parser.add_argument("--progress-every", type=float, default=10.0, help="seconds between progress samples while loading")
    parser.add_argument("--perf", action=argparse.BooleanOptionalAction, default=True,
                        help="profile the controller with perf during the large load (if perf works)")
    parser.add_argument("--perf-seconds", type=float, default=20.0)
    parser.add_argument("--rust-log", default="info,kube=warn")
    parser.add_argument("--process-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the controller and gateway (e.g. MALLOC_ARENA_MAX=2)")
    parser.add_argument("--out", default=None, help="basename in bench/operator/results (default latest)")
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    if args.large < args.at_once:
        parser.error("--large must be at least --at-once")
    here = os.path.dirname(os.path.abspath(__file__))
    results = os.path.join(here, "results")
    os.makedirs(results, exist_ok=True)
    out = args.out or "latest"
    args.log_dir = tempfile.mkdtemp(prefix="modelgate-opbench-logs.")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    bench = Bench(args)
    status = 0
    try:
        bench.run()
    except (BenchError, KeyboardInterrupt, OSError, subprocess.SubprocessError) as e:
        log(f"error: {e}")
        for proc in bench.procs.values():
            log(f"last lines of the {proc.name} log:\n{proc.tail()}")
        status = 1
    finally:
        bench.cleanup()
    if status:
        log(f"no results written (the run did not complete); logs in {args.log_dir}")
        return status
    result = bench.result
    with open(os.path.join(results, f"{out}.json"), "w") as f:
        json.dump(result, f, indent=1, sort_keys=False)
        f.write("\n")
    text = markdown(result, args)
    with open(os.path.join(results, f"{out}.md"), "w") as f:
        f.write(text)
    print(text)
    log(f"wrote {results}/{out}.md and {out}.json; process logs in {args.log_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
