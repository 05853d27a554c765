"""Load-balancing policies (registered via `a3s_register_balancers`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

from a3s_core.types import ReplicaLoad


class Balancer(ABC):
    """Picks one replica per request. One instance per deployment, so it may keep state."""

    name: ClassVar[str]

    @abstractmethod
    def pick(self, replicas: Sequence[ReplicaLoad]) -> ReplicaLoad:
        """Choose from a non-empty list of healthy replicas with their live load."""
