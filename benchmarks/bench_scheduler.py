"""Scheduler throughput: 1,000 replicas onto a 5,000-node inventory.

Prints placements per second and the p50 / p99 / max decision time (one
`Scheduler.place` call). Each placement is also applied to the snapshot, as a
scheduling pass does after the store booked it, so the cluster fills as it goes.

    python benchmarks/bench_scheduler.py [--nodes 5000] [--replicas 1000]
        [--strategy binpack|spread] [--no-equivalence] [--freeze-gc] [--seed 1]

Target: at least 2,000 placements/s (kube-scheduler's CI threshold at 5,000 nodes is
680-810 pods/s). `--no-equivalence` shows the cost of a strategy that gives no
equivalence key (every node evaluated), for comparison. The slowest decisions are
Python's full garbage collections over the inventory's objects; `--freeze-gc` moves the
inventory out of the collector's way (`gc.freeze()`), as a long-running controller may.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import time
from typing import ClassVar

from a3s_core.catalog import load_catalog
from a3s_core.contracts import Demand, NodeView, SchedulerStrategy
from a3s_core.errors import Unschedulable
from a3s_core.scheduling import ClusterSnapshot, Scheduler, node_views
from a3s_core.types import Candidate, GpuDevice, Node

GB = 1_000_000_000
# node shape → share of the inventory
SHAPES = [
    (("A100-80GB", 8), 0.30),
    (("H100-80GB", 8), 0.20),
    (("L40S-48GB", 4), 0.20),
    (("L40S-48GB", 8), 0.05),
    (("T4-16GB", 4), 0.15),
    (("L4-24GB", 8), 0.10),
]
# model → weights in GB (FP16 or AWQ), KV floor, share of the replicas
MODELS = [
    ("qwen2.5-72b", 145.4, 2.7, 0.15),
    ("qwen2.5-72b-awq", 41.0, 2.7, 0.15),
    ("qwen2.5-32b", 65.5, 2.1, 0.15),
    ("qwen2.5-7b", 15.2, 0.5, 0.2),
    ("llama-3.1-8b-awq", 5.7, 1.1, 0.2),
    ("deepseek-v3-awq", 120.0, 100.0, 0.05),
    ("bge-large-zh", 0.7, 0.1, 0.1),
]


def inventory(n: int, rng: random.Random, busy: float) -> list[Node]:
    shapes, weights = zip(*SHAPES, strict=True)
    catalog = load_catalog()
    out = []
    for i in range(n):
        gpu, count = rng.choices(shapes, weights)[0]
        used = {j for j in range(count) if rng.random() < busy}
        t = catalog.get(gpu)
        assert t is not None
        out.append(
            Node(
                name=f"node-{i:05d}",
                gpu_product=t.name,
                gpu_memory_mib=t.memory_mib,
                gpu_count=count,
                gpus=[
                    GpuDevice(index=j, allocated_to="existing" if j in used else None)
                    for j in range(count)
                ],
                labels={"topology.kubernetes.io/zone": f"zone-{i % 3}"},
            )
        )
    return out


def candidates(weight_gb: float, kv_gb: float) -> tuple[Candidate, ...]:
    """Smallest TP group per GPU type that holds weights + 1.5 GB overhead + KV floor."""
    out = []
    for g in load_catalog().gpus:
        usable = int(g.memory_bytes * 0.9)
        for tp in (1, 2, 4, 8):
            per_gpu = int(weight_gb * GB / tp + 1.5 * GB)
            if per_gpu + kv_gb * GB / tp <= usable:
                out.append(
                    Candidate(
                        gpu=g.name, gpu_count=tp, tensor_parallel_size=tp, dtype="bfloat16",
                        weights_per_gpu_bytes=int(weight_gb * GB / tp),
                        overhead_per_gpu_bytes=int(1.5 * GB), usable_per_gpu_bytes=usable,
                        kv_budget_per_gpu_bytes=usable - per_gpu, max_model_len=8192,
                        concurrent_sequences=1.0,
                    )
                )
                break
    return tuple(sorted(out, key=lambda c: (c.gpu_count, c.usable_per_gpu_bytes)))


class NoEquivalence(SchedulerStrategy):
    name: ClassVar[str] = "no-equivalence"

    def __init__(self, inner: SchedulerStrategy) -> None:
        self.inner = inner

    def score(self, node: NodeView, demand: Demand, candidate: Candidate) -> float:
        return self.inner.score(node, demand, candidate)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--replicas", type=int, default=1000)
    ap.add_argument("--strategy", default="binpack")
    ap.add_argument("--busy", type=float, default=0.3, help="share of GPUs already in use")
    ap.add_argument("--no-equivalence", action="store_true")
    ap.add_argument("--freeze-gc", action="store_true", help="gc.freeze() after loading")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    from a3s_scheduler_standard import BinPack, Spread  # the shipped strategies plugin

    strategy: SchedulerStrategy = {"binpack": BinPack, "spread": Spread}[args.strategy]()
    if args.no_equivalence:
        strategy = NoEquivalence(strategy)
    rng = random.Random(args.seed)
    nodes = inventory(args.nodes, rng, args.busy)
    names, weights_gb, kv_gb, shares = zip(*MODELS, strict=True)
    demands = [
        Demand(deployment=n, namespace="bench", candidates=candidates(w, k))
        for n, w, k in zip(names, weights_gb, kv_gb, strict=True)
    ]
    workload = rng.choices(demands, shares, k=args.replicas)

    t0 = time.perf_counter()
    snap = ClusterSnapshot(node_views(nodes))
    sched = Scheduler(strategy)
    sched.fits(snap, workload[0])  # builds the strategy's index (part of the snapshot cost)
    build_s = time.perf_counter() - t0
    if args.freeze_gc:
        gc.collect()
        gc.freeze()

    decisions: list[float] = []
    placed = unschedulable = 0
    start = time.perf_counter()
    for d in workload:
        t = time.perf_counter()
        try:
            p = sched.place(snap, d)
        except Unschedulable:
            decisions.append(time.perf_counter() - t)
            unschedulable += 1
            continue
        decisions.append(time.perf_counter() - t)
        snap.apply(p)
        placed += 1
    total_s = time.perf_counter() - start

    decisions.sort()
    p99 = decisions[min(len(decisions) - 1, int(len(decisions) * 0.99))]
    rate = len(workload) / total_s
    label = args.strategy + (" (no equivalence keys)" if args.no_equivalence else "")
    label += ", gc frozen" if args.freeze_gc else ""
    print(f"strategy:            {label}")
    print(f"inventory:           {len(nodes)} nodes, {sum(n.gpu_count for n in nodes)} GPUs, "
          f"{args.busy:.0%} busy at start")
    print(f"snapshot build:      {build_s * 1000:.1f} ms (views + index, once per pass)")
    print(f"replicas:            {len(workload)} ({placed} placed, {unschedulable} unschedulable)")
    print(f"placements/s:        {rate:,.0f} (target >= 2,000)")
    print(f"decision time:       p50 {statistics.median(decisions) * 1e6:.0f} us, "
          f"p99 {p99 * 1e6:.0f} us, max {decisions[-1] * 1e6:.0f} us")
    return 0 if rate >= 2000 or args.no_equivalence else 1


if __name__ == "__main__":
    sys.exit(main())
