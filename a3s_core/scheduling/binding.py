"""Place, then book; on a conflict, look again. And an in-memory booking table.

The scheduler decides on a snapshot; the store books atomically (one row per (node,
GPU index), primary key on the pair: `Store.book` answers False when another replica
took one of the GPUs first). Between the snapshot and the booking another platform
process — or another thread — may have booked the same GPUs, so `place_and_book`
re-reads the bookings and decides again, a few times, before giving up:

    placement = scheduler.place(snapshot, demand)
    if book(replica_id, placement):     # one transaction; False on conflict
        snapshot.apply(placement)       # keep using the snapshot for the next replica
    else:
        snapshot = load()               # fresh bookings from the store; decide again

A replica is never placed on a GPU it did not book, so double booking is impossible
however the decisions race; the retry only keeps conflicts from failing deployments
that would fit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from a3s_core.contracts import Demand
from a3s_core.errors import Conflict
from a3s_core.scheduling.framework import Scheduler
from a3s_core.scheduling.snapshot import ClusterSnapshot
from a3s_core.types import Placement

Book = Callable[[str, Placement], bool]
"""(replica id, placement) → True when every GPU of the placement was booked for it."""

DEFAULT_ATTEMPTS = 5


def place_and_book(
    scheduler: Scheduler,
    demand: Demand,
    replica_id: str,
    book: Book,
    load: Callable[[], ClusterSnapshot],
    snapshot: ClusterSnapshot | None = None,
    attempts: int = DEFAULT_ATTEMPTS,
) -> tuple[Placement, ClusterSnapshot]:
    """Place one replica and book its GPUs. Returns the placement and the snapshot to
    use next (already showing this booking). Raises Unschedulable when nothing fits, and
    Conflict when every attempt lost a race (a very busy cluster; the caller retries
    later, exactly as for Unschedulable)."""
    snap = snapshot if snapshot is not None else load()
    for attempt in range(1, attempts + 1):
        placement = scheduler.place(snap, demand)  # Unschedulable propagates
        if book(replica_id, placement):
            snap.apply(placement)
            return placement, snap
        if attempt < attempts:
            snap = load()
    raise Conflict(
        f"replica {replica_id} lost the race for GPUs {attempts} times in a row; "
        "it stays pending and is retried"
    )


class MemoryBook:
    """GPU bookings in memory with the store's rules: one replica per (node, GPU index),
    all of a placement's GPUs or none. Thread-safe. For tests, benchmarks and an embedded
    platform without a database."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._taken: dict[str, dict[int, str]] = {}
        self._held: dict[str, Placement] = {}

    def book(self, replica_id: str, placement: Placement) -> bool:
        with self._lock:
            if replica_id in self._held:
                raise Conflict(f"replica {replica_id} already holds GPUs")
            on_node = self._taken.setdefault(placement.node, {})
            if any(i in on_node for i in placement.gpu_indices):
                return False
            for i in placement.gpu_indices:
                on_node[i] = replica_id
            self._held[replica_id] = placement
            return True

    def release(self, replica_id: str) -> Placement | None:
        """Free a replica's GPUs; the placement it held, or None if it held nothing."""
        with self._lock:
            placement = self._held.pop(replica_id, None)
            if placement is not None:
                on_node = self._taken[placement.node]
                for i in placement.gpu_indices:
                    del on_node[i]
            return placement

    def allocations(self) -> Mapping[str, Mapping[int, str]]:
        """node → {GPU index → replica id}: the store's `allocations()` shape, a copy."""
        with self._lock:
            return {node: dict(held) for node, held in self._taken.items()}

    def holder(self, replica_id: str) -> Placement | None:
        with self._lock:
            return self._held.get(replica_id)
