"""A3S GPU inference platform — the core. Plugins import from here only."""

from __future__ import annotations

import pluggy

hookimpl = pluggy.HookimplMarker("a3s")
"""Mark a plugin function as the implementation of an `a3s_*` hook."""

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
