"""Filter → score → choose: where one replica goes. Pure: booking is the store's job.

Built-in filters come first and are answered by the snapshot's index without visiting
nodes: the node's GPU type is one of the demand's candidates, the node has at least
`candidate.gpu_count` free GPUs (a TP group lives on ONE node), the node is schedulable.
Then the strategy's own `filter` and `score` run once per equivalence class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from a3s_core.catalog import GpuCatalog, load_catalog
from a3s_core.contracts import Demand, NodeView, SchedulerStrategy
from a3s_core.errors import Unschedulable
from a3s_core.registry import SchedulerRegistry
from a3s_core.scheduling.explain import explain
from a3s_core.scheduling.snapshot import ClusterSnapshot
from a3s_core.types import Candidate, Placement, SizingPlan


@dataclass
class Rejections:
    """Nodes that had room but a strategy filter refused: GPU type → reason → names."""

    by_type: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def add(self, gpu: str, reason: str, names: Sequence[str]) -> None:
        self.by_type.setdefault(gpu, {}).setdefault(reason, []).extend(names)


class Scheduler:
    """One strategy plus the framework around it. Cheap to create; holds no cluster state."""

    def __init__(self, strategy: SchedulerStrategy, catalog: GpuCatalog | None = None) -> None:
        self.strategy = strategy
        self.catalog = catalog or load_catalog()

    @classmethod
    def named(
        cls, registry: SchedulerRegistry, name: str, catalog: GpuCatalog | None = None
    ) -> Scheduler:
        """The scheduler for strategy `name` (UnknownPlugin lists what is installed)."""
        return cls(registry.get(name)(), catalog)

    def place(self, nodes: Sequence[NodeView], demand: Demand) -> Placement:
        """The best node and GPU indices for one replica of `demand`.

        Pass a ClusterSnapshot to reuse its indexes across placements (the fast path);
        any other sequence is indexed for this call. Raises Unschedulable with a sentence
        naming what was needed and what the cluster has."""
        snap = nodes if isinstance(nodes, ClusterSnapshot) else ClusterSnapshot(nodes)
        if not demand.candidates:
            raise Unschedulable(
                f"{_who(demand)} has no GPU candidates in its sizing plan; nothing to place"
            )
        found = self._best(snap, demand)
        if isinstance(found, Rejections):
            raise Unschedulable(explain(snap, demand, found.by_type))
        score, node, cand = found
        return Placement(
            node=node.name,
            gpu=node.gpu,
            gpu_indices=list(pick_indices(node.free_indices, cand.gpu_count)),
            tensor_parallel_size=cand.tensor_parallel_size,
            max_model_len=cand.max_model_len,
            score=score,
        )

    def fits(self, nodes: Sequence[NodeView], demand: Demand) -> Placement | None:
        """`place`, answering None instead of raising (for what-if questions)."""
        try:
            return self.place(nodes, demand)
        except Unschedulable:
            return None

    def _best(
        self, snap: ClusterSnapshot, demand: Demand
    ) -> tuple[float, NodeView, Candidate] | Rejections:
        strategy = self.strategy
        classes = snap.classes(strategy)
        rejected = Rejections()
        best: tuple[float, NodeView, Candidate] | None = None
        for cand in demand.candidates:
            if cand.gpu_count < 1:
                continue
            by_free = classes.get(cand.gpu)
            if not by_free:
                continue
            for free in sorted(by_free):
                if free < cand.gpu_count:
                    continue
                for names in by_free[free].values():
                    node = snap.node(next(iter(names)))
                    why = strategy.filter(node, demand, cand)
                    if why is not None:
                        rejected.add(cand.gpu, why, list(names))
                        continue
                    score = strategy.score(node, demand, cand)
                    if best is None or score > best[0]:
                        best = (score, node, cand)
        return rejected if best is None else best


def pick_indices(free: Sequence[int], k: int) -> tuple[int, ...]:
    """Which of a node's free GPUs a TP group of `k` gets: neighbouring indices, so the
    group shares NVLink / PCIe switches. Preference: an aligned contiguous block (start a
    multiple of k, buddy style, which keeps larger aligned blocks whole), then the
    contiguous block in the shortest run of free GPUs (best fit), then the lowest one;
    with no contiguous block, the k free GPUs spanning the fewest indices."""
    f = sorted(free)
    if k > len(f):
        raise ValueError(f"{k} GPUs wanted but only {len(f)} free: {f}")
    if k <= 0:
        return ()
    # run length of the contiguous stretch each free index belongs to
    run_len: dict[int, int] = {}
    start = 0
    for i in range(1, len(f) + 1):
        if i == len(f) or f[i] != f[i - 1] + 1:
            for j in range(start, i):
                run_len[f[j]] = i - start
            start = i
    best: tuple[tuple[int, int, int], int] | None = None
    for i in range(len(f) - k + 1):
        if f[i + k - 1] - f[i] != k - 1:
            continue
        rank = (0 if f[i] % k == 0 else 1, run_len[f[i]], f[i])
        if best is None or rank < best[0]:
            best = (rank, i)
    if best is None:  # no contiguous block: tightest window of k free GPUs
        i = min(range(len(f) - k + 1), key=lambda j: (f[j + k - 1] - f[j], f[j]))
        return tuple(f[i : i + k])
    i = best[1]
    return tuple(f[i : i + k])


def demand_for(
    plan: SizingPlan,
    deployment: str,
    namespace: str,
    metadata: Mapping[str, Any] | None = None,
    gpus: Sequence[str] | None = None,
) -> Demand:
    """One replica's demand from a sizing plan: any of its candidates (optionally only
    those on the GPU types in `gpus`), in the plan's order (best first)."""
    cands = tuple(c for c in plan.candidates if gpus is None or c.gpu in gpus)
    return Demand(
        deployment=deployment,
        namespace=namespace,
        candidates=cands,
        metadata=dict(metadata or {}),
    )


def _who(demand: Demand) -> str:
    return f"deployment {demand.namespace}/{demand.deployment}"
