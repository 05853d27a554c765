"""The cluster at one instant, indexed so that a placement does not visit every node.

Nodes are bucketed by (GPU type, free GPU count); inside a bucket, by the strategy's
equivalence key. A placement therefore evaluates one node per (type, free count, key)
class instead of every node: a 5,000-node cluster of a handful of node shapes has a few
dozen classes. `take` / `give_back` keep the indexes current, so one snapshot serves a
whole scheduling pass (place → book in the store → take here → place the next replica).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

from a3s_core.contracts import NodeView, SchedulerStrategy
from a3s_core.errors import Conflict
from a3s_core.scheduling.views import is_schedulable
from a3s_core.types import Placement

# node name → None: an insertion-ordered set, so "first in class" is deterministic.
NameSet = dict[str, None]
# GPU type → free count → equivalence key → names
ClassIndex = dict[str, dict[int, dict[object, NameSet]]]


class _Unique:
    """Key for nodes whose strategy gives no equivalence key: every node its own class."""

    __slots__ = ()


_UNIQUE = _Unique()


class _StrategyIndex:
    def __init__(self, strategy: SchedulerStrategy) -> None:
        self.strategy = strategy
        self.classes: ClassIndex = {}
        self.key_of: dict[str, object] = {}

    def key(self, node: NodeView) -> object:
        k = self.strategy.equivalence_key(node)
        return (_UNIQUE, node.name) if k is None else k

    def add(self, node: NodeView) -> None:
        if node.gpu is None or node.free == 0 or not is_schedulable(node):
            return  # can never take a GPU replica: keep it out of the hot path
        k = self.key(node)
        self.key_of[node.name] = k
        by_free = self.classes.setdefault(node.gpu, {})
        by_free.setdefault(node.free, {}).setdefault(k, {})[node.name] = None

    def remove(self, node: NodeView) -> None:
        k = self.key_of.pop(node.name, None)
        if k is None or node.gpu is None:
            return
        by_key = self.classes[node.gpu][node.free]
        names = by_key[k]
        del names[node.name]
        if not names:
            del by_key[k]
            if not by_key:
                del self.classes[node.gpu][node.free]


class ClusterSnapshot(Sequence[NodeView]):
    """A Sequence of NodeViews (so it can be passed wherever one is expected) that also
    keeps the indexes `Scheduler.place` uses. Not thread-safe: one pass, one owner."""

    def __init__(self, nodes: Iterable[NodeView]) -> None:
        self._list: list[NodeView] = []
        self._pos: dict[str, int] = {}
        for n in nodes:
            if n.name in self._pos:
                raise ValueError(f"node {n.name!r} appears twice in the inventory")
            self._pos[n.name] = len(self._list)
            self._list.append(n)
        # GPU type → names, every node of that type (full and cordoned ones too): for
        # explanations and the cluster view.
        self._by_type: dict[str | None, NameSet] = {}
        for n in self._list:
            self._by_type.setdefault(n.gpu, {})[n.name] = None
        self._indexes: dict[int, _StrategyIndex] = {}

    # -- Sequence -------------------------------------------------------------------------

    @overload
    def __getitem__(self, i: int) -> NodeView: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[NodeView]: ...
    def __getitem__(self, i: int | slice) -> NodeView | Sequence[NodeView]:
        return self._list[i]

    def __len__(self) -> int:
        return len(self._list)

    def __iter__(self) -> Iterator[NodeView]:
        return iter(self._list)

    # -- lookups --------------------------------------------------------------------------

    def get(self, name: str) -> NodeView | None:
        i = self._pos.get(name)
        return None if i is None else self._list[i]

    def node(self, name: str) -> NodeView:
        i = self._pos.get(name)
        if i is None:
            raise KeyError(f"node {name!r} is not in the inventory")
        return self._list[i]

    def of_type(self, gpu: str | None) -> list[NodeView]:
        return [self._list[self._pos[n]] for n in self._by_type.get(gpu, {})]

    def gpu_types(self) -> list[str]:
        return [t for t in self._by_type if t is not None]

    def classes(self, strategy: SchedulerStrategy) -> ClassIndex:
        """The (type, free count, equivalence key) index for `strategy`, built on first use."""
        idx = self._indexes.get(id(strategy))
        if idx is None or idx.strategy is not strategy:
            idx = _StrategyIndex(strategy)
            for n in self._list:
                idx.add(n)
            self._indexes[id(strategy)] = idx
        return idx.classes

    # -- changes --------------------------------------------------------------------------

    def take(self, name: str, indices: Iterable[int]) -> NodeView:
        """Mark GPUs as used (after the store booked them). Raises Conflict when one of
        them is not free in this snapshot."""
        node = self.node(name)
        wanted = set(indices)
        missing = wanted.difference(node.free_indices)
        if missing:
            raise Conflict(
                f"GPU {sorted(missing)} on node {name!r} is not free "
                f"(free: {list(node.free_indices)})"
            )
        return self._replace(node, tuple(i for i in node.free_indices if i not in wanted))

    def give_back(self, name: str, indices: Iterable[int]) -> NodeView:
        """Mark GPUs as free again (a replica was deleted). Indices outside the node's
        GPU count are refused: they would invent GPUs."""
        node = self.node(name)
        back = set(indices)
        bad = sorted(i for i in back if i < 0 or i >= node.gpu_count)
        if bad:
            raise ValueError(f"node {name!r} has no GPU index {bad} (it has {node.gpu_count})")
        return self._replace(node, tuple(sorted(back.union(node.free_indices))))

    def apply(self, placement: Placement) -> NodeView:
        return self.take(placement.node, placement.gpu_indices)

    def release(self, placement: Placement) -> NodeView:
        return self.give_back(placement.node, placement.gpu_indices)

    def _replace(self, old: NodeView, free: tuple[int, ...]) -> NodeView:
        new = dataclasses.replace(old, free_indices=free)
        for idx in self._indexes.values():
            idx.remove(old)
            idx.add(new)
        self._list[self._pos[old.name]] = new
        return new
