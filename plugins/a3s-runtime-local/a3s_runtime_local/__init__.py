"""A3S `local` runtime: this machine's GPUs (NVML) or its CPU, with the engine's real
command run as a supervised subprocess."""

from __future__ import annotations

from a3s_core import hookimpl
from a3s_core.registry import RuntimeRegistry
from a3s_runtime_local.runtime import LocalOptions, LocalRuntime

__all__ = ["LocalOptions", "LocalRuntime"]


@hookimpl
def a3s_register_runtimes(registry: RuntimeRegistry) -> None:
    registry.register(LocalRuntime)
