"""The OpenAI-compatible data plane: API-key auth, routing, balancing, streaming."""

from a3s_core.gateway.app import Gateway
from a3s_core.gateway.directory import Directory, Snapshot

__all__ = ["Directory", "Gateway", "Snapshot"]
