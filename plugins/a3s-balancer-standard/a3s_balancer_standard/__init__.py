"""The standard load-balancing policies: least-queue (default), least-load, weighted,
prefix-aware."""

from __future__ import annotations

from typing import TYPE_CHECKING

from a3s_balancer_standard.policies import LeastLoad, LeastQueue, Weighted
from a3s_balancer_standard.prefix import PrefixAware
from a3s_core import hookimpl

if TYPE_CHECKING:
    from a3s_core.registry import BalancerRegistry

__all__ = ["LeastLoad", "LeastQueue", "PrefixAware", "Weighted", "a3s_register_balancers"]


@hookimpl
def a3s_register_balancers(registry: BalancerRegistry) -> None:
    registry.register(LeastQueue)
    registry.register(LeastLoad)
    registry.register(Weighted)
    registry.register(PrefixAware)
