"""The llama.cpp engine for A3S: `pip install a3s-engine-llamacpp[server]` and
`"engine": "llamacpp"` serves a GGUF file, on CPU when the machine has no GPU."""

from __future__ import annotations

from typing import TYPE_CHECKING

from a3s_core import hookimpl
from a3s_engine_llamacpp.engine import LlamaCppEngine, server_for

if TYPE_CHECKING:  # the registry type is named by the hook spec; only needed for typing
    from a3s_core.registry import EngineRegistry

__all__ = ["LlamaCppEngine", "a3s_register_engines", "server_for"]


@hookimpl
def a3s_register_engines(registry: EngineRegistry) -> None:
    registry.register(LlamaCppEngine)
