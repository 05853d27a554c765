"""The engine's scheduler state: who runs, who waits, KV cache in use, and the statistics
`/metrics` reports. Admission is FIFO: a request starts when fewer than `max_num_seqs` run
and its KV reservation (prompt + max new tokens, in 16-token blocks) fits; otherwise it
waits, and once `max_queue` wait, new requests are refused (429)."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from a3s_engine_sim.config import SimConfig
from a3s_engine_sim.model import LatencyModel
from a3s_engine_sim.prefix_cache import PrefillLane, PrefixCache

BLOCK = 16  # tokens per KV block, as vLLM's default


class QueueFull(Exception):
    pass


def _blocks(tokens: int) -> int:
    return math.ceil(tokens / BLOCK)


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.total += value
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1


@dataclass(eq=False)
class Sequence:
    prompt_tokens: int
    max_tokens: int
    arrived: float = field(default_factory=time.monotonic)
    admitted: float | None = None
    first_token: float | None = None
    generated: int = 0

    @property
    def reserved_blocks(self) -> int:
        return _blocks(self.prompt_tokens + self.max_tokens)


TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
               60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
               7.5, 10.0, 20.0, 40.0, 80.0)


class EngineState:
    def __init__(self, cfg: SimConfig, model: LatencyModel) -> None:
        self.cfg = cfg
        self.model = model
        self.running: set[Sequence] = set()
        self.waiting: deque[tuple[Sequence, asyncio.Future[None]]] = deque()
        self.kv_capacity_blocks = _blocks(model.kv_capacity_tokens())
        self.kv_reserved_blocks = 0
        self.prefix = PrefixCache(self.kv_capacity_blocks, BLOCK, cfg.enable_prefix_caching)
        self.prefill_lane = PrefillLane(cfg.serial_prefill)
        self.started = time.monotonic()
        # Statistics (wall-clock seconds, as a scraper and the gateway both measure them).
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.requests_total = 0
        self.success: dict[str, int] = {"length": 0, "stop": 0}
        self.failures = 0
        self.rejected = 0
        self.answered = 0
        self.ttft = Histogram(TTFT_BUCKETS)
        self.e2e = Histogram(E2E_BUCKETS)
        self.itl = Histogram(ITL_BUCKETS)
        self.queue_time = Histogram(E2E_BUCKETS)
        # GPU utilisation: an exponentially weighted mean of the instantaneous busy share.
        self._util_avg = 0.0
        self._util_at = time.monotonic()
        self._util_tau = max(0.05, 5.0 * cfg.time_scale)

    # ------------------------------------------------------------------ admission

    def _fits(self, seq: Sequence) -> bool:
        return (
            len(self.running) < self.cfg.max_num_seqs
            and self.kv_reserved_blocks + seq.reserved_blocks <= self.kv_capacity_blocks
        )

    def _start(self, seq: Sequence) -> None:
        self._update_util()
        seq.admitted = time.monotonic()
        self.running.add(seq)
        self.kv_reserved_blocks += seq.reserved_blocks
        # Running requests' blocks come first: cached prefixes give way (LRU).
        self.prefix.trim(self.kv_capacity_blocks - self.kv_reserved_blocks)
        self.queue_time.observe(seq.admitted - seq.arrived)

    def _release(self, seq: Sequence) -> None:
        if seq in self.running:
            self._update_util()
            self.running.discard(seq)
            self.kv_reserved_blocks -= seq.reserved_blocks
        while self.waiting and self._fits(self.waiting[0][0]):
            head, fut = self.waiting.popleft()
            if not fut.done():
                self._start(head)
                fut.set_result(None)

    @asynccontextmanager
    async def admit(self, seq: Sequence) -> AsyncIterator[Sequence]:
        """Run `seq` once there is room; QueueFull when the waiting line is full."""
        if not self.waiting and self._fits(seq):
            self._start(seq)
        else:
            if len(self.waiting) >= self.cfg.max_queue:
                self.rejected += 1
                raise QueueFull(
                    f"{len(self.running)} requests running and {len(self.waiting)} waiting "
                    f"(max_num_seqs={self.cfg.max_num_seqs}, max_queue={self.cfg.max_queue})"
                )
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.waiting.append((seq, fut))
            try:
                await fut
            except BaseException:
                self._forget_waiting(seq)
                raise
        try:
            yield seq
        finally:
            self._release(seq)

    def _forget_waiting(self, seq: Sequence) -> None:
        for i, (item, _) in enumerate(self.waiting):
            if item is seq:
                del self.waiting[i]
                break
        self._release(seq)  # admitted just before the cancel landed: give the slot back

    # ------------------------------------------------------------------ figures

    def context_tokens(self) -> int:
        return sum(s.prompt_tokens + s.generated for s in self.running)

    def kv_usage(self) -> float:
        """Share of KV blocks in use by running sequences (0–1)."""
        used = sum(_blocks(s.prompt_tokens + s.generated) for s in self.running)
        return min(1.0, used / self.kv_capacity_blocks) if self.kv_capacity_blocks else 0.0

    def kv_used_bytes(self) -> float:
        return self.context_tokens() * self.cfg.kv_bytes_per_token

    def _instant_util(self) -> float:
        if not self.running:
            return 0.0
        share = min(1.0, len(self.running) / self.model.saturation_batch())
        return 100.0 * (0.35 + 0.65 * share)

    def _update_util(self) -> None:
        now = time.monotonic()
        decay = math.exp(-(now - self._util_at) / self._util_tau)
        self._util_avg = self._util_avg * decay + self._instant_util() * (1.0 - decay)
        self._util_at = now

    def gpu_utilization(self) -> float:
        """Percent busy, time-weighted over ~5 simulated seconds (DCGM GPU_UTIL-like)."""
        self._update_util()
        return round(self._util_avg, 2)
