"""The unschedulable sentence: what one replica needed and what the cluster has.

e.g. "needs 2× A100-80GB on one node; A100-80GB nodes: gpu-a100-0 has 0 of 8 free,
gpu-a100-1 has 1 of 8 free; the cluster has no H100-80GB nodes". Large node groups are
summarised: how many nodes have how many free GPUs, and the best few by name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from a3s_core.contracts import Demand, NodeView
from a3s_core.scheduling.views import is_schedulable

if TYPE_CHECKING:
    from a3s_core.scheduling.snapshot import ClusterSnapshot

LIST_EACH_UP_TO = 4  # node groups this small are listed node by node
BEST_FEW = 3


def explain(
    snap: ClusterSnapshot,
    demand: Demand,
    refused: Mapping[str, Mapping[str, Sequence[str]]] | None = None,
) -> str:
    """`refused` is GPU type → strategy reason → nodes the strategy filtered out."""
    refused = refused or {}
    need: dict[str, int] = {}
    for c in demand.candidates:  # a type may appear twice (two TP sizes): the least counts
        need[c.gpu] = min(need.get(c.gpu, c.gpu_count), c.gpu_count)
    present = [g for g in need if snap.of_type(g)]
    missing = [g for g in need if g not in present]
    wanted = _either([f"{need[g]}× {g}" for g in present + missing])
    parts = [f"needs {wanted} on one node"]
    for gpu in present:
        parts.append(_describe_type(gpu, need[gpu], snap.of_type(gpu), refused.get(gpu, {})))
    if missing:
        parts.append(f"the cluster has no {_either(missing)} nodes")
    return "; ".join(parts)


def _describe_type(
    gpu: str, need: int, nodes: Sequence[NodeView], refused: Mapping[str, Sequence[str]]
) -> str:
    reason_of = {name: why for why, names in refused.items() for name in names}
    total = sum(n.free for n in nodes if is_schedulable(n))
    split = ""
    if total >= need > max(n.free for n in nodes):
        split = f" ({total} free in all, but a replica's GPUs must be on one node)"
    if len(nodes) <= LIST_EACH_UP_TO:
        return f"{gpu} nodes: " + ", ".join(_one(n, need, reason_of) for n in nodes) + split

    counts = Counter(n.free for n in nodes)
    spread = ", ".join(f"{free} on {k}" for free, k in sorted(counts.items()))
    text = f"{len(nodes)} {gpu} nodes, free GPUs per node: {spread}{split}"
    best = sorted(nodes, key=lambda n: (-n.free, n.name))[:BEST_FEW]
    text += "; most free: " + ", ".join(_one(n, need, reason_of) for n in best)
    cordoned = [n.name for n in nodes if n.free >= need and not is_schedulable(n)]
    if cordoned:
        text += f"; {len(cordoned)} with {need} free are cordoned ({_names(cordoned)})"
    for why, names in refused.items():
        text += f"; {len(names)} with {need} free were refused: {why} ({_names(names)})"
    return text


def _one(node: NodeView, need: int, reason_of: Mapping[str, str]) -> str:
    text = f"{node.name} has {node.free} of {node.gpu_count} free"
    if node.free >= need and not is_schedulable(node):
        text += " but is cordoned"
    elif node.name in reason_of:
        text += f" but {reason_of[node.name]}"
    return text


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:BEST_FEW])
    return shown if len(names) <= BEST_FEW else f"{shown} and {len(names) - BEST_FEW} more"


def _either(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]
