"""Routing that knows the KV cache: the same shared-prefix workload through four policies in
front of four simulator replicas, one after the other in one run.

    .venv/bin/python benchmarks/bench_routing.py                 # ≈ 2 minutes
    .venv/bin/python benchmarks/bench_routing.py --seconds 40 --rate 8
    pip install vllm-router==0.1.17                              # for its cache_aware

Policies: round-robin (the gateway's `weighted`: equal GPUs, so plain turns), least-queue,
prefix-aware (the gateway, A3S), and vllm-router's `cache_aware` with its defaults.

Replicas: `a3s_engine_sim`, vLLM dialect, Llama-3.1-8B on one L4 (121 bf16 TFLOPS,
300 GB/s, 24 GB: ≈ 35k tokens of KV cache), prefix caching on, prefills taking turns on
the GPU, delays × `--time-scale`. Every policy gets four fresh replicas (cold caches) and
its own proxy process; the replicas' configuration is the same for all.

Workload (seeded; open loop, Poisson arrivals at `--rate` requests/s, streaming chat):
20 system prompts of 1–4k tokens; `--conversations` conversation slots, each a system
prompt plus turns that grow (the previous answer and a new 50–300-token question appended,
3–8 turns, then a new conversation); a share (`--unique`) of one-off prompts of 0.5–2k
tokens that share nothing. An arrival continues an idle conversation; when all are busy it
starts a first turn.

Printed per policy: mean and p99 time to first token (client side), output tokens/s,
prefix-cache hit rate per replica (from each replica's vllm:prefix_cache_* counters), and
the load spread (requests per replica, max ÷ mean). Targets (issue 17): prefix-aware's
mean TTFT ≥ 30 % below least-queue's, no worse than cache_aware on mean and p99, and no
replica above 1.5 × the mean load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from bench_procs import spawn, started, wait_ready

from a3s_core.net import free_port

MODEL = "bench"
NAMESPACE = "bench"
KV_BYTES_PER_TOKEN = 131072  # Llama-3.1-8B: 32 layers × 8 KV heads × 128 × 2 × bf16
WORDS = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
    "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra",
    "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "policy", "routing",
    "cache", "replica", "tensor", "prompt", "system", "answer", "question",
]


def sim_argv(port: int, time_scale: float) -> list[str]:
    return [sys.executable, "-m", "a3s_engine_sim", "--port", str(port),
            "--served-model-name", MODEL, "--dialect", "vllm", "--gpu", "L4",
            "--gpu-memory-mib", "23034", "--bandwidth-gbs", "300", "--bf16-tflops", "121",
            "--parameters", "8e9", "--weight-bytes", "16e9",
            "--kv-bytes-per-token", str(KV_BYTES_PER_TOKEN), "--max-model-len", "16384",
            "--max-num-seqs", "64", "--max-queue", "100000", "--jitter", "0.05",
            "--time-scale", str(time_scale), "--seed", str(port)]


def sim_kv_tokens(time_scale: float) -> int:
    from a3s_engine_sim.config import parse_args
    from a3s_engine_sim.model import LatencyModel

    return LatencyModel(parse_args(sim_argv(0, time_scale)[3:])).kv_capacity_tokens()


# ---------------------------------------------------------------- the gateway process


def serve_gateway(port: int, urls: list[str], key: str, balancer: str, db_dir: str,
                  kv_tokens: int) -> None:
    """Child process: the platform app as `a3s serve` builds it, one running deployment of
    engine `sim` with `balancer` and a plan saying what KV cache each replica holds."""
    import uvicorn
    from sqlmodel import Session

    from a3s_core.api.app import create_app
    from a3s_core.keys import display_prefix, hash_key
    from a3s_core.plugins import Plugins
    from a3s_core.settings import Settings
    from a3s_core.store import Store
    from a3s_core.store.tables import ApiKeyRow, DeploymentRow, ReplicaRow
    from a3s_core.testing import FakeRuntimePlugin

    settings = Settings(data_dir=Path(db_dir), port=port, runtime="fake", controllers=False,
                        admin_token="bench-admin-token")
    plan = {"kv_bytes_per_token": KV_BYTES_PER_TOKEN, "candidates": [
        {"gpu": "L4", "tensor_parallel_size": 1,
         "kv_budget_per_gpu_bytes": kv_tokens * KV_BYTES_PER_TOKEN}]}
    store = Store.open(settings.db_url)
    with Session(store.engine) as s:
        s.add(DeploymentRow(  # type: ignore[call-arg]
            id="dep-bench", name=MODEL, namespace=NAMESPACE, model="meta-llama/Llama-3.1-8B",
            engine="sim", spec={"name": MODEL, "model": "meta-llama/Llama-3.1-8B",
                                "engine": "sim", "balancer": balancer},
            status="running", plan=plan,
        ))
        s.flush()
        for i, url in enumerate(urls):
            s.add(ReplicaRow(id=f"bench-r{i}", deployment_id="dep-bench", state="ready",
                             url=url, gpu="L4", tensor_parallel_size=1, max_model_len=16384))
        s.add(ApiKeyRow(id="key-bench", deployment_id="dep-bench", key_hash=hash_key(key),
                        prefix=display_prefix(key)))
        s.commit()
    store.close()
    plugins = Plugins()
    plugins.register(FakeRuntimePlugin(), name="bench-fake-runtime")
    uvicorn.run(create_app(settings, plugins), host="127.0.0.1", port=port,
                log_level="warning", access_log=False)


# ---------------------------------------------------------------- workload


def words(rng: random.Random, tokens: int) -> str:
    # ≈ 4 characters a token, as the simulator counts them.
    out: list[str] = []
    size = 0
    while size < tokens * 4:
        w = rng.choice(WORDS)
        out.append(w)
        size += len(w) + 1
    return " ".join(out)


@dataclass
class Conversation:
    messages: list[dict[str, str]]
    turns_left: int
    busy: bool = False


@dataclass
class Workload:
    seed: int
    conversations: int
    unique_share: float
    rng: random.Random = field(init=False)
    systems: list[str] = field(init=False)
    slots: list[Conversation | None] = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.systems = [f"[system prompt {i}] " + words(self.rng, self.rng.randint(1000, 4000))
                        for i in range(20)]
        self.slots = [None] * self.conversations

    def _new(self) -> Conversation:
        system = self.rng.choice(self.systems)
        return Conversation([{"role": "system", "content": system}], self.rng.randint(3, 8))

    def next(self) -> tuple[list[dict[str, str]], Conversation | None]:
        """The messages of the next request, and the conversation it continues."""
        rng = self.rng
        if rng.random() < self.unique_share:
            return [{"role": "user", "content": f"[one-off {rng.random()}] "
                     + words(rng, rng.randint(500, 2000))}], None
        idle = [i for i, c in enumerate(self.slots) if c is None or not c.busy]
        if not idle:  # everyone is waiting for an answer: a first turn, not remembered
            conv = self._new()
        else:
            i = rng.choice(idle)
            conv = self.slots[i]
            if conv is None or conv.turns_left <= 0:
                conv = self.slots[i] = self._new()
            conv.busy = True
            conv.turns_left -= 1
        question = {"role": "user", "content": words(rng, rng.randint(50, 300))}
        conv.messages.append(question)
        return list(conv.messages), conv


@dataclass
class Outcome:
    ttft: list[float] = field(default_factory=list)
    output_tokens: int = 0
    failed: int = 0
    seconds: float = 0.0


async def one(http: aiohttp.ClientSession, url: str, headers: dict[str, str],
              messages: list[dict[str, str]], conv: Conversation | None, max_tokens: int,
              out: Outcome) -> None:
    body = {"model": MODEL, "messages": messages, "max_tokens": max_tokens, "stream": True}
    started_at = time.monotonic()
    first: float | None = None
    text: list[str] = []
    try:
        async with http.post(url, json=body, headers=headers) as resp:
            if resp.status != 200:
                out.failed += 1
                await resp.read()
                return
            async for raw in resp.content:
                line = raw.strip()
                if not line.startswith(b"data: ") or line == b"data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                for choice in chunk.get("choices", ()):
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        if first is None:
                            first = time.monotonic()
                        text.append(piece)
                        out.output_tokens += 1
    except (aiohttp.ClientError, TimeoutError):
        out.failed += 1
        return
    finally:
        if conv is not None:
            if text:
                conv.messages.append({"role": "assistant", "content": "".join(text)})
            else:  # nothing came back: drop the question so the history stays a prefix
                conv.messages.pop()
            conv.busy = False
    if first is not None:
        out.ttft.append(first - started_at)


async def drive(url: str, headers: dict[str, str], args: argparse.Namespace) -> Outcome:
    """Open loop: Poisson arrivals at args.rate for args.seconds, then wait for the rest."""
    work = Workload(args.seed, args.conversations, args.unique)
    arrivals = random.Random(args.seed + 1)
    out = Outcome()
    tasks: set[asyncio.Task[None]] = set()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=300)) as http:
        start = time.monotonic()
        next_at = start
        while next_at < start + args.seconds:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            messages, conv = work.next()
            task = asyncio.create_task(one(http, url, headers, messages, conv,
                                           args.max_tokens, out))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            next_at += arrivals.expovariate(args.rate)
        if tasks:
            await asyncio.gather(*tasks)
        out.seconds = time.monotonic() - start
    return out


# ---------------------------------------------------------------- replica figures


def parse_counters(text: str) -> dict[str, float]:
    wanted = ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total",
              "vllm:request_success_total", "vllm:prompt_tokens_total")
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in wanted:
            found[name] = found.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


async def replica_figures(urls: list[str]) -> list[dict[str, float]]:
    async with aiohttp.ClientSession() as http:
        out = []
        for u in urls:
            async with http.get(u + "/metrics") as r:
                out.append(parse_counters(await r.text()))
        return out


# ---------------------------------------------------------------- one policy


@dataclass
class Row:
    policy: str
    outcome: Outcome
    replicas: list[dict[str, float]]

    def pct(self, q: float) -> float:
        v = sorted(self.outcome.ttft)
        return v[min(len(v) - 1, max(0, round(q / 100 * len(v)) - 1))] if v else float("nan")

    @property
    def mean(self) -> float:
        return statistics.fmean(self.outcome.ttft) if self.outcome.ttft else float("nan")

    @property
    def loads(self) -> list[float]:
        return [r.get("vllm:request_success_total", 0.0) for r in self.replicas]

    @property
    def spread(self) -> float:
        loads = self.loads
        mean = statistics.fmean(loads) if loads else 0.0
        return max(loads) / mean if mean else float("nan")

    def hit_rates(self) -> list[float]:
        return [r.get("vllm:prefix_cache_hits_total", 0.0)
                / max(1.0, r.get("vllm:prefix_cache_queries_total", 0.0)) for r in self.replicas]


async def run_policy(policy: str, args: argparse.Namespace, workdir: Path,
                     router_bin: str | None, kv_tokens: int) -> Row | str:
    ports = [free_port() for _ in range(4)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    with started([]) as procs:
        for i, p in enumerate(ports):
            procs.append(spawn(f"{policy}-replica{i}", sim_argv(p, args.time_scale), workdir))
        for proc, u in zip(procs, urls, strict=True):
            await wait_ready(u + "/health", proc)
        port = free_port()
        if policy == "cache_aware":
            if router_bin is None:
                return "vllm-router not installed (pip install vllm-router==0.1.17)"
            proxy = spawn("vllm-router", [router_bin, "--host", "127.0.0.1", "--port", str(port),
                                          "--worker-urls", *urls, "--policy", "cache_aware",
                                          "--log-level", "warning"], workdir)
            url, headers = f"http://127.0.0.1:{port}/v1/chat/completions", {}
            procs.append(proxy)
            probe: dict[str, object] = {"model": MODEL, "max_tokens": 1,
                                        "messages": [{"role": "user", "content": "hi"}]}
            await wait_ready(url, proxy, body=probe)
        else:
            key = "sk-a3s-bench-" + os.urandom(16).hex()
            balancer = {"round-robin": "weighted"}.get(policy, policy)
            proxy = spawn(f"gateway-{policy}", [
                sys.executable, __file__, "--serve-gateway", str(port), json.dumps(urls), key,
                balancer, tempfile.mkdtemp(dir=workdir), str(kv_tokens)], workdir)
            procs.append(proxy)
            headers = {"Authorization": f"Bearer {key}"}
            base = f"http://127.0.0.1:{port}/d/{NAMESPACE}/{MODEL}/v1"
            await wait_ready(base + "/models", proxy, headers=headers)
            url = base + "/chat/completions"
        before = await replica_figures(urls)
        outcome = await drive(url, headers, args)
        after = await replica_figures(urls)
        delta = [{k: a.get(k, 0.0) - b.get(k, 0.0) for k in a} for a, b in
                 zip(after, before, strict=True)]
        return Row(policy, outcome, delta)


# ---------------------------------------------------------------- main


async def bench(args: argparse.Namespace) -> int:
    router_bin = shutil.which("vllm-router") or shutil.which(
        "vllm-router", path=str(Path(sys.executable).parent))
    workdir = Path(tempfile.mkdtemp(prefix="a3s-bench-routing-"))
    kv_tokens = sim_kv_tokens(args.time_scale)
    print(f"replicas: 4 × a3s_engine_sim (vLLM dialect), Llama-3.1-8B on an L4, "
          f"KV cache {kv_tokens:,} tokens each, prefix caching on, time scale "
          f"{args.time_scale}")
    print(f"workload: {args.rate} req/s for {args.seconds:.0f} s (open loop), 20 system "
          f"prompts of 1-4k tokens, {args.conversations} conversation slots of 3-8 turns, "
          f"{args.unique:.0%} one-off prompts, {args.max_tokens} output tokens, seed "
          f"{args.seed}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start; "
          f"logs in {workdir}\n")
    rows: list[Row] = []
    for policy in args.policies:
        result = await run_policy(policy, args, workdir, router_bin, kv_tokens)
        if isinstance(result, str):
            print(f"{policy}: skipped ({result})")
            continue
        rows.append(result)
        o = result.outcome
        print(f"{policy:<13} done: {len(o.ttft)} ok, {o.failed} failed, "
              f"{o.seconds:.0f} s, load average {os.getloadavg()[0]:.1f}", flush=True)
    print()
    print(f"{'policy':<13}{'ok':>6}{'fail':>5}{'TTFT mean':>11}{'p99':>9}{'out tok/s':>11}"
          f"{'load max/mean':>15}   requests per replica / prefix-cache hit rate")
    for r in rows:
        per = "  ".join(f"{int(n):>4}/{h:4.0%}" for n, h in
                        zip(r.loads, r.hit_rates(), strict=True))
        o = r.outcome
        print(f"{r.policy:<13}{len(o.ttft):>6}{o.failed:>5}{r.mean * 1000:>9.0f}ms"
              f"{r.pct(99) * 1000:>7.0f}ms{o.output_tokens / o.seconds:>11.1f}"
              f"{r.spread:>15.2f}   {per}")
    by = {r.policy: r for r in rows}
    pa, lq, ca = by.get("prefix-aware"), by.get("least-queue"), by.get("cache_aware")
    if pa and lq:
        cut = 1 - pa.mean / lq.mean
        print(f"\nprefix-aware mean TTFT vs least-queue: {cut:+.0%} lower "
              f"(target ≥ 30 %: {'met' if cut >= 0.30 else 'NOT met'})")
    if pa and ca:
        ok = pa.mean <= ca.mean and pa.pct(99) <= ca.pct(99)
        print(f"prefix-aware vs vllm-router cache_aware: mean {pa.mean * 1000:.0f} vs "
              f"{ca.mean * 1000:.0f} ms, p99 {pa.pct(99) * 1000:.0f} vs "
              f"{ca.pct(99) * 1000:.0f} ms (target: no worse on both: "
              f"{'met' if ok else 'NOT met'})")
    if pa:
        print(f"prefix-aware busiest replica: {pa.spread:.2f} × the mean load "
              f"(target ≤ 1.5: {'met' if pa.spread <= 1.5 else 'NOT met'})")
    return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-gateway":
        port, urls, key, balancer, db_dir, kv = sys.argv[2:8]
        serve_gateway(int(port), json.loads(urls), key, balancer, db_dir, int(kv))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=25.0, help="arrivals per policy")
    p.add_argument("--rate", type=float, default=6.0, help="requests/s (Poisson)")
    p.add_argument("--time-scale", type=float, default=0.5)
    p.add_argument("--conversations", type=int, default=24)
    p.add_argument("--unique", type=float, default=0.15, help="share of one-off prompts")
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("--seed", type=int, default=17)
    p.add_argument("--policies", nargs="+",
                   default=["round-robin", "least-queue", "prefix-aware", "cache_aware"],
                   choices=["round-robin", "least-queue", "prefix-aware", "cache_aware"])
    args = p.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(bench(args))
    return 130


if __name__ == "__main__":
    sys.exit(main())
