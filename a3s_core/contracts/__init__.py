"""Base classes plugins implement (public surface)."""

from a3s_core.contracts.balancer import Balancer
from a3s_core.contracts.engine import Engine, LaunchContext, render_extra_args
from a3s_core.contracts.runtime import Runtime
from a3s_core.contracts.scaling import ScalingRule
from a3s_core.contracts.scheduler import Demand, NodeView, SchedulerStrategy

__all__ = [
    "Balancer",
    "Demand",
    "Engine",
    "LaunchContext",
    "NodeView",
    "Runtime",
    "ScalingRule",
    "SchedulerStrategy",
    "render_extra_args",
]
