"""Prefix caching in the simulator: chained block hashes, LRU bounded by the KV cache, the
counters on /metrics, and prefills that take turns on the GPU."""

from __future__ import annotations

import aiohttp
import pytest
from a3s_engine_sim.config import parse_args
from a3s_engine_sim.metrics import render
from a3s_engine_sim.model import LatencyModel
from a3s_engine_sim.prefix_cache import PrefillLane, PrefixCache, block_hashes
from a3s_engine_sim.server import STATE, create_app
from a3s_engine_sim.state import EngineState, Sequence
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

BLOCK_CHARS = 16 * 4  # 16 tokens of ≈ 4 characters


def test_block_hashes_are_chained_and_cover_full_blocks_only() -> None:
    a = block_hashes("x" * BLOCK_CHARS * 3 + "tail", 16)
    b = block_hashes("x" * BLOCK_CHARS * 3, 16)
    assert len(a) == 3 and a == b
    # Equal blocks at different depths differ: a hash stands for the whole prefix.
    assert len(set(a)) == 3
    c = block_hashes("y" * BLOCK_CHARS + "x" * BLOCK_CHARS * 2, 16)
    assert not set(a) & set(c)


def test_hits_count_leading_blocks_and_leave_the_last_token_to_compute() -> None:
    cache = PrefixCache(capacity_blocks=100, block_tokens=16)
    shared = "s" * BLOCK_CHARS * 4
    first = block_hashes(shared + "a" * BLOCK_CHARS * 2, 16)
    assert cache.cached_tokens(first, 6 * 16) == 0
    cache.insert(first, room_blocks=100)
    second = block_hashes(shared + "b" * BLOCK_CHARS * 2, 16)
    assert cache.cached_tokens(second, 6 * 16) == 4 * 16
    # The very same prompt again: all but the block holding the last token.
    assert cache.cached_tokens(first, 6 * 16) == 5 * 16
    assert (cache.queries, cache.hits) == (3 * 96, 9 * 16)


def test_eviction_is_lru_and_takes_a_prefix_tail_first() -> None:
    cache = PrefixCache(capacity_blocks=6, block_tokens=16)
    old = block_hashes("o" * BLOCK_CHARS * 4, 16)
    new = block_hashes("n" * BLOCK_CHARS * 4, 16)
    cache.insert(old, room_blocks=6)
    cache.insert(new, room_blocks=6)
    assert len(cache) == 6 and cache.evicted == 2
    # The old prompt lost its last two blocks, not its first two: its head still hits.
    assert cache.cached_tokens(old, 4 * 16 + 1) == 2 * 16
    cache.trim(1)
    assert len(cache) == 1


async def test_running_requests_push_cached_blocks_out() -> None:
    # ~3 300 tokens of KV: one 2 000-token reservation leaves room for ~80 cached blocks.
    cfg = parse_args(["--parameters", "8e9", "--weight-bytes", "16e9", "--kv-bytes-per-token",
                      "131072", "--gpu-memory-mib", "16500", "--gpu-memory-utilization", "1",
                      "--max-model-len", "2048"])
    state = EngineState(cfg, LatencyModel(cfg))
    state.prefix.insert(block_hashes("c" * BLOCK_CHARS * 150, 16), state.kv_capacity_blocks)
    assert len(state.prefix) == 150
    async with state.admit(Sequence(prompt_tokens=1500, max_tokens=500)):
        assert len(state.prefix) <= state.kv_capacity_blocks - state.kv_reserved_blocks
        assert len(state.prefix) < 150


def test_prefill_lane_books_prefills_one_after_another() -> None:
    lane = PrefillLane(serial=True)
    waits = [lane.book(0.5) for _ in range(3)]
    assert waits[0] == pytest.approx(0.5, abs=0.01)
    assert waits[2] == pytest.approx(1.5, abs=0.02)
    assert PrefillLane(serial=False).book(0.5) == 0.5


@pytest.mark.parametrize("dialect", ["vllm", "vllm-v0", "sglang"])
def test_prefix_cache_figures_in_each_dialect(dialect: str) -> None:
    state = EngineState(cfg := parse_args(["--dialect", dialect]), LatencyModel(cfg))
    state.prefix.queries, state.prefix.hits = 1000, 250
    families = {f.name: f for f in text_string_to_metric_families(render(state))}
    if dialect == "vllm":
        # prometheus_client names counter families without `_total`.
        assert families["vllm:prefix_cache_queries"].samples[0].value == 1000
        assert families["vllm:prefix_cache_hits"].samples[0].value == 250
    elif dialect == "vllm-v0":
        assert families["vllm:gpu_prefix_cache_hit_rate"].samples[0].value == 0.25
    else:
        assert families["sglang:cache_hit_rate"].samples[0].value == 0.25
        sample = families["sglang:cached_tokens"].samples[0]
        assert sample.value == 250 and sample.labels["cache_source"] == "device"


async def _serve(*args: str) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(create_app(parse_args(["--port", "0", "--jitter", "0", *args])))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def _counters(http: aiohttp.ClientSession, base: str) -> tuple[float, float]:
    async with http.get(base + "/metrics") as r:
        families = {f.name: f for f in text_string_to_metric_families(await r.text())}
    return (families["vllm:prefix_cache_queries"].samples[0].value,
            families["vllm:prefix_cache_hits"].samples[0].value)


@pytest.mark.parametrize("enabled", [True, False])
async def test_a_repeated_system_prompt_hits_the_cache(enabled: bool) -> None:
    flag = "--enable-prefix-caching" if enabled else "--no-enable-prefix-caching"
    runner, base = await _serve("--time-scale", "0.01", flag)
    system = "You are a careful assistant. " * 100  # ≈ 725 tokens
    try:
        async with aiohttp.ClientSession() as http:
            for question in ("first?", "second?", "third?"):
                body = {"model": "sim", "max_tokens": 2, "messages": [
                    {"role": "system", "content": system}, {"role": "user", "content": question}]}
                async with http.post(base + "/v1/chat/completions", json=body) as r:
                    assert r.status == 200
                    prompt_tokens = (await r.json())["usage"]["prompt_tokens"]
            queries, hits = await _counters(http, base)
    finally:
        await runner.cleanup()
    assert queries == 3 * prompt_tokens
    if enabled:  # the system prompt's full blocks, on the second and third request
        assert 2 * 640 <= hits <= 2 * (len(system) // 4)
    else:
        assert hits == 0


class RecordingLane(PrefillLane):
    """Books nothing (the test does not wait) and keeps what it was asked to book."""

    def __init__(self) -> None:
        super().__init__(serial=False)
        self.booked: list[float] = []

    def book(self, wall_s: float) -> float:
        self.booked.append(wall_s)
        return 0.0


async def test_cached_prefixes_make_prefill_shorter() -> None:
    # The model's arithmetic, not a stopwatch: the lane is booked for the uncached part.
    runner, base = await _serve("--time-scale", "1", "--parameters", "7e10",
                                "--weight-bytes", "1.4e11", "--gpu-memory-mib", "200000")
    lane = runner.app[STATE].prefill_lane = RecordingLane()
    body = {"model": "sim", "max_tokens": 1,
            "messages": [{"role": "user", "content": "long context " * 2000}]}
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(2):
                async with http.post(base + "/v1/chat/completions", json=body) as r:
                    assert r.status == 200
    finally:
        await runner.cleanup()
    assert len(lane.booked) == 2 and lane.booked[1] < lane.booked[0] / 20
