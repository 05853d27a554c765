"""Scheduling strategies (registered via `a3s_register_schedulers`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from a3s_core.types import Candidate, GpuType


@dataclass(frozen=True, slots=True)
class NodeView:
    """A node as the scheduler sees it at one instant (allocations from the store applied)."""

    name: str
    gpu: str | None
    gpu_type: GpuType | None
    gpu_count: int
    free_indices: tuple[int, ...]
    labels: dict[str, str] = field(default_factory=dict)
    utilization: float | None = None
    schedulable: bool = True

    @property
    def free(self) -> int:
        return len(self.free_indices)

    @property
    def used(self) -> int:
        return self.gpu_count - self.free


@dataclass(frozen=True, slots=True)
class Demand:
    """What one replica needs: any one of the plan's candidates, on a single node."""

    deployment: str
    namespace: str
    candidates: tuple[Candidate, ...]
    metadata: dict[str, Any] = field(default_factory=dict)

    def candidate_for(self, gpu: str | None) -> Candidate | None:
        return next((c for c in self.candidates if c.gpu == gpu), None)


class SchedulerStrategy(ABC):
    """Filter then score. The framework has already checked GPU type and free count."""

    name: ClassVar[str]

    def filter(self, node: NodeView, demand: Demand, candidate: Candidate) -> str | None:
        """Why `node` cannot take this replica (a short phrase), or None when it can."""
        return None

    @abstractmethod
    def score(self, node: NodeView, demand: Demand, candidate: Candidate) -> float:
        """Higher is better. Called only for nodes that passed every filter."""

    def equivalence_key(self, node: NodeView) -> object | None:
        """Nodes with the same key score the same and filter the same, so the framework may
        evaluate one per key. Return None to have every node evaluated (the safe default)."""
        return None
