"""The framework: built-in filters, the index, equivalence classes, GPU index choice."""

from __future__ import annotations

import random
from typing import ClassVar

import pytest
from a3s_scheduler_standard import BinPack, Spread
from scheduling_testkit import demand, hand_plan, node, snapshot

from a3s_core.contracts import Demand, NodeView, SchedulerStrategy
from a3s_core.errors import Conflict, Unschedulable
from a3s_core.scheduling import ClusterSnapshot, Scheduler, demand_for, pick_indices
from a3s_core.types import Candidate


class NoKey(SchedulerStrategy):
    """Wraps a strategy but gives no equivalence key: the framework must visit every node."""

    name: ClassVar[str] = "nokey"

    def __init__(self, inner: SchedulerStrategy) -> None:
        self.inner = inner
        self.scored = 0

    def filter(self, node: NodeView, demand: Demand, candidate: Candidate) -> str | None:
        return self.inner.filter(node, demand, candidate)

    def score(self, node: NodeView, demand: Demand, candidate: Candidate) -> float:
        self.scored += 1
        return self.inner.score(node, demand, candidate)


def test_pick_indices_prefers_aligned_contiguous_blocks() -> None:
    assert pick_indices([0, 1, 2, 3, 4, 5, 6, 7], 2) == (0, 1)
    assert pick_indices([1, 2, 3, 4, 5, 6, 7], 2) == (2, 3)  # keeps 4..7 whole
    assert pick_indices([1, 2, 3, 4, 5, 6, 7], 4) == (4, 5, 6, 7)
    assert pick_indices([0, 1, 3], 1) == (3,)  # best fit: the lone GPU, the pair stays
    assert pick_indices([1, 2, 5, 6], 2) == (1, 2)  # no aligned block: lowest contiguous
    assert pick_indices([0, 2, 5, 6, 7], 3) == (5, 6, 7)
    assert pick_indices([0, 2, 4, 7], 2) == (0, 2)  # nothing contiguous: tightest span
    with pytest.raises(ValueError, match="3 GPUs wanted but only 2 free"):
        pick_indices([0, 1], 3)


def test_tp_group_stays_on_one_node_even_when_the_cluster_has_enough_gpus() -> None:
    nodes = [node(f"gpu-a100-{i}", "A100-80GB", 8, used=range(7)) for i in range(5)]
    plan = hand_plan("Qwen/Qwen2.5-72B-Instruct", 145.4, gpus=["A100-80GB"])
    with pytest.raises(Unschedulable) as exc:
        Scheduler(BinPack()).place(snapshot(nodes), demand(plan))
    assert exc.value.message.startswith(
        "needs 2× A100-80GB on one node; 5 A100-80GB nodes, free GPUs per node: 1 on 5 "
        "(5 free in all, but a replica's GPUs must be on one node); most free: "
        "gpu-a100-0 has 1 of 8 free, gpu-a100-1 has 1 of 8 free, gpu-a100-2 has 1 of 8 free"
    )


def test_gpu_type_must_be_a_candidate_and_node_schedulable() -> None:
    plan = hand_plan("Qwen/Qwen2.5-7B-Instruct", 15.2, gpus=["L40S-48GB"])
    nodes = [
        node("gpu-a100-0", "A100-80GB", 8),
        node("gpu-l40s-0", "L40S-48GB", 4, schedulable=False),
        node("gpu-l40s-1", "L40S-48GB", 4, used=range(4)),
    ]
    with pytest.raises(Unschedulable) as exc:
        Scheduler(BinPack()).place(snapshot(nodes), demand(plan))
    assert exc.value.message == (
        "needs 1× L40S-48GB on one node; L40S-48GB nodes: "
        "gpu-l40s-0 has 4 of 4 free but is cordoned, gpu-l40s-1 has 0 of 4 free"
    )


def test_explanation_covers_every_candidate_type_and_missing_ones() -> None:
    plan = hand_plan("Qwen/Qwen2.5-72B-Instruct", 145.4, gpus=["A100-80GB", "H100-80GB"])
    nodes = [
        node("gpu-a100-0", "A100-80GB", 8, used=range(8)),
        node("gpu-a100-1", "A100-80GB", 8, used=range(7)),
    ]
    with pytest.raises(Unschedulable) as exc:
        Scheduler(BinPack()).place(snapshot(nodes), demand(plan))
    assert exc.value.message == (
        "needs 2× A100-80GB or 2× H100-80GB on one node; A100-80GB nodes: "
        "gpu-a100-0 has 0 of 8 free, gpu-a100-1 has 1 of 8 free; "
        "the cluster has no H100-80GB nodes"
    )


def test_explanation_summarises_many_nodes_and_names_strategy_refusals() -> None:
    class OnlyEven(BinPack):
        name: ClassVar[str] = "only-even"

        def filter(self, node: NodeView, demand: Demand, candidate: Candidate) -> str | None:
            return None if int(node.name.rsplit("-", 1)[1]) % 2 == 0 else "odd node"

        def equivalence_key(self, node: NodeView) -> object | None:
            return None

    nodes = [node(f"gpu-a100-{i}", "A100-80GB", 8, used=range(8)) for i in range(0, 20, 2)]
    nodes += [node("gpu-a100-3", "A100-80GB", 8), node("gpu-a100-5", "A100-80GB", 8)]
    plan = hand_plan("m", 145.4, gpus=["A100-80GB"])
    with pytest.raises(Unschedulable) as exc:
        Scheduler(OnlyEven()).place(snapshot(nodes), demand(plan))
    msg = exc.value.message
    assert "12 A100-80GB nodes, free GPUs per node: 0 on 10, 8 on 2" in msg
    assert "most free: gpu-a100-3 has 8 of 8 free but odd node" in msg
    assert "2 with 2 free were refused: odd node (gpu-a100-3, gpu-a100-5)" in msg


def test_no_candidates_is_unschedulable_with_reason() -> None:
    empty = Demand("d", "ns", ())
    with pytest.raises(Unschedulable, match="no GPU candidates"):
        Scheduler(BinPack()).place(snapshot([node("n", "T4-16GB", 1)]), empty)


def test_demand_for_keeps_plan_order_and_filters_gpu_types() -> None:
    plan = hand_plan("Qwen/Qwen2.5-7B-Instruct", 15.2)
    d = demand_for(plan, "qwen", "team-ai", {"teamId": "t1"}, gpus=["A100-80GB", "L40S-48GB"])
    assert [c.gpu for c in d.candidates] == [
        c.gpu for c in plan.candidates if c.gpu in ("A100-80GB", "L40S-48GB")
    ]
    assert d.metadata == {"teamId": "t1"}


def _random_cluster(rng: random.Random, n: int) -> list:  # type: ignore[type-arg]
    shapes = [("A100-80GB", 8), ("H100-80GB", 8), ("L40S-48GB", 4), ("T4-16GB", 4)]
    out = []
    for i in range(n):
        gpu, count = rng.choice(shapes)
        used = rng.sample(range(count), rng.randint(0, count))
        out.append(node(f"n{i:03d}", gpu, count, used=used))
    return out


@pytest.mark.parametrize("strategy", [BinPack, Spread])
def test_equivalence_classes_give_the_same_answers_as_visiting_every_node(
    strategy: type[SchedulerStrategy],
) -> None:
    """The index is an optimisation only: a strategy without equivalence keys (every node
    evaluated) must get placements of exactly the same score, replica after replica."""
    rng = random.Random(7)
    nodes = _random_cluster(rng, 60)
    plans = [
        hand_plan("a", 15.2, kv_gb=0.5, heads=28),
        hand_plan("b", 145.4, kv_gb=2.7),
        hand_plan("c", 5.5, kv_gb=0.5, heads=28),
        hand_plan("d", 65.5),
    ]
    fast, slow = Scheduler(strategy()), Scheduler(NoKey(strategy()))
    snap_fast, snap_slow = snapshot(nodes), snapshot(nodes)
    for step in range(80):
        d = demand(rng.choice(plans))
        a, b = fast.fits(snap_fast, d), slow.fits(snap_slow, d)
        assert (a is None) == (b is None), step
        if a is None or b is None:
            continue
        assert (a.score, a.gpu, len(a.gpu_indices)) == (b.score, b.gpu, len(b.gpu_indices))
        # keep both clusters identical: book the fast answer in both
        snap_fast.apply(a)
        snap_slow.apply(a)
    assert isinstance(slow.strategy, NoKey) and slow.strategy.scored > 0


def test_index_visits_classes_not_nodes() -> None:
    counting = NoKey(BinPack())
    counting.equivalence_key = BinPack().equivalence_key  # type: ignore[method-assign]
    nodes = [node(f"a{i}", "A100-80GB", 8) for i in range(500)]
    Scheduler(counting).place(snapshot(nodes), demand(hand_plan("m", 15.2, gpus=["A100-80GB"])))
    assert counting.scored == 1


def test_snapshot_take_and_give_back() -> None:
    snap = snapshot([node("n0", "A100-80GB", 8)])
    snap.take("n0", [0, 1])
    assert snap.node("n0").free_indices == (2, 3, 4, 5, 6, 7)
    with pytest.raises(Conflict, match=r"GPU \[1\] on node 'n0' is not free"):
        snap.take("n0", [1, 2])
    snap.give_back("n0", [0, 1])
    assert snap.node("n0").free == 8
    with pytest.raises(ValueError, match="no GPU index"):
        snap.give_back("n0", [8])
    with pytest.raises(KeyError, match="not in the inventory"):
        snap.node("nope")
    with pytest.raises(ValueError, match="appears twice"):
        ClusterSnapshot([snap.node("n0"), snap.node("n0")])


def test_plain_sequence_works_like_a_snapshot() -> None:
    views = list(snapshot([node("n0", "T4-16GB", 4, used=[0])]))
    p = Scheduler(BinPack()).place(views, demand(hand_plan("m", 5.5, gpus=["T4-16GB"])))
    assert (p.node, p.gpu_indices) == ("n0", [1])
