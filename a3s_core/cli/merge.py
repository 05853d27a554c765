"""Several event streams printed as one, in the platform's order.

`a3s deploy --watch` follows one WebSocket per deployment. Each socket delivers its
deployment's events in seq order, but the sockets race each other: the first one opened
replays its whole backlog before the others say anything, and live events arrive a few
milliseconds apart in any order. `SeqMerge` holds each event until no other open stream
can still deliver an earlier one — every other stream has passed its seq (seq is global
and strictly increasing, docs/events.md), or has ended — and at most `delay` seconds
after it arrived, so the merged lines follow the platform's order (as `a3s events`
prints them) and a quiet deployment never holds the others back for long.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable, Iterable
from typing import Any

REORDER_DELAY = 0.3  # seconds an event may wait for an earlier one from another stream

Event = dict[str, Any]


class SeqMerge:
    """Events pushed per stream (each stream in seq order) come out of `emit(stream,
    event)` in global seq order; an event waits at most `delay` seconds. `flush()`
    releases the rest."""

    def __init__(
        self,
        streams: Iterable[str],
        emit: Callable[[str, Event], None],
        delay: float = REORDER_DELAY,
    ) -> None:
        self.emit = emit
        self.delay = delay
        self.passed: dict[str, float] = {s: -1.0 for s in streams}  # last seq each delivered
        self.held: list[tuple[float, int, str, float, Event]] = []
        self.order = itertools.count()  # ties (events without a seq) keep arrival order

    def push(self, stream: str, event: Event) -> None:
        seq = event.get("seq")
        key = float(seq) if isinstance(seq, int) else self.passed[stream]
        self.passed[stream] = max(self.passed[stream], key)
        heapq.heappush(self.held, (key, next(self.order), stream, time.monotonic(), event))
        # a wake-up for when it is due; one that comes after a flush finds nothing held
        asyncio.get_running_loop().call_later(self.delay, self.release)
        self.release()

    def close(self, stream: str) -> None:
        """The stream ends: it holds nothing back any more."""
        self.passed[stream] = float("inf")
        self.release()

    def release(self) -> None:
        """Emit, in seq order, every event no open stream can precede any more, and every
        event (with all before it) that has waited `delay`."""
        due = time.monotonic() - self.delay + 0.005  # a timer may fire a hair early
        overdue = max((k for k, _, _, t, _ in self.held if t <= due), default=None)
        while self.held:
            key, _, stream, _, event = self.held[0]
            others = (p for s, p in self.passed.items() if s != stream)
            if not (overdue is not None and key <= overdue) and any(p < key for p in others):
                return
            heapq.heappop(self.held)
            self.emit(stream, event)

    def flush(self) -> None:
        """Emit everything held, in seq order (every stream has ended or failed)."""
        while self.held:
            _, _, stream, _, event = heapq.heappop(self.held)
            self.emit(stream, event)

