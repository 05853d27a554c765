"""binpack and spread: registration through the entry point and the scoring rules."""

from __future__ import annotations

import itertools

import pytest
from a3s_scheduler_standard import BinPack, Spread

from a3s_core.catalog import load_catalog
from a3s_core.contracts import Demand, NodeView, SchedulerStrategy
from a3s_core.plugins import Plugins
from a3s_core.scheduling import Scheduler
from a3s_core.settings import Settings
from a3s_core.types import Candidate

GIB = 2**30


def cand(gpu: str, count: int) -> Candidate:
    t = load_catalog().get(gpu)
    assert t is not None
    usable = int(t.memory_bytes * 0.9)
    return Candidate(
        gpu=t.name, gpu_count=count, tensor_parallel_size=count, dtype="bfloat16",
        weights_per_gpu_bytes=10 * GIB, overhead_per_gpu_bytes=GIB,
        usable_per_gpu_bytes=usable, kv_budget_per_gpu_bytes=usable - 11 * GIB,
        max_model_len=8192, concurrent_sequences=1.0,
    )


def view(name: str, gpu: str, count: int, free: int, **labels: str) -> NodeView:
    return NodeView(
        name=name, gpu=gpu, gpu_type=load_catalog().get(gpu), gpu_count=count,
        free_indices=tuple(range(count - free, count)), labels=dict(labels),
    )


def best(strategy: SchedulerStrategy, nodes: list[NodeView], *cands: Candidate) -> tuple[str, str]:
    p = Scheduler(strategy).place(nodes, Demand("d", "ns", tuple(cands)))
    return p.node, p.gpu or ""


def test_registered_through_the_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A3S_LOAD_PLUGINS", "scheduler-standard")
    plugins = Plugins()
    assert plugins.schedulers.names() == ["binpack", "spread"]
    assert plugins.schedulers.owner("binpack") == "scheduler-standard"
    assert Settings().scheduler in plugins.schedulers  # the platform default exists


def test_binpack_fewest_gpus_first() -> None:
    nodes = [view("t4", "T4-16GB", 4, 4), view("l40s", "L40S-48GB", 4, 4)]
    # two T4s hold less memory than one L40S, but take two GPUs and a TP group
    assert best(BinPack(), nodes, cand("T4-16GB", 2), cand("L40S-48GB", 1)) == ("l40s", "L40S-48GB")


def test_binpack_least_memory_among_equal_gpu_counts() -> None:
    nodes = [view("a100", "A100-80GB", 8, 8), view("l40s", "L40S-48GB", 4, 4)]
    assert best(BinPack(), nodes, cand("A100-80GB", 1), cand("L40S-48GB", 1)) == (
        "l40s", "L40S-48GB"
    )


def test_binpack_fullest_node_when_memory_is_alike() -> None:
    # H100-80GB and A100-80GB differ by < 1 %: node fullness decides, not 361 MiB
    nodes = [view("a100", "A100-80GB", 8, 8), view("h100", "H100-80GB", 8, 3)]
    assert best(BinPack(), nodes, cand("A100-80GB", 2), cand("H100-80GB", 2)) == (
        "h100", "H100-80GB"
    )
    nodes = [view("a100-empty", "A100-80GB", 8, 8), view("a100-busy", "A100-80GB", 8, 2)]
    assert best(BinPack(), nodes, cand("A100-80GB", 2))[0] == "a100-busy"


def test_binpack_keeps_the_more_powerful_gpu_of_equal_memory_free() -> None:
    nodes = [view("a100", "A100-80GB", 8, 8), view("h100", "H100-80GB", 8, 8)]
    # whatever the plan's order, an A100 serves before an H100 when both hold the model
    assert best(BinPack(), nodes, cand("H100-80GB", 1), cand("A100-80GB", 1))[1] == "A100-80GB"
    assert best(BinPack(), nodes, cand("A100-80GB", 1), cand("H100-80GB", 1))[1] == "A100-80GB"


def test_spread_emptiest_share_first() -> None:
    nodes = [
        view("busy8", "A100-80GB", 8, 5),
        view("empty4", "A100-80GB", 4, 4),
        view("half8", "A100-80GB", 8, 4),
    ]
    assert best(Spread(), nodes, cand("A100-80GB", 1))[0] == "empty4"
    nodes = nodes[:1] + nodes[2:]
    assert best(Spread(), nodes, cand("A100-80GB", 1))[0] == "busy8"  # 4/8 free after > 3/8


@pytest.mark.parametrize("strategy", [BinPack(), Spread()])
def test_equal_keys_mean_equal_scores(strategy: SchedulerStrategy) -> None:
    """The equivalence contract: nodes with one key score the same for every candidate."""
    nodes = [
        view(f"n{i}", gpu, count, free, zone=f"z{i % 2}")
        for i, (gpu, count, free) in enumerate(
            itertools.product(["A100-80GB", "L40S-48GB"], [4, 8], range(1, 5))
        )
    ]
    nodes += [view(f"m{i}", n.gpu or "", n.gpu_count, n.free) for i, n in enumerate(nodes)]
    cands = (cand("A100-80GB", 1), cand("L40S-48GB", 1), cand("A100-80GB", 2))
    demand = Demand("d", "ns", cands)
    by_key: dict[object, set[float]] = {}
    for n in nodes:
        for c in cands:
            if c.gpu == n.gpu and n.free >= c.gpu_count:
                key = (strategy.equivalence_key(n), c.gpu, c.gpu_count)
                by_key.setdefault(key, set()).add(strategy.score(n, demand, c))
    assert by_key and all(len(scores) == 1 for scores in by_key.values())
