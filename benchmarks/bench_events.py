"""Event stream latency: from `EventBus.emit` to a WebSocket client holding the envelope.

How to run (from the repository root, with the dev virtualenv; nothing else may run a
benchmark on the machine at the same time, and the clients share its CPUs):

    /work/venv/bin/python benchmarks/bench_events.py            # 50 clients, 1000 events/s, 5 s
    /work/venv/bin/python benchmarks/bench_events.py --batch    # clients ask for batch=true
    /work/venv/bin/python benchmarks/bench_events.py --emitters 1 --clients 10 --rate 200
    /work/venv/bin/python benchmarks/bench_events.py --help

A real platform (SQLite store, fake runtime, no controllers) runs under uvicorn on
127.0.0.1 in its own process; N clients connect to `WS /v1/events` from M other processes;
the platform then emits R events/s for S seconds from E threads sharing the schedule
(event i is due at start + i/R), as the controller loop, API handlers and span processor
do at once; concurrent emits share a commit (group commit, docs/events.md).
Latency = client receive time - the event's `ts` (stamped by emit before it is persisted),
so it includes the store write, the fan-out and the socket.

It prints what the emitters achieved (events/s, commits and events per commit, how long
emit held its caller, how far behind schedule they fell), the CPU the platform and the
clients used, latency p50/p90/p99/max, and says plainly when the emitters did not reach
the asked rate or the machine was saturated (then the latency is not the asked load's).

Target: p99 < 20 ms with 50 clients and 1,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

TOKEN = "a3s-bench-token"


# ---------------------------------------------------------------------- the platform


def serve(port: int, data_dir: str, ready: Any) -> None:
    import uvicorn
    from fastapi import FastAPI

    from a3s_core.api.app import create_app
    from a3s_core.plugins import Plugins
    from a3s_core.settings import Settings
    from a3s_core.testing import FakeRuntimePlugin

    plugins = Plugins()
    plugins.register(FakeRuntimePlugin(), name="bench-fake-runtime")
    settings = Settings(
        data_dir=Path(data_dir), admin_token=TOKEN, runtime="fake", controllers=False, port=port
    )
    app: FastAPI = create_app(settings, plugins)
    bus = app.state.platform.bus
    emitted: dict[str, Any] = {"count": 0, "seconds": 0.0}
    lags: list[float] = []  # how late each emit started against its schedule
    blocked: list[float] = []  # how long each emit held its caller (its commit)

    def emit(j: int, k: int, rate: float, total: int, start: float) -> None:
        # Event i is due at start + i/rate; emitter j of k takes i = j, j+k, j+2k, …
        # Paced against the clock, not by sleeping a fixed gap, so the rate holds; an
        # emitter that falls behind emits at once, and its lag is reported.
        for i in range(j, total, k):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            t0 = time.perf_counter()
            bus.emit(
                "bench.tick",
                f"tick {i}",
                deployment_id="dep-bench",
                name="bench",
                namespace="bench",
                data={"i": i},
            )
            t1 = time.perf_counter()
            lags.append(max(0.0, t0 - due))
            blocked.append(t1 - t0)

    def run(rate: float, seconds: float, emitters: int) -> None:
        total = int(rate * seconds)
        commits0 = bus.commits
        start = time.perf_counter() + 0.01
        threads = [
            threading.Thread(target=emit, args=(j, emitters, rate, total, start), daemon=True)
            for j in range(emitters)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        emitted.update(
            count=total,
            seconds=time.perf_counter() - start,
            commits=bus.commits - commits0,
            lag=sorted(lags),
            blocked=sorted(blocked),
        )

    @app.post("/bench/emit")
    def start_emitting(rate: float, seconds: float, emitters: int) -> dict[str, Any]:
        threading.Thread(target=run, args=(rate, seconds, emitters), daemon=True).start()
        return {"subscribers": bus.subscriber_count}

    @app.get("/bench/subscribers")
    def subscribers() -> dict[str, int]:
        return {"live": bus.live_subscriber_count}

    @app.get("/bench/emitted")
    def emitted_so_far() -> dict[str, Any]:
        return emitted

    ready.set()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# ---------------------------------------------------------------------- the clients


def clients(
    port: int, n: int, expect: int, compression: bool, batch: bool, out: Any, start: Any
) -> None:
    from websockets.asyncio.client import connect

    async def one(latencies: list[float], counts: list[int]) -> None:
        url = f"ws://127.0.0.1:{port}/v1/events?namespace=bench&heartbeat=60&batch={batch}"
        async with connect(
            url,
            additional_headers={"Authorization": f"Bearer {TOKEN}"},
            compression="deflate" if compression else None,
            max_queue=None,
        ) as ws:
            got = 0
            async for raw in ws:
                now = time.time()
                msg = json.loads(raw)
                for e in msg if isinstance(msg, list) else [msg]:
                    if e.get("type") == "stream.overflow":
                        raise SystemExit("a client overflowed: the platform could not keep up")
                    if e.get("type") == "bench.tick":
                        latencies.append(now - datetime.fromisoformat(e["ts"]).timestamp())
                        got += 1
                if got >= expect:
                    break
            counts.append(got)

    async def main() -> None:
        latencies: list[float] = []
        counts: list[int] = []
        tasks = [asyncio.create_task(one(latencies, counts)) for _ in range(n)]
        await asyncio.to_thread(start.wait)
        cpu0 = time.process_time()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
        out.put((latencies, counts, time.process_time() - cpu0))

    asyncio.run(main())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--rate", type=float, default=1000.0, help="events per second")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument(
        "--emitters", type=int, default=4, help="threads emitting (they share the rate)"
    )
    ap.add_argument("--procs", type=int, default=2, help="client processes")
    ap.add_argument("--compression", action="store_true", help="permessage-deflate on")
    ap.add_argument("--batch", action="store_true", help="batch=true: arrays of envelopes")
    args = ap.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from a3s_core.testing import FakeRuntimePlugin  # noqa: F401  (fail early if missing)

    ctx = mp.get_context("spawn")
    port = _free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        ready = ctx.Event()
        server = ctx.Process(target=serve, args=(port, data_dir, ready), daemon=True)
        server.start()
        ready.wait(30)
        base = f"http://127.0.0.1:{port}"
        _wait_up(base)
        expect = int(args.rate * args.seconds)
        out: Any = ctx.Queue()
        start = ctx.Event()
        per = [
            args.clients // args.procs + (i < args.clients % args.procs) for i in range(args.procs)
        ]
        workers = [
            ctx.Process(
                target=clients, args=(port, k, expect, args.compression, args.batch, out, start)
            )
            for k in per
            if k
        ]
        for w in workers:
            w.start()
        deadline = time.monotonic() + 60
        while httpx.get(f"{base}/bench/subscribers").json()["live"] < args.clients:
            if time.monotonic() > deadline:
                raise SystemExit("clients did not connect")
            time.sleep(0.05)
        load_before = os.getloadavg()[0]
        start.set()
        server_cpu0 = _cpu_seconds(server.pid)
        t0 = time.perf_counter()
        httpx.post(
            f"{base}/bench/emit",
            params={"rate": args.rate, "seconds": args.seconds, "emitters": args.emitters},
        )
        latencies: list[float] = []
        counts: list[int] = []
        client_cpu = 0.0
        for _ in workers:
            lat, cnt, cpu = out.get(timeout=180)
            latencies += lat
            counts += cnt
            client_cpu += cpu
        wall = time.perf_counter() - t0
        server_cpu = _cpu_seconds(server.pid) - server_cpu0
        emitted = httpx.get(f"{base}/bench/emitted", timeout=30).json()
        for w in workers:
            w.join(10)
        server.terminate()
        server.join(10)

    ms = sorted(x * 1000 for x in latencies)
    q = statistics.quantiles(ms, n=100)
    cpus = os.cpu_count() or 1
    print(
        f"{args.clients} clients, {args.rate:.0f} events/s asked for {args.seconds:.0f} s from "
        f"{args.emitters} emitting thread(s) (compression {_on(args.compression)}, batch "
        f"{_on(args.batch)}, {cpus} CPUs, load average {load_before:.1f} before the run)"
    )
    rate = emitted["count"] / max(emitted["seconds"], 1e-9)
    commits = max(emitted["commits"], 1)
    lag, blocked = emitted["lag"], emitted["blocked"]
    print(
        f"emitter: {emitted['count']:.0f} events in {emitted['seconds']:.2f} s = {rate:.0f}/s "
        f"achieved, in {commits} commits ({emitted['count'] / commits:.1f} events each); "
        f"emit held its caller p50 {_pct(blocked, 50):.2f} ms, p99 {_pct(blocked, 99):.2f} ms; "
        f"behind schedule p99 {_pct(lag, 99):.1f} ms"
    )
    print(f"delivered {len(ms)} of {expect * args.clients} envelopes in {wall:.1f} s")
    busy = (server_cpu + client_cpu) / max(wall, 1e-9)
    print(
        f"CPU: platform {server_cpu:.1f} s ({server_cpu / len(ms) * 1e6:.0f} µs per envelope "
        f"sent), clients {client_cpu:.1f} s; this benchmark kept {busy:.1f} of {cpus} CPUs busy"
    )
    print(
        f"latency emit→client: p50 {q[49]:.2f} ms  p90 {q[89]:.2f} ms  p99 {q[98]:.2f} ms  "
        f"max {ms[-1]:.2f} ms"
    )
    kept_up = rate >= 0.95 * args.rate
    if not kept_up:
        print(
            f"the emitter did NOT keep up: {rate:.0f}/s of {args.rate:.0f}/s asked, so the "
            "latency above is for a lighter load than asked"
        )
    if busy > 0.9 * cpus or load_before > 0.5 * cpus:
        print(
            "the machine was saturated (CPU above, or other work before the run): the "
            "figures measure this machine's contention as much as the platform"
        )
    met = kept_up and q[98] < 20
    print(f"target p99 < 20 ms at {args.rate:.0f} events/s:", "met" if met else "NOT met")


def _pct(sorted_ms: list[float], p: int) -> float:
    """The p-th percentile of sorted seconds, in ms."""
    if not sorted_ms:
        return 0.0
    return sorted_ms[min(len(sorted_ms) - 1, len(sorted_ms) * p // 100)] * 1000


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def _cpu_seconds(pid: int | None) -> float:
    """user + system CPU of a process (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_up(base: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the platform did not start")
        time.sleep(0.05)


if __name__ == "__main__":
    main()
