"""How TGI's and TEI's clap-based launchers take `extra_args`."""

from __future__ import annotations

import json
from typing import Any

from a3s_core.contracts.argv import Option

# Booleans that take a value: TGI's `sharded` (`Option<bool>`, a value is required) and
# TEI's `auto_truncate` (`num_args = 0..=1`, default true: off must be said as
# `--auto-truncate false`). Every other boolean is a presence switch.
VALUE_BOOLEANS = frozenset({"sharded", "auto_truncate"})


def render_clap(flag: str, key: str, value: Any) -> list[Option]:
    """Switches are bare flags (a False is left out), `Option<bool>` takes true/false, lists
    repeat the flag (clap appends each occurrence to a Vec), dicts are JSON."""
    if key in VALUE_BOOLEANS and isinstance(value, bool):
        return [(flag, ["true" if value else "false"])]
    if value is True:
        return [(flag, [])]
    if value is False or value is None:
        return []
    if isinstance(value, list | tuple):
        return [(flag, [str(v)]) for v in value]
    if isinstance(value, dict):
        return [(flag, [json.dumps(value, separators=(",", ":"))])]
    return [(flag, [str(value)])]
