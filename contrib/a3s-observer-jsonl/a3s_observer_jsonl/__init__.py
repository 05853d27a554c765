"""Append every A3S event to a JSON-lines file — an audit trail in a dozen lines.

Set `A3S_EVENTS_JSONL=/var/log/a3s/events.jsonl`; without it the plugin does nothing.
"""

from __future__ import annotations

import json
import os

from a3s_core import hookimpl
from a3s_core.types import Event


@hookimpl
def a3s_on_event(event: Event) -> None:
    path = os.environ.get("A3S_EVENTS_JSONL")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(event.envelope()) + "\n")
