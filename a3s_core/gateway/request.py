"""Reading a data-plane request: the headers the gateway uses, the API key, the body."""

from __future__ import annotations

from collections.abc import Iterable

from a3s_core.gateway import errors
from a3s_core.gateway.asgi import Receive
from a3s_core.gateway.errors import GatewayError
from a3s_core.gateway.proxy import FORWARDED_REQUEST_HEADERS

# The key comes as `Authorization: Bearer` (OpenAI SDKs), `api-key` (Azure OpenAI SDKs) or
# `x-api-key` (Anthropic-style clients), as LiteLLM's proxy accepts; none is forwarded.
KEY_HEADERS = ("api-key", "x-api-key")
# content-length: an oversized body is refused before it is read (see read_body).
WANTED_HEADERS = frozenset({"authorization", "host", "content-length", *KEY_HEADERS,
                            *FORWARDED_REQUEST_HEADERS})
# Raw (ASGI, lower-case) name → name: only the headers the gateway reads are decoded.
_WANTED_RAW = {name.encode("latin-1"): name for name in WANTED_HEADERS}


class ClientGone(Exception):
    """The client disconnected before its request was read."""


def read_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The wanted headers, in one pass over the raw ones (lower-case names, as ASGI's
    `scope["headers"]`)."""
    headers: dict[str, str] = {}
    wanted = _WANTED_RAW
    for raw_name, raw_value in raw:
        name = wanted.get(raw_name)
        if name is not None:
            headers[name] = raw_value.decode("latin-1")
    return headers


def api_key(headers: dict[str, str]) -> str:
    """The key sent, a Bearer token first; 401 missing_api_key without one."""
    key = _bearer(headers.get("authorization"))
    if key is not None:
        return key
    for name in KEY_HEADERS:
        value = headers.get(name, "").strip()
        if value:
            return value
    raise errors.missing_key()


async def read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    """The whole body, or 413 past `limit` bytes (by its Content-Length before reading)."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), limit)
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        part = message.get("body", b"")
        size += len(part)
        if size > limit:
            raise too_large(None, limit)
        parts.append(part)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


def bounded(body: bytes, headers: dict[str, str], limit: int) -> bytes:
    """A body the server read whole, or the 413 `read_body` gives past `limit` bytes."""
    if len(body) > limit:
        declared = headers.get("content-length", "")
        raise too_large(int(declared) if declared.isdigit() else None, limit)
    return body


def too_large(size: int | None, limit: int) -> GatewayError:
    """`size`: the declared Content-Length; None for a body sent without one (chunked),
    whose reading stops at the limit, so its whole size is never known."""
    said = f"{size} bytes" if size is not None else f"over {limit} bytes (sent chunked)"
    return GatewayError(413, f"request body is {said}; at most {limit} are accepted",
                        code="body_too_large")


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
