"""The Ollama engine for A3S: `pip install a3s-engine-ollama` and `"engine": "ollama"` works."""

from __future__ import annotations

from typing import TYPE_CHECKING

from a3s_core import hookimpl
from a3s_engine_ollama.engine import OllamaEngine

if TYPE_CHECKING:  # the registry type is named by the hook spec; only needed for typing
    from a3s_core.registry import EngineRegistry

__all__ = ["OllamaEngine", "a3s_register_engines"]


@hookimpl
def a3s_register_engines(registry: EngineRegistry) -> None:
    registry.register(OllamaEngine)
