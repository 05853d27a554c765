"""The data plane at the ASGI level: which paths are the gateway's, and how it answers.

The gateway's paths are matched before FastAPI's routing and middleware and answered with
raw ASGI messages. Bodies are forwarded as bytes, never parsed into models, so routing,
dependency solving, Starlette's Request/Response objects and the task group a
StreamingResponse spawns per answer would be pure cost on the hot path — together more
than half of the gateway's 1 ms budget (benchmarks/bench_gateway.py).

    route = route_of(scope)               # None: not a data-plane path
    reply = AsgiReply(send, scope)
    await reply.whole(200, headers, body)  # or start() + chunk() ... + end()
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

# An ASGI extension some servers offer (`a3s serve`'s: a3s_core/api/server.py): in
# scope["extensions"][WHOLE]["send"], a callable (status, headers, body) -> bool that
# sends a whole answer in one pass, or returns False having done nothing.
WHOLE = "a3s.http.whole"

POST_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings"})
MODELS = "/v1/models"
BY_PATH = "/d/"  # /d/{namespace}/{name}/v1/...


@dataclass(frozen=True, slots=True)
class Route:
    """A data-plane request: the path the replica serves, and what the URL names."""

    path: str  # "/v1/chat/completions", "/v1/models", … ("" for an unknown /d/ path)
    method: str  # the one method this path takes
    namespace: str | None = None  # set on /d/{namespace}/{name}/v1/...
    name: str | None = None
    model: str | None = None  # set on /v1/models/{model}
    asked: str = ""  # the path as the client sent it (for messages)


def match(path: str) -> Route | None:
    """The route for a URL path, or None when the path belongs to the control plane."""
    asked = path
    namespace = name = None
    if path.startswith(BY_PATH):
        parts = path.split("/", 4)  # "", "d", namespace, name, rest
        if len(parts) < 4 or not parts[2] or not parts[3]:
            return None
        namespace, name = parts[2], parts[3]
        path = "/" + parts[4] if len(parts) == 5 else ""
    if path in POST_PATHS:
        return Route(path, "POST", namespace, name, asked=asked)
    if path == MODELS:
        return Route(MODELS, "GET", namespace, name, asked=asked)
    if path.startswith(MODELS + "/"):
        return Route(MODELS, "GET", namespace, name, path[len(MODELS) + 1 :], asked=asked)
    if namespace is not None:  # everything under /d/ is the gateway's, known or not
        return Route("", "", namespace, name, asked=asked)
    return None


# match()'s answers by path: a gateway sees few distinct paths (one per deployment and
# endpoint), and a Route is immutable. Bounded, since clients choose the paths.
_MATCHED: dict[str, Route | None] = {}
MATCHED_MAX = 4096


def route_of(scope: Scope) -> Route | None:
    """`match` on the request's path below the app's mount point (ASGI `root_path`, set
    when a proxy serves the platform under a prefix)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    try:
        return _MATCHED[path]
    except KeyError:
        route = match(path)
        if len(_MATCHED) < MATCHED_MAX:
            _MATCHED[path] = route
        return route


class Reply:
    """One HTTP answer; remembers whether it has begun. `AsgiReply` writes it through
    ASGI `send`; `a3s serve`'s data-plane lane (a3s_core/api/fast_lane.py) straight to
    the connection."""

    __slots__ = ("started",)
    started: bool

    async def start(self, status: int, headers: Headers) -> None:
        """The status and headers: with a Content-Length among them the body must add up
        to it, else it is sent chunked."""
        raise NotImplementedError

    async def chunk(self, data: bytes) -> None:
        raise NotImplementedError

    async def end(self, data: bytes = b"") -> None:
        raise NotImplementedError

    async def whole(self, status: int, headers: Headers, body: bytes) -> None:
        """A complete answer; its Content-Length is added (not among `headers`)."""
        raise NotImplementedError


class AsgiReply(Reply):
    """An answer over ASGI `send`."""

    __slots__ = ("_whole", "send")

    def __init__(self, send: Send, scope: Scope | None = None) -> None:
        self.send = send
        self.started = False
        ext = scope.get("extensions") if scope is not None else None
        found = ext.get(WHOLE) if ext else None
        self._whole: Callable[[int, Headers, bytes], bool] | None = (
            found["send"] if found else None)

    async def start(self, status: int, headers: Headers) -> None:
        self.started = True
        await self.send({"type": "http.response.start", "status": status, "headers": headers})

    async def chunk(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self, data: bytes = b"") -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": False})

    async def whole(self, status: int, headers: Headers, body: bytes) -> None:
        """A complete answer with its Content-Length (in one pass where the server offers
        the WHOLE extension)."""
        if self._whole is not None and not self.started and self._whole(status, headers, body):
            self.started = True
            return
        await self.start(status, [*headers, (b"content-length", str(len(body)).encode())])
        await self.end(body)


def encode_headers(headers: dict[str, str]) -> Headers:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
