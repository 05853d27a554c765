"""Logging for `a3s serve`: uvicorn's own configuration plus a filter that takes
credentials out of every line before it is written.

Why a filter on the handlers: uvicorn logs the full path with its query string, both in the
access log (`uvicorn.access`, with `--access-log`) and for every WebSocket handshake
(`uvicorn.error`, always). Browsers cannot set headers on a WebSocket, so the event and log
sockets take the admin token as `?token=`; a refused `?token=sk-a3s-…` would put a whole
API key in the log. A filter on the handlers sees every record they write, whichever
logger it came from, and rewrites it before any formatter runs.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

from a3s_core.keys import PREFIX as KEY_PREFIX
from a3s_core.settings import ADMIN_TOKEN_PREFIX

REDACTED = "<redacted>"
# Query parameters that carry credentials here or in what clients commonly send.
_PARAMS = ("token", "access_token", "api_key", "api-key", "apikey", "key", "password",
           "secret", "auth", "authorization")
_NAMES = "|".join(map(re.escape, _PARAMS))
_QUERY = re.compile(rf"([?&;](?:{_NAMES})=)[^&;\s\"'#]*", re.IGNORECASE)
# A credential of a known shape anywhere in a line (a key pasted into a path, say).
_PREFIXES = f"{re.escape(KEY_PREFIX)}|{re.escape(ADMIN_TOKEN_PREFIX)}"
_SHAPED = re.compile(rf"(?:{_PREFIXES})[A-Za-z0-9_\-%]+")


def redact(text: str) -> str:
    """`text` with credential query values and credential-shaped words replaced."""
    if "=" in text:
        text = _QUERY.sub(lambda m: m.group(1) + REDACTED, text)
    return _SHAPED.sub(REDACTED, text)


class RedactSecrets(logging.Filter):
    """Rewrites a record's message and string arguments with `redact` (never drops it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v
                           for k, v in record.args.items()}
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's default logging configuration with `RedactSecrets` on every handler.
    A handler added to it (for the platform's own loggers, say) should list the same
    `redact` filter."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact"] = {"()": RedactSecrets}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact")
    return config


__all__ = ["REDACTED", "RedactSecrets", "redact", "uvicorn_log_config"]
