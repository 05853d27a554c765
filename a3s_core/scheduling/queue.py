"""Replicas waiting for GPUs, retried in arrival order when capacity frees.

Arrival order with backfill: every pass tries the oldest first; one that still does not
fit keeps its place (and its up-to-date reason) while a later, smaller one may be
placed on what is free. This is what kube-scheduler's active queue does; strict
head-of-line blocking would leave GPUs idle behind one 8-GPU request.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from a3s_core.contracts import Demand
from a3s_core.errors import Conflict, Unschedulable
from a3s_core.types import Placement


@dataclass
class Waiting:
    key: str  # replica id (or any id unique to the caller)
    demand: Demand
    seq: int
    reason: str = ""
    suggestions: list[str] = field(default_factory=list)
    attempts: int = 0


class WaitQueue:
    """Not thread-safe: owned by the one scheduling loop (the elected leader)."""

    def __init__(self) -> None:
        self._items: dict[str, Waiting] = {}
        self._seq = itertools.count()

    def add(
        self, key: str, demand: Demand, reason: str = "", suggestions: list[str] | None = None
    ) -> Waiting:
        """Queue `key` (again): a key already waiting keeps its place in line."""
        w = self._items.get(key)
        if w is None:
            w = Waiting(key, demand, next(self._seq))
            self._items[key] = w
        w.demand = demand
        w.reason = reason or w.reason
        if suggestions is not None:
            w.suggestions = list(suggestions)
        return w

    def remove(self, key: str) -> Waiting | None:
        return self._items.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Waiting]:
        return iter(sorted(self._items.values(), key=lambda w: w.seq))

    def drain(self, place: Callable[[Waiting], Placement]) -> list[tuple[Waiting, Placement]]:
        """Try every waiting entry, oldest first. `place` places and books one (e.g. with
        `place_and_book`) or raises Unschedulable / Conflict; placed entries leave the
        queue, the others stay with the new reason."""
        placed = []
        for w in list(self):
            w.attempts += 1
            try:
                p = place(w)
            except Unschedulable as exc:
                w.reason, w.suggestions = exc.message, list(exc.suggestions)
                continue
            except Conflict as exc:
                w.reason = exc.message
                continue
            del self._items[w.key]
            placed.append((w, p))
        return placed
