"""Built-in sizing (trylast implementation of `a3s_size`). Placeholder until sizing lands."""

from __future__ import annotations
