#!/usr/bin/env python3
"""The translated path beside the pass-through, in one gateway and one run: Chat Completions in,
the Anthropic Messages API out (an `anthropic` provider on the bench's mock upstream), against
the OpenAI pass-through on the same mock.

    python3 bench/translation.py [--modelgate-bin PATH] [--mock-bin PATH] [--requests N] [--rounds N]
                                 [--skip timing] [--profile-dir DIR]

With `--profile-dir`, the callgrind dumps (one per path and kind, `--dump-instr=yes`) are kept in
DIR for `callgrind_annotate --inclusive=yes`.

It needs no load generator beyond Python (bench.py's `SseClient`: one keep-alive connection,
concurrency 1), so it runs wherever the gateway and the mock are built. Figures:

* user-space instructions per request under callgrind (deterministic: other work on the machine
  does not move it), for a plain answer, a stream of 20 events and a burst stream of 200 events,
  on each path; per streamed event = (burst stream − plain request) ÷ 200;
* median latency at concurrency 1 (and time to first chunk of a stream) in interleaved rounds,
  direct to the mock and through each path: *added* = through the gateway − direct;
* the gateway's CPU time per request and per burst stream over the same requests (a timing
  figure: other work on the machine moves it).

Goals (issue 11): translation adds ≤ 30 % to the pass-through's added latency, ≤ 5 µs per
streamed chunk. Writes bench/results/translation-latest.{md,json}.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

PATHS = {"pass-through": "bench-model", "translated": bench.TRANSLATED_MODEL}
BURST = {"pass-through": "bench-burst", "translated": "bench-burst-anthropic"}
KINDS = ("plain", "stream", "burst")


def model_for(path: str, kind: str) -> str:
    return BURST[path] if kind == "burst" else PATHS[path]


def start_gateway(binary: str, cfg: Path, tmp: Path, callgrind: Path | None, dump_instr: bool = False):
    port, admin = bench.free_port(), bench.free_port()
    env = dict(os.environ, BENCH_UPSTREAM_KEY="sk-bench-dummy", RUST_LOG="error")
    argv = [binary, "gateway", "--config", str(cfg), "--listen", f"127.0.0.1:{port}",
            "--admin-listen", f"127.0.0.1:{admin}"]
    if callgrind is not None:
        argv = ["valgrind", "--tool=callgrind", f"--dump-instr={'yes' if dump_instr else 'no'}", f"--callgrind-out-file={callgrind}", *argv]
    p = bench.PROCS.start("translation-gateway" + ("-callgrind" if callgrind else ""), argv,
                          bench.PROXY_CPU, tmp, env=env)
    bench.wait_http_ok(f"http://127.0.0.1:{admin}/readyz", 180, p, "modelgate")
    return p, port


def drive(client: bench.SseClient, model: str, kind: str, n: int) -> list[dict]:
    """n requests of one kind; every answer checked (status, events, [DONE])."""
    out = []
    want = {"plain": 0, "stream": 20, "burst": 200}[kind]
    for _ in range(n):
        r = client.request("/v1/chat/completions", bench.body_for(model, stream=kind != "plain"))
        if r["status"] != 200:
            raise bench.BenchError(f"{model} ({kind}): status {r['status']}")
        if kind != "plain" and (r["chunks"] < want or not r["done"]):
            raise bench.BenchError(f"{model} ({kind}): {r['chunks']} events, [DONE] {r['done']}")
        out.append(r)
    return out


def instructions(binary: str, cfg: Path, tmp: Path, n: int, profile_dir: str | None = None) -> dict:
    d = Path(profile_dir) if profile_dir else tmp / "callgrind"
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("callgrind.out*"):
        old.unlink()
    p, port = start_gateway(binary, cfg, tmp, d / "callgrind.out", dump_instr=profile_dir is not None)
    out: dict = {path: {} for path in PATHS}
    try:
        client = bench.SseClient("127.0.0.1", port)
        for path in PATHS:
            for kind in KINDS:
                drive(client, model_for(path, kind), kind, 50)
        for path in PATHS:
            for kind in KINDS:
                count = n if kind == "plain" else max(20, n // 5)
                bench.run_cmd(["callgrind_control", "-z", str(p.pid)], timeout=60, check=True, capture_output=True)
                drive(client, model_for(path, kind), kind, count)
                before = set(d.glob("callgrind.out.*"))
                bench.run_cmd(["callgrind_control", "-d", str(p.pid)], timeout=60, check=True, capture_output=True)
                new = sorted(set(d.glob("callgrind.out.*")) - before) or sorted(d.glob("callgrind.out.*"))
                total = bench.callgrind_summary(new[-1])
                out[path][kind] = None if total is None else round(total / count)
                if profile_dir:
                    new[-1].rename(d / f"{path}-{kind}.callgrind")
                bench.log(f"translation instructions: {path} {kind} {out[path][kind]} per request")
        client.close()
    finally:
        bench.PROCS.stop(p)
    return out


def timing(binary: str, cfg: Path, tmp: Path, mock_port: int, rounds: int, n: int) -> dict:
    """Latency (c=1, interleaved rounds: direct, pass-through, translated, rotated each round),
    time to first chunk, and the gateway's CPU time per request and per burst stream."""
    p, port = start_gateway(binary, cfg, tmp, None)
    hz = os.sysconf("SC_CLK_TCK")
    names = ["direct", *PATHS]
    p50 = {k: [] for k in names}
    p99 = {k: [] for k in names}
    ttfc = {k: [] for k in names}
    cpu_req = {k: [] for k in PATHS}
    cpu_burst = {k: [] for k in PATHS}
    try:
        clients = {"direct": bench.SseClient("127.0.0.1", mock_port),
                   **{k: bench.SseClient("127.0.0.1", port) for k in PATHS}}
        model = {"direct": "mock-model", **PATHS}
        for k in names:
            drive(clients[k], model[k], "plain", 50)
            drive(clients[k], model[k], "stream", 3)
        for r in range(rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for k in order:
                c0 = bench.cpu_ticks(p.pid)
                res = drive(clients[k], model[k], "plain", n)
                c1 = bench.cpu_ticks(p.pid)
                ms = sorted(x["total_ms"] for x in res)
                p50[k].append(statistics.median(ms))
                p99[k].append(bench.pct(ms, 0.99))
                if k in PATHS:
                    cpu_req[k].append((c1 - c0) / hz / n * 1e6)
                res = drive(clients[k], model[k], "stream", max(5, n // 50))
                ttfc[k].append(statistics.median(x["ttfc_ms"] for x in res))
                if k in PATHS:
                    bursts = max(20, n // 10)
                    c0 = bench.cpu_ticks(p.pid)
                    drive(clients[k], BURST[k], "burst", bursts)
                    cpu_burst[k].append((bench.cpu_ticks(p.pid) - c0) / hz / bursts * 1e6)
            bench.log(f"translation round {r + 1}/{rounds}: " +
                      ", ".join(f"{k} p50 {p50[k][-1]:.3f} ms" for k in names))
        for c in clients.values():
            c.close()
    finally:
        bench.PROCS.stop(p)
    med = lambda v: round(statistics.median(v), 4)  # noqa: E731
    out = {"p50_ms": {k: med(v) for k, v in p50.items()}, "p99_ms": {k: med(v) for k, v in p99.items()},
           "ttfc_ms": {k: med(v) for k, v in ttfc.items()},
           "cpu_us_per_request": {k: round(statistics.median(v), 1) for k, v in cpu_req.items()},
           "cpu_us_per_burst_stream": {k: round(statistics.median(v), 1) for k, v in cpu_burst.items()},
           "rounds": {"p50_ms": p50, "p99_ms": p99, "ttfc_ms": ttfc, "cpu_us_per_request": cpu_req,
                      "cpu_us_per_burst_stream": cpu_burst}}
    for key in ("p50_ms", "p99_ms", "ttfc_ms"):
        out["added_" + key] = {k: round(out[key][k] - out[key]["direct"], 4) for k in PATHS}
    out["cpu_us_per_chunk"] = {k: round((out["cpu_us_per_burst_stream"][k] - out["cpu_us_per_request"][k]) / 200, 3)
                               for k in PATHS}
    return out


def summary(res: dict) -> dict:
    ins, t = res.get("instructions") or {}, res.get("timing") or {}
    s: dict = {}
    pt, tr = ins.get("pass-through", {}), ins.get("translated", {})
    if pt.get("plain") and tr.get("plain"):
        s["instructions_ratio_plain"] = round(tr["plain"] / pt["plain"], 3)
    if pt.get("stream") and tr.get("stream"):
        s["instructions_ratio_stream"] = round(tr["stream"] / pt["stream"], 3)
    if all(x.get(k) for x in (pt, tr) for k in ("plain", "burst")):
        per = {k: (x["burst"] - x["plain"]) / 200 for k, x in (("pass-through", pt), ("translated", tr))}
        s["instructions_per_chunk"] = {k: round(v) for k, v in per.items()}
        s["instructions_added_per_chunk"] = round(per["translated"] - per["pass-through"])
    if t:
        a = t["added_p50_ms"]
        if a["pass-through"] > 0:
            s["added_p50_ratio"] = round(a["translated"] / a["pass-through"], 3)
        s["added_cpu_us_per_chunk"] = round(t["cpu_us_per_chunk"]["translated"] - t["cpu_us_per_chunk"]["pass-through"], 3)
    return s


def render(res: dict, args, load: str) -> str:
    ins, t, s = res.get("instructions") or {}, res.get("timing") or {}, res["summary"]
    pt, tr = ins.get("pass-through", {}), ins.get("translated", {})
    ratio = lambda a, b: f"{b / a:.3f}×" if a and b else "–"  # noqa: E731
    L = ["# Translated path (Chat Completions in, Anthropic Messages out) beside the pass-through", "",
         f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {res['commit']}; one gateway "
         f"(`bench/translation.py`), the bench's mock upstream answering both `/v1/chat/completions` (pass-through) "
         f"and `/v1/messages` (translated) with the same text; gateway on CPU 0, mock and client on CPU 1.", "",
         f"User-space instructions per request (callgrind, {args.requests} plain requests and "
         f"{max(20, args.requests // 5)} streams per row, concurrency 1, one keep-alive connection; deterministic):", "",
         "| request | pass-through | translated | translated ÷ pass-through |", "|---|---|---|---|"]
    for kind, label in (("plain", "plain answer"), ("stream", "stream, 20 events"), ("burst", "burst stream, 200 events")):
        L.append(f"| {label} | {pt.get(kind, 0):,} | {tr.get(kind, 0):,} | {ratio(pt.get(kind), tr.get(kind))} |")
    if "instructions_per_chunk" in s:
        pc = s["instructions_per_chunk"]
        L.append(f"| per streamed event ((burst − plain) ÷ 200) | {pc['pass-through']:,} | {pc['translated']:,} | "
                 f"+{s['instructions_added_per_chunk']:,} |")
    if t:
        L += ["", f"Timing ({args.rounds} interleaved rounds of {args.requests} requests at concurrency 1, medians; "
              f"{load}):", "",
              "| figure | direct | pass-through | translated | translated ÷ pass-through | target |",
              "|---|---|---|---|---|---|"]
        for key, label in (("p50_ms", "p50, ms"), ("p99_ms", "p99, ms"), ("ttfc_ms", "time to first chunk, ms")):
            L.append(f"| {label} | {t[key]['direct']:.3f} | {t[key]['pass-through']:.3f} | {t[key]['translated']:.3f} | | |")
        for key, label, target in (("added_p50_ms", "**added p50, ms**", "≤ 1.3×"), ("added_p99_ms", "added p99, ms", ""),
                                   ("added_ttfc_ms", "added time to first chunk, ms", "≤ 1 ms")):
            a, b = t[key]["pass-through"], t[key]["translated"]
            L.append(f"| {label} | – | {a:.3f} | {b:.3f} | {ratio(a, b) if a > 0 else 'n/a'} | {target} |")
        L.append(f"| CPU per request, µs | – | {t['cpu_us_per_request']['pass-through']:.1f} | "
                 f"{t['cpu_us_per_request']['translated']:.1f} | "
                 f"{ratio(t['cpu_us_per_request']['pass-through'], t['cpu_us_per_request']['translated'])} | |")
        L.append(f"| CPU per streamed event, µs ((burst − plain) ÷ 200) | – | {t['cpu_us_per_chunk']['pass-through']:.2f} | "
                 f"{t['cpu_us_per_chunk']['translated']:.2f} | {s.get('added_cpu_us_per_chunk', 0):+.2f} µs | ≤ 5 µs added |")
    L.append("")
    return "\n".join(L)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modelgate-bin", default=str(bench.GATEWAY_TARGET / "release" / "modelgate"))
    ap.add_argument("--mock-bin", default=str(bench.BENCH_TARGET / "release" / "mock-upstream"))
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--skip", default="", help="comma-separated: instructions, timing")
    ap.add_argument("--out", default=str(bench.HERE / "results" / "translation-latest"))
    ap.add_argument("--profile-dir", default=None, help="keep the callgrind dumps (with --dump-instr=yes) in this "
                    "directory, named PATH-KIND.callgrind, for callgrind_annotate")
    args = ap.parse_args()
    skip = set(args.skip.split(","))
    busy = bench.background_busy(1.0)
    with tempfile.TemporaryDirectory(prefix="modelgate-translation-") as tmpname:
        tmp = Path(tmpname)
        mock_args = argparse.Namespace(chunks=20, chunk_interval_ms=10, burst_chunks=200)
        bench.BENCH_TARGET = Path(args.mock_bin).resolve().parent.parent
        res: dict = {"requests": args.requests, "rounds": args.rounds}
        try:
            _mock, port = bench.start_mock("mock-upstream", tmp, mock_args, 0)
            cfg = tmp / "config"
            bench.write_modelgate_config(cfg, port, port)
            if "instructions" not in skip:
                res["instructions"] = instructions(args.modelgate_bin, cfg, tmp, args.requests, args.profile_dir)
            if "timing" not in skip:
                res["timing"] = timing(args.modelgate_bin, cfg, tmp, port, args.rounds, args.requests)
        finally:
            bench.PROCS.stop_all()
    res["summary"] = summary(res)
    res["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                   cwd=bench.REPO).stdout.strip()
    res["machine_busy_before_percent"] = round(busy, 1)
    load = (f"other work kept {busy:.0f} % of the CPUs busy just before the run"
            + (" — noisy: compare the instruction counts" if busy > 10 else ""))
    Path(args.out + ".json").write_text(json.dumps(res, indent=2) + "\n")
    md = render(res, args, load)
    Path(args.out + ".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
