"""A3S scheduling strategies: `binpack` (the platform default) and `spread`."""

from __future__ import annotations

from a3s_core import hookimpl
from a3s_core.registry import SchedulerRegistry
from a3s_scheduler_standard.strategies import BinPack, Spread

__all__ = ["BinPack", "Spread"]


@hookimpl
def a3s_register_schedulers(registry: SchedulerRegistry) -> None:
    registry.register(BinPack)
    registry.register(Spread)
