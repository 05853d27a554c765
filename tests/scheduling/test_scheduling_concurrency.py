"""Binding: concurrent deployments never share a GPU; freed GPUs go to the waiting."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from a3s_scheduler_standard import BinPack
from scheduling_testkit import demand, hand_plan, node

from a3s_core.errors import Conflict, Unschedulable
from a3s_core.scheduling import (
    ClusterSnapshot,
    MemoryBook,
    Scheduler,
    WaitQueue,
    node_views,
    place_and_book,
)
from a3s_core.types import Placement

CLUSTER = [node(f"gpu-a100-{i}", "A100-80GB", 8) for i in range(3)] + [
    node("gpu-l40s-0", "L40S-48GB", 4)
]
# 72B FP16 on 2× A100-80GB or H100: 3 nodes × 8 GPUs hold 12 of the 50 deployments
# (the L40S node is of no use to it).
PLAN = hand_plan("Qwen/Qwen2.5-72B-Instruct", 145.4, kv_gb=2.7, gpus=["A100-80GB", "H100-80GB"])


class CountingBook(MemoryBook):
    def __init__(self) -> None:
        super().__init__()
        self.conflicts = 0

    def book(self, replica_id: str, placement: Placement) -> bool:
        ok = super().book(replica_id, placement)
        self.conflicts += not ok
        return ok


def test_fifty_concurrent_deployments_never_double_book() -> None:
    book = CountingBook()
    sched = Scheduler(BinPack())
    stale = ClusterSnapshot(node_views(CLUSTER))  # everyone starts from the same view
    start = threading.Barrier(50)
    placed: dict[str, Placement] = {}
    waiting: dict[str, str] = {}
    lock = threading.Lock()

    def load() -> ClusterSnapshot:
        return ClusterSnapshot(node_views(CLUSTER, book.allocations()))

    def deploy(i: int) -> None:
        start.wait()
        rid = f"r{i:02d}"
        try:
            snap = ClusterSnapshot(stale)  # a private copy of the stale view
            p, _ = place_and_book(sched, demand(PLAN, f"d{i}"), rid, book.book, load, snap,
                                  attempts=60)
        except Unschedulable as exc:
            with lock:
                waiting[rid] = exc.message
            return
        with lock:
            placed[rid] = p

    threads = [threading.Thread(target=deploy, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    gpus = Counter((p.node, i) for p in placed.values() for i in p.gpu_indices)
    assert max(gpus.values()) == 1  # no GPU twice
    assert len(placed) == 12 and len(waiting) == 38
    assert all(len(p.gpu_indices) == 2 and p.gpu == "A100-80GB" for p in placed.values())
    # what the book holds is exactly what the threads were told
    assert {(n, i) for n, held in book.allocations().items() for i in held} == set(gpus)
    assert book.conflicts > 0  # the stale views really raced
    assert all(
        m == "needs 2× A100-80GB or 2× H100-80GB on one node; A100-80GB nodes: "
        "gpu-a100-0 has 0 of 8 free, gpu-a100-1 has 0 of 8 free, gpu-a100-2 has 0 of 8 free; "
        "the cluster has no H100-80GB nodes"
        for m in waiting.values()
    )


def test_deleting_a_deployment_lets_a_waiting_one_be_placed_in_arrival_order() -> None:
    book = MemoryBook()
    sched = Scheduler(BinPack())

    def load() -> ClusterSnapshot:
        return ClusterSnapshot(node_views(CLUSTER, book.allocations()))

    d = demand(PLAN)
    for i in range(12):
        place_and_book(sched, d, f"r{i}", book.book, load)

    queue = WaitQueue()
    for rid in ("late-1", "late-2"):
        try:
            place_and_book(sched, d, rid, book.book, load)
        except Unschedulable as exc:
            queue.add(rid, d, exc.message, exc.suggestions)
    assert [w.key for w in queue] == ["late-1", "late-2"]
    assert all("gpu-a100-2 has 0 of 8 free" in w.reason for w in queue)

    def place(w):  # type: ignore[no-untyped-def]
        return place_and_book(sched, w.demand, w.key, book.book, load)[0]

    assert queue.drain(place) == []  # still full

    freed = book.release("r5")
    assert freed is not None
    placed = queue.drain(place)
    assert [(w.key, p.node, p.gpu_indices) for w, p in placed] == [
        ("late-1", freed.node, freed.gpu_indices)
    ]
    assert [w.key for w in queue] == ["late-2"] and next(iter(queue)).attempts == 2


def test_losing_every_race_is_a_conflict_not_a_wrong_booking() -> None:
    sched = Scheduler(BinPack())
    loads = []

    def load() -> ClusterSnapshot:
        loads.append(1)
        return ClusterSnapshot(node_views(CLUSTER))

    with pytest.raises(Conflict, match="lost the race for GPUs 3 times"):
        place_and_book(sched, demand(PLAN), "r0", lambda rid, p: False, load, attempts=3)
    assert len(loads) == 3  # the first view, then a fresh one after each lost race but the last

    queue = WaitQueue()
    queue.add("r0", demand(PLAN))
    assert queue.drain(
        lambda w: place_and_book(sched, w.demand, w.key, lambda rid, p: False, load)[0]
    ) == []
    assert "lost the race" in next(iter(queue)).reason
