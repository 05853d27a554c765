"""What the gateway costs: the same load against (a) a replica directly, (b) the A3S gateway
in front of it (API-key auth, least-queue policy, metrics scraping all on), and (c)
vllm-router (Rust) in front of the same replica, at 4 and 32 concurrent requests, and at
4 clients paced to --paced-rate requests/s (so the added latency is also measured with CPU
to spare: on a small machine the closed-loop levels keep every core busy).

    /work/venv/bin/python benchmarks/bench_gateway.py            # streaming and plain chat
    /work/venv/bin/python benchmarks/bench_gateway.py --mode stream --requests 2000
    /work/venv/bin/python benchmarks/bench_gateway.py --fake-replica --paced-rate 0
    /work/venv/bin/python benchmarks/bench_gateway.py --proxy-bound --workers 2
    pip install vllm-router                                       # to compare with it

`--proxy-bound` puts two backends that answer in microseconds (micro_backend.py) behind
every path instead of one engine replica, so the proxy itself is the bottleneck, and prints
the gateway's figures as ratios of vllm-router's from the same run: requests/s at 32,
added p50 at 4, p99 at 32, and for streaming (`--chunks`, 64) the added time per chunk.
`--workers N` runs the gateway as `a3s serve --workers N` (N processes on one socket).

`--publish-interval S` measures what publishing traffic to the store costs (publish.py):
two gateways in the same run, interleaved, one publishing every S seconds and one with
publishing off (`A3S_TRAFFIC_PUBLISH_INTERVAL_S=0`), and prints the gateway's CPU per
request for each and their ratio (vllm-router is left out of that run).

    /work/venv/bin/python benchmarks/bench_gateway.py --publish-interval 2 --mode plain

The gateway is the app `a3s serve` runs (create_app, on uvicorn with uvloop + httptools).

The replica is the engine simulator (`a3s_engine_sim`, vLLM dialect) when it is installed,
else the fake replica of the gateway tests. Every piece runs in its own process on
127.0.0.1; the load generator is this process (one keep-alive connection per concurrent
client; asyncio + httptools by default, `--client aiohttp` for aiohttp, which costs
several times the CPU per request on the same CPUs). Targets: the gateway adds at most
1 ms p50 over direct at 4 concurrent requests, and reaches at least half of vllm-router's
requests/s at 32.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_procs import cpu_seconds, spawn, started, wait_ready
from http_load import run_load

from a3s_core.net import free_port

HERE = Path(__file__).resolve().parent
FAKE_REPLICA = HERE.parent / "tests" / "gateway" / "gateway_fake_replica.py"
MODEL = "bench"
NAMESPACE = "bench"


def chat_body(max_tokens: int, stream: bool) -> bytes:
    return json.dumps({
        "model": MODEL, "messages": [{"role": "user", "content": "Say something short."}],
        "max_tokens": max_tokens, "stream": stream,
    }).encode()


# ---------------------------------------------------------------- the gateway process


def bench_plugins() -> object:
    """The installed plugins plus the fake runtime (built in each gateway worker)."""
    from a3s_core.plugins import Plugins
    from a3s_core.testing import FakeRuntimePlugin

    plugins = Plugins()
    plugins.register(FakeRuntimePlugin(), name="bench-fake-runtime")
    return plugins


def serve_gateway(port: int, replica_urls: list[str], key: str, engine: str, db_dir: str,
                  workers: int = 1, publish_interval_s: float | None = None) -> None:
    """Child process: the platform app exactly as `a3s serve` builds it (create_app: API,
    gateway, store, events), served as `a3s serve` serves it (a3s_core/api/server.py:
    uvicorn with uvloop + httptools), with controllers off and one running deployment, its
    key and its replicas written to its store beforehand."""
    from sqlmodel import Session

    from a3s_core.api import server
    from a3s_core.api.app import create_app
    from a3s_core.keys import display_prefix, hash_key
    from a3s_core.plugins import Plugins
    from a3s_core.settings import Settings
    from a3s_core.store import Store
    from a3s_core.store.tables import ApiKeyRow, DeploymentRow, ReplicaRow
    from a3s_core.testing import FakeRuntimePlugin

    settings = Settings(data_dir=Path(db_dir), port=port, runtime="fake", controllers=False,
                        admin_token="bench-admin-token")
    if publish_interval_s is not None:  # else the default (2 s), as `a3s serve` runs
        settings = settings.model_copy(update={"traffic_publish_interval_s": publish_interval_s})
    store = Store.open(settings.db_url)  # creates and migrates the schema
    with Session(store.engine) as s:
        s.add(DeploymentRow(  # type: ignore[call-arg]
            id="dep-bench", name=MODEL, namespace=NAMESPACE, model="bench/model", engine=engine,
            spec={"name": MODEL, "model": "bench/model", "engine": engine}, status="running",
        ))
        s.flush()
        for i, url in enumerate(replica_urls):
            s.add(ReplicaRow(id=f"bench-r{i}", deployment_id="dep-bench", state="ready",
                             url=url, gpu="A100-80GB", tensor_parallel_size=1))
        s.add(ApiKeyRow(id="key-bench", deployment_id="dep-bench", key_hash=hash_key(key),
                        prefix=display_prefix(key)))
        s.commit()
    store.close()

    if workers > 1:  # `a3s serve --workers N`: the supervisor and N worker processes
        from a3s_core.gateway.workers import Supervisor

        settings = settings.model_copy(update={"workers": workers})
        sys.exit(Supervisor(settings, workers, plugins=bench_plugins).run())  # type: ignore[arg-type]
    plugins = Plugins()
    plugins.register(FakeRuntimePlugin(), name="bench-fake-runtime")
    app = create_app(settings, plugins)
    server.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def replica_argv(port: int, use_sim: bool, max_tokens: int) -> list[str]:
    if use_sim:
        # A 1B-parameter model on an A100, delays scaled to a tenth and without jitter:
        # a steady replica, so differences between the three paths are the paths'.
        return [sys.executable, "-m", "a3s_engine_sim", "--port", str(port),
                "--served-model-name", MODEL, "--dialect", "vllm", "--gpu", "A100-80GB",
                "--bandwidth-gbs", "2039", "--bf16-tflops", "312", "--parameters", "1e9",
                "--max-num-seqs", "256", "--max-queue", "100000", "--jitter", "0",
                "--time-scale", "0.1", "--default-max-tokens", str(max_tokens)]
    return [sys.executable, str(FAKE_REPLICA), "--port", str(port), "--model", MODEL,
            "--ttft-s", "0.005", "--token-s", "0.0005", "--tokens", str(max_tokens)]


# ---------------------------------------------------------------- load


@dataclass
class Result:
    target: str
    concurrency: int
    mode: str
    ok: int
    failed: int
    seconds: float
    latencies: list[float]
    proxy_cpu_s: float | None = None  # CPU the proxy process (gateway / router) spent
    rate: float | None = None  # requests/s the clients were paced to (None: closed loop)
    replicas_cpu_s: float = 0.0  # CPU the replica processes spent (the backends)
    client_cpu_s: float = 0.0  # CPU the load generator (this process) spent

    @property
    def cpu_us_per_request(self) -> float | None:
        if self.proxy_cpu_s is None or not self.ok:
            return None
        return self.proxy_cpu_s / self.ok * 1e6

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        values = sorted(self.latencies)
        return values[min(len(values) - 1, max(0, round(q / 100 * len(values)) - 1))] * 1000


# ---------------------------------------------------------------- main


async def bench(args: argparse.Namespace) -> int:
    use_sim = importlib.util.find_spec("a3s_engine_sim") is not None and not args.fake_replica
    router_bin = shutil.which("vllm-router") or shutil.which(
        "vllm-router", path=str(Path(sys.executable).parent))
    key = "sk-a3s-bench-" + os.urandom(16).hex()
    workdir = Path(tempfile.mkdtemp(prefix="a3s-bench-"))
    replica_port, gateway_port, router_port = free_port(), free_port(), free_port()
    replica_url = f"http://127.0.0.1:{replica_port}"
    engine = "sim" if use_sim and not args.proxy_bound else "vllm"
    replica_urls = [replica_url]

    with started([]) as procs:
        if args.proxy_bound:  # two backends that answer in microseconds
            replica_urls.append(f"http://127.0.0.1:{free_port()}")
            for i, url in enumerate(replica_urls):
                backend = spawn(f"backend{i}", [sys.executable, str(HERE / "micro_backend.py"),
                                                "--port", url.rsplit(":", 1)[1],
                                                "--chunks", str(args.chunks),
                                                "--chunk-gap-ms", str(args.chunk_gap_ms)],
                                  workdir)
                procs.append(backend)
                await wait_ready(url + "/health", backend)
        else:
            replica = spawn("replica", replica_argv(replica_port, use_sim, args.max_tokens),
                            workdir)
            procs.append(replica)
            await wait_ready(replica_url + "/health", replica)

        auth = {"Authorization": f"Bearer {key}"}
        targets = {"direct": (replica_url + "/v1/chat/completions", {})}
        pids: dict[str, int] = {}
        gateways = {"gateway": (gateway_port, "")}
        if args.publish_interval is not None:  # the same gateway, publishing on and off
            gateways = {PUB_ON: (gateway_port, str(args.publish_interval)),
                        PUB_OFF: (free_port(), "0")}
        for name, (port, interval) in gateways.items():
            db_dir = workdir / name
            db_dir.mkdir()
            gateway = spawn(name, [sys.executable, __file__, "--serve-gateway", str(port),
                                   ",".join(replica_urls), key, engine, str(db_dir),
                                   str(args.workers), interval],
                            workdir)
            procs.append(gateway)
            gateway_base = f"http://127.0.0.1:{port}/d/{NAMESPACE}/{MODEL}/v1"
            await wait_ready(gateway_base + "/models", gateway, headers=auth)
            targets[name] = (gateway_base + "/chat/completions", auth)
            pids[name] = gateway.popen.pid
        router_note = ""
        if args.publish_interval is not None:
            router_note = "vllm-router: left out of a --publish-interval run"
        elif router_bin is None:
            router_note = ("vllm-router: not installed (pip install vllm-router); "
                           "reporting direct and gateway only")
        else:
            router = spawn("vllm-router", [router_bin, "--host", "127.0.0.1", "--port",
                                           str(router_port), "--worker-urls", *replica_urls,
                                           "--policy", "round_robin", "--log-level", "warning"],
                           workdir)
            procs.append(router)
            pids["vllm-router"] = router.popen.pid
            try:
                await wait_ready(f"http://127.0.0.1:{router_port}/v1/chat/completions", router,
                                 body={"model": MODEL, "max_tokens": 1,
                                       "messages": [{"role": "user", "content": "hi"}]})
                targets["vllm-router"] = (f"http://127.0.0.1:{router_port}/v1/chat/completions",
                                          {})
            except RuntimeError as exc:
                router_note = f"vllm-router could not be run here ({exc}); see {workdir}"

        if args.proxy_bound:
            print(f"replicas: 2 micro backends (answers in microseconds, {args.chunks} chunks "
                  f"a stream) at {', '.join(replica_urls)}; direct = the first")
        else:
            print(f"replica: {'a3s_engine_sim (vLLM dialect)' if use_sim else 'fake replica'} "
                  f"at {replica_url}, {args.max_tokens} tokens per answer")
        print(f"gateway: A3S (uvicorn+uvloop, {args.workers} worker process(es), auth + "
              f"least-queue + scraping) at {gateway_base}")
        print(f"load generator: {args.client} (this process)")
        if router_note:
            print(router_note)
        elif "vllm-router" in targets:
            print(f"vllm-router: {router_bin} (policy round_robin)")
        print(f"logs: {workdir}\n")
        header = f"{'mode':<7}{'conc':>9}  {'target':<12}{'ok':>7}{'fail':>6}" \
                 f"{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'proxy CPU/req':>15}" \
                 f"{'replicas':>10}{'client':>8}"
        # Every process's CPU, per request: on shared cores what one spends the others lack.
        replica_pids = [p.popen.pid for p in procs if p.name.startswith(("backend", "replica"))]
        print(header)
        print("-" * len(header))
        results: list[Result] = []
        modes = ["stream", "plain"] if args.mode == "both" else [args.mode]
        levels: list[tuple[int, float | None]] = [(c, None) for c in args.concurrency]
        if args.paced_rate and 4 in args.concurrency:
            levels.insert(args.concurrency.index(4) + 1, (4, args.paced_rate))
        for mode in modes:
            for conc, rate in levels:
                requests = args.requests if rate is None else min(
                    args.requests, int(args.paced_rate * args.paced_seconds))
                # Interleaved rounds: a burst of load from elsewhere on the machine falls
                # on every target alike instead of on whichever ran at that moment.
                acc = {name: Result(name, conc, mode, 0, 0, 0.0, [], 0.0, rate)
                       for name in targets}
                for _ in range(args.rounds):
                    for name, (url, headers) in targets.items():
                        pid = pids.get(name)
                        cpu0 = cpu_seconds(pid) if pid else None
                        rep0 = sum(cpu_seconds(p) or 0.0 for p in replica_pids)
                        own0 = time.process_time()
                        stream = mode == "stream"
                        ok, failed, secs, lat = await run_load(
                            args.client, url, headers, chat_body(args.max_tokens, stream),
                            stream, conc, requests // args.rounds, args.warmup // args.rounds,
                            rate)
                        cpu1 = cpu_seconds(pid) if pid else None
                        own1 = time.process_time()
                        rep1 = sum(cpu_seconds(p) or 0.0 for p in replica_pids)
                        r = acc[name]
                        share = ok / (ok + args.warmup // args.rounds) if ok else 0.0
                        r.replicas_cpu_s += (rep1 - rep0) * share
                        r.client_cpu_s += (own1 - own0) * share
                        r.ok, r.failed, r.seconds = r.ok + ok, r.failed + failed, r.seconds + secs
                        r.latencies += lat
                        if cpu0 is None or cpu1 is None:
                            r.proxy_cpu_s = None
                        elif r.proxy_cpu_s is not None:
                            # Includes the warm-up's share, so it is an upper bound.
                            r.proxy_cpu_s += (cpu1 - cpu0) * ok / (ok + args.warmup // args.rounds)
                for name, r in acc.items():
                    results.append(r)
                    cpu = r.cpu_us_per_request
                    cpu_text = f"{cpu:>12.0f} us" if cpu is not None else f"{'-':>15}"
                    per = 1e6 / r.ok if r.ok else 0.0
                    cpu_text += f"{r.replicas_cpu_s * per:>7.0f} us{r.client_cpu_s * per:>5.0f} us"
                    level = f"{conc}" if rate is None else f"{conc}@{rate:.0f}/s"
                    print(f"{mode:<7}{level:>9}  {name:<12}{r.ok:>7}{r.failed:>6}{r.rps:>9.0f}"
                          f"{r.pct(50):>9.2f}{r.pct(99):>9.2f}{cpu_text}", flush=True)
            print()
        if args.publish_interval is not None:
            return publish_cost(results, args.publish_interval)
        if args.proxy_bound:
            return parity(results, args.chunks)
        return verdict(results, router_note)


PUB_ON, PUB_OFF = "gw-publish", "gw-no-pub"


def publish_cost(results: list[Result], interval_s: float) -> int:
    """The gateway's CPU per request publishing every `interval_s` over that with
    publishing off, per mode and level: both ran interleaved in the same rounds."""
    for on in (r for r in results if r.target == PUB_ON):
        off = next(r for r in results if r.target == PUB_OFF and
                   (r.mode, r.concurrency, r.rate) == (on.mode, on.concurrency, on.rate))
        a, b = on.cpu_us_per_request, off.cpu_us_per_request
        level = f"{on.concurrency}" if on.rate is None else f"{on.concurrency}@{on.rate:.0f}/s"
        if a is None or b is None or not b:
            print(f"[{on.mode} {level}] gateway CPU per request: not measured (no /proc)")
            continue
        print(f"[{on.mode} {level}] gateway CPU per request, publishing every {interval_s:g}s "
              f"vs off: {a:.0f} us / {b:.0f} us = {a / b:.3f}x ({a - b:+.0f} us)")
    return 0


def parity(results: list[Result], chunks: int) -> int:
    """The proxy-bound figures as ratios of vllm-router's (issue 16's parity targets)."""
    def get(target: str, conc: int, mode: str) -> Result | None:
        return next((r for r in results if (r.target, r.concurrency, r.mode, r.rate)
                     == (target, conc, mode, None)), None)

    missed = 0
    for mode in sorted({r.mode for r in results}):
        d4, g4, r4 = get("direct", 4, mode), get("gateway", 4, mode), get("vllm-router", 4, mode)
        g32, r32 = get("gateway", 32, mode), get("vllm-router", 32, mode)
        if not (r4 and r32 and d4 and g4 and g32):
            print(f"[{mode}] no vllm-router figures: ratios not computed")
            continue
        rps = g32.rps / r32.rps if r32.rps else float("nan")
        added_g, added_r = g4.pct(50) - d4.pct(50), r4.pct(50) - d4.pct(50)
        p99 = g32.pct(99) / r32.pct(99)
        checks = [(f"req/s at 32: {g32.rps:.0f} / {r32.rps:.0f} = {rps:.2f}x (target >= 1.00)",
                   rps >= 1.0),
                  (f"added p50 at 4: {added_g:+.2f} ms vs {added_r:+.2f} ms (target <= "
                   f"{added_r + 0.1:+.2f})", added_g <= added_r + 0.1),
                  (f"p99 at 32: {g32.pct(99):.2f} / {r32.pct(99):.2f} ms = {p99:.2f}x "
                   "(target <= 1.5)", p99 <= 1.5)]
        if mode == "stream":
            per_g, per_r = added_g / chunks * 1000, added_r / chunks * 1000
            print(f"[stream] added per chunk at 4: gateway {per_g:+.1f} us, vllm-router "
                  f"{per_r:+.1f} us")
        for text, good in checks:
            missed += not good
            print(f"[{mode}] {text} {'MET' if good else 'MISSED'}")
    return 1 if missed else 0


def verdict(results: list[Result], router_note: str) -> int:
    def get(target: str, conc: int, mode: str, paced: bool = False) -> Result | None:
        return next((r for r in results if (r.target, r.concurrency, r.mode)
                     == (target, conc, mode) and (r.rate is not None) == paced), None)

    failures = 0
    for mode in sorted({r.mode for r in results}):
        for paced in (False, True):
            direct, gw = get("direct", 4, mode, paced), get("gateway", 4, mode, paced)
            if not (direct and gw):
                continue
            added = gw.pct(50) - direct.pct(50)
            router = get("vllm-router", 4, mode, paced)
            ref = f"; vllm-router {router.pct(50) - direct.pct(50):+.2f} ms" if router else ""
            how = (f"paced to {gw.rate:.0f} req/s, spare CPU" if paced
                   else "closed loop, every core busy")
            good = added <= 1.0
            if paced or not any(r.rate is not None for r in results):
                failures += not good  # the target is judged where the run queue is not
            print(f"[{mode}] gateway p50 over direct at 4 concurrent ({how}): {added:+.2f} ms"
                  f"{ref} (target <= 1 ms) {'MET' if good else 'MISSED'}")
        router, gw32 = get("vllm-router", 32, mode), get("gateway", 32, mode)
        if router and gw32:
            ratio = gw32.rps / router.rps if router.rps else float("nan")
            good = ratio >= 0.5
            failures += not good
            print(f"[{mode}] gateway req/s at 32 vs vllm-router: {gw32.rps:.0f} / "
                  f"{router.rps:.0f} = {ratio:.2f} (target >= 0.5) {'MET' if good else 'MISSED'}")
        elif router_note:
            print(f"[{mode}] gateway vs vllm-router at 32: not measured ({router_note})")
    if any(r.failed for r in results):
        print("some requests failed: see the 'fail' column and the logs")
    return 1 if failures else 0


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-gateway":
        port, url, key, engine, db_dir, workers, interval = sys.argv[2:9]
        serve_gateway(int(port), url.split(","), key, engine, db_dir, int(workers),
                      float(interval) if interval else None)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 32])
    parser.add_argument("--requests", type=int, default=1600,
                        help="measured requests per target and level (after warm-up)")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4,
                        help="interleave the targets in this many rounds per level")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--mode", choices=["stream", "plain", "both"], default="both")
    parser.add_argument("--client", choices=["light", "aiohttp"], default="light",
                        help="load generator: light (asyncio + httptools, the default) or "
                             "aiohttp (several times the CPU per request, on the same CPUs)")
    parser.add_argument("--paced-rate", type=float, default=80.0,
                        help="also run 4 clients paced to this many requests/s in all "
                             "(0: skip), so the latency is measured with spare CPU")
    parser.add_argument("--paced-seconds", type=float, default=8.0,
                        help="measured seconds of the paced level per target")
    parser.add_argument("--proxy-bound", action="store_true",
                        help="two micro backends behind every path: the proxy is the "
                             "bottleneck; figures as ratios of vllm-router's")
    parser.add_argument("--chunks", type=int, default=64,
                        help="chunks per streamed answer of the micro backends")
    parser.add_argument("--chunk-gap-ms", type=float, default=0.0,
                        help="pause between the micro backends' chunks (0: back to back, "
                             "so a proxy may read and pass on several at once)")
    parser.add_argument("--workers", type=int, default=1,
                        help="gateway worker processes (a3s serve --workers N)")
    parser.add_argument("--publish-interval", type=float, default=None, metavar="S",
                        help="run two gateways, one publishing traffic to the store every S "
                             "seconds and one with publishing off, and print the ratio of "
                             "their CPU per request")
    parser.add_argument("--fake-replica", action="store_true",
                        help="use the tests' fake replica even when the simulator is installed")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    sys.exit(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
