"""A3S `sim` runtime: a simulated GPU cluster (inventory file) whose replicas are real
engine-simulator processes on loopback ports. The platform's embedded default."""

from __future__ import annotations

from a3s_core import hookimpl
from a3s_core.registry import RuntimeRegistry
from a3s_runtime_sim.inventory import load_inventory
from a3s_runtime_sim.runtime import SimFigures, SimOptions, SimRuntime

__all__ = ["SimFigures", "SimOptions", "SimRuntime", "load_inventory"]


@hookimpl
def a3s_register_runtimes(registry: RuntimeRegistry) -> None:
    registry.register(SimRuntime)
