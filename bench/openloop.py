#!/usr/bin/env python3
"""A small open-loop load generator: RATE requests/s for SECONDS over CONNS keep-alive connections;
request i is due at t0 + i/RATE and goes out on the first free connection (latency counted from
the due time, like oha --latency-correction). Prints requests, p50/p99 ms. For bench/syscalls.py:
a few thousand requests a second at most; not a benchmark figure.

    python3 bench/openloop.py HOST PORT PATH BODY RATE SECONDS CONNECTIONS"""
import asyncio, sys, time, json
host, port, path, body, rate, seconds, conns = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].encode(), float(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
req = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
async def one(reader, writer):
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":")[1])
    await reader.readexactly(n)
    return head.startswith(b"HTTP/1.1 200")
async def main():
    free = asyncio.Queue()
    for _ in range(conns):
        free.put_nowait(await asyncio.open_connection(host, port))
    lat, ok = [], 0
    t0 = time.perf_counter(); total = int(rate * seconds)
    async def fire(due):
        nonlocal ok
        c = await free.get()
        try:
            ok += await one(*c)
        finally:
            free.put_nowait(c)
        lat.append(time.perf_counter() - due)
    tasks = []
    for i in range(total):
        due = t0 + i / rate
        d = due - time.perf_counter()
        if d > 0:
            await asyncio.sleep(d)
        tasks.append(asyncio.ensure_future(fire(due)))
    await asyncio.gather(*tasks)
    lat.sort()
    print(json.dumps({"requests": total, "ok": ok, "p50_ms": lat[len(lat)//2]*1e3, "p99_ms": lat[int(len(lat)*0.99)]*1e3, "elapsed": time.perf_counter()-t0}))
asyncio.run(main())
