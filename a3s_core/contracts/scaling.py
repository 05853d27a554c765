"""Autoscaling rules (registered via `a3s_register_scaling_rules`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from a3s_core.types import AutoscalingSpec, ScalingSignals, Vote


class ScalingRule(ABC):
    """Votes up / down / hold from a deployment's signals. The autoscaler combines votes:
    any 'up' scales up; 'down' needs every rule to vote 'down'."""

    name: ClassVar[str]

    @abstractmethod
    def vote(self, signals: ScalingSignals, policy: AutoscalingSpec) -> Vote:
        """One vote with a reason that names the figure and the threshold."""
