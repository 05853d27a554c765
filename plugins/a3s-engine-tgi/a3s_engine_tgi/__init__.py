"""The TGI engine for A3S (TGI for LLMs, TEI for embedding models): `"engine": "tgi"`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from a3s_core import hookimpl
from a3s_engine_tgi.engine import TgiEngine

if TYPE_CHECKING:  # the registry type is named by the hook spec; only needed for typing
    from a3s_core.registry import EngineRegistry

__all__ = ["TgiEngine", "a3s_register_engines"]


@hookimpl
def a3s_register_engines(registry: EngineRegistry) -> None:
    registry.register(TgiEngine)
