"""Event stream latency: from `EventBus.emit` to a WebSocket client holding the envelope.

How to run (from the repository root, with the dev virtualenv; nothing else may run a
benchmark on the machine at the same time, and the clients share its CPUs):

    /work/venv/bin/python benchmarks/bench_events.py            # 50 clients, 1000 events/s, 5 s
    /work/venv/bin/python benchmarks/bench_events.py --batch    # clients ask for batch=true
    /work/venv/bin/python benchmarks/bench_events.py --emitters 4  # from 4 threads instead
    /work/venv/bin/python benchmarks/bench_events.py --clients 10 --rate 200
    /work/venv/bin/python benchmarks/bench_events.py --client library  # websockets' asyncio client
    /work/venv/bin/python benchmarks/bench_events.py --help

A real platform (SQLite store, fake runtime, no controllers) runs under uvicorn on
127.0.0.1 in its own process; N clients connect to `WS /v1/events` from M other processes;
the platform then emits R events/s for S seconds (event i is due at start + i/R), by
default from its event loop as the controller does, or from E threads sharing the
schedule as API handlers do (concurrent emits then share a commit: group commit,
docs/events.md).
Latency = client receive time - the event's `ts` (stamped by emit before it is persisted),
so it includes the store write, the fan-out and the socket.

The clients run on the same CPUs as the platform, so they are kept light: by default each
is websockets' own sans-I/O protocol (handshake, frame parser, compression) on a bare
asyncio Protocol; `--client library` uses websockets' asyncio client instead, whose
connection layer costs about as much CPU per message as the platform's whole fan-out and
so mostly measures the clients competing with the platform for the two CPUs.

It prints what the emitters achieved (events/s, commits and events per commit, how long
emit held its caller, how far behind schedule they fell), the CPU the platform and the
clients used, latency p50/p90/p99/max, and says plainly when the emitters did not reach
the asked rate, a client overflowed, or other processes took CPU during the run.

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

    def emit_one(i: int, due: float) -> None:
        t0 = time.perf_counter()
        bus.emit(
            "bench.tick",
            f"tick {i}",
            deployment_id="dep-bench",
            name="bench",
            namespace="bench",
            data={"i": i},
        )
        lags.append(max(0.0, t0 - due))
        blocked.append(time.perf_counter() - t0)

    # Event i is due at start + i/rate, paced against the clock (not by sleeping a fixed
    # gap) so the rate holds; an emitter that falls behind emits at once, and its lag is
    # reported.
    def emit_from_thread(j: int, k: int, rate: float, total: int, start: float) -> None:
        for i in range(j, total, k):  # emitter j of k takes i = j, j+k, j+2k, …
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            emit_one(i, due)

    async def emit_from_loop(rate: float, total: int, start: float) -> None:
        for i in range(total):  # as the controller does: a synchronous emit in the loop
            due = start + i / rate
            # Always yield, as the controller does between steps: an emitter that is
            # behind must not hold the loop, or the sockets it feeds never get to send.
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            emit_one(i, due)

    def done(total: int, start: float, commits0: int) -> None:
        emitted.update(
            count=total,
            seconds=time.perf_counter() - start,
            commits=bus.commits - commits0,
            lag=sorted(lags),
            blocked=sorted(blocked),
        )

    def run_threads(rate: float, seconds: float, emitters: int) -> None:
        total, commits0 = int(rate * seconds), bus.commits
        start = time.perf_counter() + 0.01
        threads = [
            threading.Thread(
                target=emit_from_thread, args=(j, emitters, rate, total, start), daemon=True
            )
            for j in range(emitters)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done(total, start, commits0)

    async def run_loop(rate: float, seconds: float) -> None:
        total, commits0 = int(rate * seconds), bus.commits
        start = time.perf_counter() + 0.01
        await emit_from_loop(rate, total, start)
        done(total, start, commits0)

    tasks: set[asyncio.Task[None]] = set()

    @app.post("/bench/emit")
    async def start_emitting(rate: float, seconds: float, emitters: int) -> dict[str, Any]:
        if emitters == 0:
            task = asyncio.ensure_future(run_loop(rate, seconds))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        else:
            args = (rate, seconds, emitters)
            threading.Thread(target=run_threads, args=args, daemon=True).start()
        return {"subscribers": bus.subscriber_count}

    @app.get("/bench/subscribers")
    def subscribers() -> dict[str, int]:
        return {"live": bus.live_subscriber_count}

    @app.get("/bench/emitted")
    def emitted_so_far() -> dict[str, Any]:
        return emitted

    ready.set()
    from a3s_core.api.ws_protocol import A3SWebSocketProtocol

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning",
                ws=A3SWebSocketProtocol)  # as `a3s serve` runs it


# ---------------------------------------------------------------------- the clients


class Tally:
    """What one measuring client saw: a latency per bench event, and whether it was cut
    off (overflow). `on_text` returns True once the client is done."""

    def __init__(self, expect: int, batch: bool, latencies: list[float]) -> None:
        self.expect, self.batch, self.latencies = expect, batch, latencies
        self.got = 0
        self.overflowed = False

    def on_text(self, text: str, now: float) -> bool:
        if not self.batch and '"type":"bench.tick"' in text:
            # The measuring clients share the platform's two CPUs: read the one field
            # needed instead of parsing every envelope whole.
            at = text.index('"ts":"') + 6
            ts = datetime.fromisoformat(text[at : text.index('"', at)])
            self.latencies.append(now - ts.timestamp())
            self.got += 1
            return self.got >= self.expect
        msg = json.loads(text)
        for e in msg if isinstance(msg, list) else [msg]:
            if e.get("type") == "stream.overflow":
                self.overflowed = True  # cut off: it fell queue-size events behind
                return True
            if e.get("type") == "bench.tick":
                self.latencies.append(now - datetime.fromisoformat(e["ts"]).timestamp())
                self.got += 1
        return self.got >= self.expect


def clients(
    port: int, n: int, expect: int, compression: bool, batch: bool, kind: str, out: Any,
    start: Any,
) -> None:
    url = f"ws://127.0.0.1:{port}/v1/events?namespace=bench&heartbeat=60&batch={batch}"

    async def with_library(tally: Tally) -> None:
        """websockets' asyncio client, as an application would use it."""
        from websockets.asyncio.client import connect

        async with connect(
            url,
            additional_headers={"Authorization": f"Bearer {TOKEN}"},
            compression="deflate" if compression else None,
            max_queue=None,
        ) as ws:
            async for raw in ws:
                if tally.on_text(raw if isinstance(raw, str) else raw.decode(), time.time()):
                    return

    async def with_sansio(tally: Tally) -> None:
        """websockets' own sans-I/O protocol (the same handshake, frame parser and
        compression) on a bare asyncio Protocol: the library's connection layer costs the
        shared CPUs about as much per message as the platform's whole fan-out."""
        from websockets.client import ClientProtocol
        from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
        from websockets.frames import Frame, Opcode
        from websockets.uri import parse_uri

        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()
        ws = ClientProtocol(
            parse_uri(url),
            extensions=[ClientPerMessageDeflateFactory()] if compression else None,
            max_size=None,
        )

        class Reader(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport
                request = ws.connect()
                request.headers["Authorization"] = f"Bearer {TOKEN}"
                ws.send_request(request)
                transport.write(b"".join(ws.data_to_send()))

            def data_received(self, data: bytes) -> None:
                now = time.time()
                ws.receive_data(data)
                for event in ws.events_received():
                    if (isinstance(event, Frame) and event.opcode is Opcode.TEXT
                            and tally.on_text(event.data.decode(), now)
                            and not finished.done()):
                        finished.set_result(None)
                if pending := ws.data_to_send():  # pongs, the closing handshake
                    self.transport.write(b"".join(pending))

            def connection_lost(self, exc: Exception | None) -> None:
                if not finished.done():
                    finished.set_result(None)

        transport, _ = await loop.create_connection(Reader, "127.0.0.1", port)
        try:
            await finished
        finally:
            transport.close()

    async def one(latencies: list[float], counts: list[int], overflowed: list[int]) -> None:
        tally = Tally(expect, batch, latencies)
        try:
            await (with_sansio if kind == "sansio" else with_library)(tally)
        finally:
            counts.append(tally.got)
            if tally.overflowed:
                overflowed.append(tally.got)

    async def main() -> None:
        latencies: list[float] = []
        counts: list[int] = []
        overflowed: list[int] = []
        tasks = [asyncio.create_task(one(latencies, counts, overflowed)) for _ in range(n)]
        await asyncio.to_thread(start.wait)
        cpu0 = time.process_time()
        await asyncio.wait(tasks, timeout=120)  # a client still waiting then is reported
        out.put((latencies, counts, time.process_time() - cpu0, len(overflowed)))

    try:
        import uvloop  # the clients are measuring tools: the cheaper, the less they skew

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--rate", type=float, default=1000.0, help="events per second")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument(
        "--emitters",
        type=int,
        default=0,
        help="0 (default): emit from the platform's event loop, as the controller does;\n"
        "N: from N threads sharing the schedule, as API handlers do",
    )
    ap.add_argument("--procs", type=int, default=2, help="client processes")
    ap.add_argument("--compression", action="store_true", help="permessage-deflate on")
    ap.add_argument("--batch", action="store_true", help="batch=true: arrays of envelopes")
    ap.add_argument(
        "--client", choices=["sansio", "library"], default="sansio",
        help="sansio (default): websockets' sans-I/O protocol on a bare asyncio Protocol;\n"
        "library: websockets' asyncio client (about as much CPU per message as the\n"
        "platform's fan-out, on the same two CPUs)",
    )
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
                target=clients,
                args=(port, k, expect, args.compression, args.batch, args.client, out, start),
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
        server_cpu0, all_cpu0, own_cpu0 = _cpu_seconds(server.pid), _all_cpu(), _own_cpu()
        t0 = time.perf_counter()
        httpx.post(
            f"{base}/bench/emit",
            params={"rate": args.rate, "seconds": args.seconds, "emitters": args.emitters},
        )
        latencies: list[float] = []
        counts: list[int] = []
        client_cpu = 0.0
        overflows = 0
        for _ in workers:
            lat, cnt, cpu, over = out.get(timeout=180)
            latencies += lat
            counts += cnt
            client_cpu += cpu
            overflows += over
        wall = time.perf_counter() - t0
        server_cpu = _cpu_seconds(server.pid) - server_cpu0
        all_cpu, own_cpu = _all_cpu() - all_cpu0, _own_cpu() - own_cpu0
        emitted = httpx.get(f"{base}/bench/emitted", timeout=30).json()
        while "commits" not in emitted:  # clients cut off early: wait for the emitter
            time.sleep(0.2)
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
        f"{f'{args.emitters} threads' if args.emitters else 'the event loop'} "
        f"(compression {_on(args.compression)}, batch "
        f"{_on(args.batch)}, {args.client} clients, {cpus} CPUs, load average {load_before:.1f} "
        "before the run)"
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
    others = max(0.0, all_cpu - server_cpu - client_cpu - own_cpu)
    print(
        f"CPU: platform {server_cpu:.1f} s ({server_cpu / len(ms) * 1e6:.0f} µs per envelope "
        f"sent), clients {client_cpu:.1f} s; this benchmark kept {busy:.1f} of {cpus} CPUs busy"
    )
    print(
        f"latency emit→client: p50 {q[49]:.2f} ms  p90 {q[89]:.2f} ms  p99 {q[98]:.2f} ms  "
        f"max {ms[-1]:.2f} ms"
    )
    reached = rate >= 0.95 * args.rate
    if not reached:
        print(
            f"the emitter did NOT keep up: {rate:.0f}/s of {args.rate:.0f}/s asked, so the "
            "latency above is for a lighter load than asked"
        )
    if overflows:
        print(
            f"{overflows} client(s) overflowed (fell a whole queue behind and were told to "
            "resume with since): the stream did not keep up"
        )
    if len(ms) < expect * args.clients:
        print(f"{expect * args.clients - len(ms)} envelopes never arrived within 120 s")
    if others > 0.25 * wall:
        print(
            f"other processes used {others:.1f} CPU-s during the run ({others / wall:.1f} "
            f"of {cpus} CPUs): the figures measure that contention as much as the platform"
        )
    elif busy > 0.9 * cpus:
        print(f"the benchmark itself saturated the {cpus} CPUs (clients included)")
    met = reached and not overflows and len(ms) == expect * args.clients and q[98] < 20
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


def _all_cpu() -> float:
    """CPU seconds the whole machine has spent busy (Linux /proc/stat; 0 elsewhere)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


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
