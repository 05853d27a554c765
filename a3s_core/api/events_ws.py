"""WebSocket streams (admin token): deployment events and replica logs.

- `WS /v1/events?namespace=&deployment=&since=&follow=&batch=&heartbeat=`
- `WS /v1/deployments/{id}/events?since=…` (one deployment; `since` defaults to 0)
- `WS /v1/deployments/{id}/logs?tail=&follow=&heartbeat=`

Envelopes in `seq` order; `since=N` resumes with no gap and no duplicate; idle sockets get
heartbeats; a client too slow to keep up is told where to resume and closed (1013).
Refusals (token, unknown deployment, bad parameter) happen before the upgrade, as an HTTP
response with the API's error body. The protocol is described in docs/events.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect, WebSocketDisconnected, WebSocketState

from a3s_core.api.deps import admin_token_of_socket, check_admin
from a3s_core.api.errors import a3s_error_body
from a3s_core.api.ws_protocol import SEND_MANY
from a3s_core.errors import A3SError, InvalidRequest, NotFound
from a3s_core.events import EventBus, EventFilter, SubscriberOverflow
from a3s_core.platform import Platform
from a3s_core.types import Event, LogLine
from a3s_core.types.spec import check_dns_label, short

log = logging.getLogger("a3s.events")
router = APIRouter(tags=["events"])

HEARTBEAT_S = 15.0  # app.state.events_heartbeat_s overrides it; `?heartbeat=` per socket
OVERFLOW_CLOSE = 1013  # "try again later": reconnect with since=resumeFrom
LOG_POLL_S = 1.0  # how often a following log stream looks for new replicas
LATE_TAIL = 1000  # lines of a replica that starts while a client follows the logs
# The last message of a followed log stream whose deployment was deleted (then 1000).
LOG_END: dict[str, Any] = {"type": "log.end", "reason": "deployment deleted"}


# ---------------------------------------------------------------------- admission


async def _refuse(ws: WebSocket, exc: A3SError) -> None:
    """Refuse the handshake: an HTTP response where the server allows it, else a close."""
    body = a3s_error_body(exc)  # as the HTTP API answers: values cut short, secrets hidden
    try:
        await ws.send_denial_response(JSONResponse({"error": body}, exc.status_code))
    except RuntimeError:  # no "websocket.http.response" extension
        reason = body["message"].encode()[:120].decode(errors="ignore")
        await ws.close(code=4000 + exc.status_code, reason=reason)


async def unknown_socket(scope: Scope, receive: Receive, send: Send) -> None:
    """A WebSocket on a path no route has: a 404 naming the sockets there are. (Starlette
    closes before accepting, which servers answer as 403 with no body: read as a bad
    token, not as a typo in the path.)"""
    path = short(str(scope.get("path", "")))
    await _refuse(
        WebSocket(scope, receive, send),
        NotFound(
            f"no WebSocket at {path}; the sockets are /v1/events, "
            "/v1/deployments/{id}/events and /v1/deployments/{id}/logs"
        ),
    )


# ASCII digits only: int() also takes " 1", "1_000" and full-width digits, and a number of
# thousands of digits costs time to convert.
_INTEGER = re.compile(r"-?[0-9]{1,18}")


def _int(ws: WebSocket, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = ws.query_params.get(name)
    if raw is None or raw == "":
        return default
    value = int(raw) if _INTEGER.fullmatch(raw) else None
    if value is None or not lo <= value <= hi:
        raise InvalidRequest(
            f"{name}: must be an integer from {lo} to {hi} (got {short(raw)})",
            field=name, value=raw,
        )
    return value


def _namespace(ws: WebSocket) -> str | None:
    raw = ws.query_params.get("namespace") or None
    if raw is not None:  # one that cannot exist would stream nothing, forever
        try:
            check_dns_label(raw, "namespace")
        except ValueError as exc:
            raise InvalidRequest(f"namespace: {exc}", field="namespace", value=raw) from None
    return raw


def _bool(ws: WebSocket, name: str, default: bool) -> bool:
    raw = (ws.query_params.get(name) or "").lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise InvalidRequest(f"{name}: must be true or false (got {raw!r})", field=name, value=raw)


def _heartbeat(ws: WebSocket) -> float:
    raw = ws.query_params.get("heartbeat")
    if raw is None or raw == "":
        return float(getattr(ws.app.state, "events_heartbeat_s", HEARTBEAT_S))
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.05 <= value <= 300:
        raise InvalidRequest(
            f"heartbeat: must be a number of seconds from 0.05 to 300 (got {raw!r})",
            field="heartbeat",
            value=raw,
        )
    return value


async def _admit(ws: WebSocket, deployment_id: str | None = None) -> Platform:
    """Authenticate (and check the deployment exists) before the upgrade; raises A3SError."""
    platform: Platform = ws.app.state.platform
    check_admin(platform, admin_token_of_socket(ws))
    if deployment_id is not None:
        await run_in_threadpool(platform.store.get_deployment, deployment_id)
    return platform


# ---------------------------------------------------------------------- sending


class _WireCache:
    """seq → JSON text, so an event going to many sockets is serialised once. One per bus
    (several platforms may share a process in tests, each with its own seq space)."""

    SIZE = 4096  # texts, and
    MAX_CHARS = 16 << 20  # characters in all: a few large events must not pin much memory

    def __init__(self) -> None:
        self.texts: OrderedDict[int, str] = OrderedDict()
        self.chars = 0

    def __call__(self, event: Event) -> str:
        text = self.texts.get(event.seq)
        if text is None:
            text = _dumps(event.envelope())
            self.texts[event.seq] = text
            self.chars += len(text)
            while len(self.texts) > self.SIZE or (
                self.chars > self.MAX_CHARS and len(self.texts) > 1
            ):
                self.chars -= len(self.texts.popitem(last=False)[1])
        return text


def _dumps(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            # A lone surrogate (os.fsdecode of a non-UTF-8 path, say) has no UTF-8 form:
            # the frame could not be sent and every stream reaching this event would end
            # with 1011, again on each resume. Escaped (\udcxx), it is valid JSON text.
            text = json.dumps(payload, separators=(",", ":"))
    return text


_CACHES: weakref.WeakKeyDictionary[EventBus, _WireCache] = weakref.WeakKeyDictionary()


def _wire_of(bus: EventBus) -> _WireCache:
    cache = _CACHES.get(bus)
    if cache is None:
        cache = _CACHES[bus] = _WireCache()
    return cache


def _now() -> str:
    return datetime.now(UTC).isoformat()


class _Socket:
    """One sender at a time, and when it last sent (for heartbeats)."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        # One socket write for many messages, where the server offers it (a3s serve does).
        self._send_many = ws.scope.get("extensions", {}).get(SEND_MANY, {}).get("send")
        self.lock = asyncio.Lock()
        self.loop = asyncio.get_running_loop()
        self.last_sent = self.loop.time()
        self.seq = 0  # last event seq delivered (heartbeats carry it)

    async def send(self, text: str) -> None:
        async with self.lock:
            await self.ws.send_text(text)
        self.last_sent = self.loop.time()

    async def send_all(self, texts: list[str]) -> None:
        """One message each, back to back (the lock taken once for the lot)."""
        async with self.lock:
            if self._send_many is not None:
                await self._send_many(texts)
            else:
                for text in texts:
                    await self.ws.send_text(text)
        self.last_sent = self.loop.time()

    async def send_json(self, payload: dict[str, Any]) -> None:
        await self.send(_dumps(payload))

    async def close(self, code: int, reason: str, last: dict[str, Any] | None = None) -> None:
        """Close; `last` is sent first, with nothing (a heartbeat) between the two."""
        if self.ws.application_state == WebSocketState.CONNECTED:
            async with self.lock:
                if last is not None:
                    await self.ws.send_text(_dumps(last))
                await self.ws.close(code=code, reason=reason)

    async def heartbeats(self, interval: float) -> None:
        while True:
            await asyncio.sleep(max(0.0, self.last_sent + interval - self.loop.time()))
            if self.loop.time() - self.last_sent >= interval:
                await self.send_json({"type": "heartbeat", "ts": _now(), "seq": self.seq})

    async def until_disconnect(self) -> None:
        """Read (and ignore) client messages until the client goes away."""
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return


async def _run(sock: _Socket, *jobs: Callable[[], Awaitable[None]]) -> None:
    """Run the jobs until the first one ends (a disconnect, an overflow, the end of the
    stream), then stop the others. A vanished client is not an error."""
    tasks = [asyncio.ensure_future(job()) for job in jobs]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
    for t in done:
        exc = t.exception()
        if exc is not None and not _is_disconnect(exc):
            log.warning("event stream ended by an error: %r", exc)
            with contextlib.suppress(Exception):
                await sock.close(1011, "internal error")


def _is_disconnect(exc: BaseException) -> bool:
    # uvicorn raises ClientDisconnected (an OSError); Starlette WebSocketDisconnect(ed).
    return isinstance(exc, WebSocketDisconnect | WebSocketDisconnected | OSError)


# ---------------------------------------------------------------------- events


@dataclass
class _Stream:
    """What an event socket asked for (validated before the upgrade)."""

    since: int | None
    accept: EventFilter
    follow: bool
    batched: bool
    heartbeat: float

    @classmethod
    def parse(cls, ws: WebSocket, accept: EventFilter, default_since: int | None) -> _Stream:
        return cls(
            since=_int(ws, "since", default_since, 0, 2**63 - 1),
            accept=accept,
            follow=_bool(ws, "follow", True),
            batched=_bool(ws, "batch", False),
            heartbeat=_heartbeat(ws),
        )


async def _stream_events(ws: WebSocket, platform: Platform, want: _Stream) -> None:
    since, accept = want.since, want.accept
    if since is None:  # "live only": pin the start so heartbeats carry a resumable seq
        since = await run_in_threadpool(platform.store.last_seq)
    await ws.accept()
    sock = _Socket(ws)
    sock.seq = since
    wire = _wire_of(platform.bus)

    async def deliver(events: list[Event]) -> None:
        texts = [wire(e) for e in events]
        if want.batched:
            await sock.send("[" + ",".join(texts) + "]")
        else:
            await sock.send_all(texts)
        sock.seq = events[-1].seq

    async def backlog_only() -> None:
        while True:
            page = await run_in_threadpool(
                platform.store.events_since,
                sock.seq,
                namespace=accept.namespace,
                deployment_id=accept.deployment_id,
                limit=500,
            )
            if page:
                await deliver(page)
            if len(page) < 500:
                await sock.close(1000, f"caught up at seq {sock.seq}")
                return

    async def pump() -> None:
        batches = platform.bus.subscribe_batches(since, accept)
        try:
            async for batch in batches:
                await deliver(batch)
        except SubscriberOverflow as exc:
            message = f"client too slow; reconnect with since={exc.resume_from}"
            await sock.send_json(
                {"type": "stream.overflow", "resumeFrom": exc.resume_from, "message": message}
            )
            await sock.close(OVERFLOW_CLOSE, message)
        finally:
            await batches.aclose()

    beats = lambda: sock.heartbeats(want.heartbeat)  # noqa: E731
    await _run(sock, pump if want.follow else backlog_only, beats, sock.until_disconnect)


@router.websocket("/v1/events")
async def events(ws: WebSocket) -> None:
    try:
        # An unknown deployment id is refused (404), as on its own path: it would stream
        # nothing, forever.
        deployment_id = ws.query_params.get("deployment") or None
        platform = await _admit(ws, deployment_id)
        accept = EventFilter(namespace=_namespace(ws), deployment_id=deployment_id)
        want = _Stream.parse(ws, accept, default_since=None)
    except A3SError as exc:
        await _refuse(ws, exc)
        return
    await _stream_events(ws, platform, want)


@router.websocket("/v1/deployments/{deployment_id}/events")
async def deployment_events(ws: WebSocket, deployment_id: str) -> None:
    try:
        platform = await _admit(ws, deployment_id)
        want = _Stream.parse(ws, EventFilter(deployment_id=deployment_id), default_since=0)
    except A3SError as exc:
        await _refuse(ws, exc)
        return
    await _stream_events(ws, platform, want)


# ---------------------------------------------------------------------- logs


def _log_json(line: LogLine) -> dict[str, Any]:
    return {"type": "log", "replica": line.replica_id, "ts": line.ts.isoformat(), "line": line.line}


@router.websocket("/v1/deployments/{deployment_id}/logs")
async def deployment_logs(ws: WebSocket, deployment_id: str) -> None:
    try:
        platform = await _admit(ws, deployment_id)
        tail = _int(ws, "tail", 100, 0, 100_000) or 0
        follow = _bool(ws, "follow", False)
        heartbeat = _heartbeat(ws)
    except A3SError as exc:
        await _refuse(ws, exc)
        return
    await ws.accept()
    sock = _Socket(ws)
    runtime = platform.runtime

    async def replica_ids() -> list[str]:
        rows = await run_in_threadpool(platform.store.replicas, deployment_id)
        return [r.id for r in rows]

    if not follow:  # every replica's tail, merged by time, then close

        async def snapshot() -> None:
            async def one(rid: str) -> list[dict[str, Any]]:
                try:
                    return [_log_json(x) async for x in runtime.logs(rid, tail, False)]
                except Exception as exc:  # one replica's failure must not hide the others
                    return [{"type": "log.error", "replica": rid, "message": _why(exc)}]

            batches = await asyncio.gather(*(one(rid) for rid in await replica_ids()))
            for item in sorted((x for b in batches for x in b), key=lambda x: x.get("ts", "")):
                await sock.send_json(item)
            await sock.close(1000, "end of logs")

        await _run(sock, snapshot, sock.until_disconnect)
        return

    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)  # back-pressure
    readers: dict[str, asyncio.Task[None]] = {}

    async def read(rid: str, n: int) -> None:
        sent, reported = 0, ""
        while True:
            try:
                async for x in runtime.logs(rid, n if sent == 0 else 0, True):
                    await queue.put(_log_json(x))
                    sent += 1
                return  # the runtime ended the stream: the replica is gone
            except NotFound:
                if rid not in await replica_ids():
                    return
                why = "no logs yet"  # booked but not created yet: try again shortly
            except Exception as exc:
                why = _why(exc)
            if why != reported and why != "no logs yet":
                await queue.put({"type": "log.error", "replica": rid, "message": why})
                reported = why
            await asyncio.sleep(2.0)
            if rid not in await replica_ids():
                return

    async def deleted() -> bool:
        try:
            row = await run_in_threadpool(platform.store.get_deployment, deployment_id)
        except NotFound:
            return True
        return row.status == "deleted"

    async def discover() -> None:
        first = True
        try:
            while True:
                ids = await replica_ids()
                for rid in ids:
                    if rid not in readers:
                        readers[rid] = asyncio.ensure_future(
                            read(rid, tail if first else max(tail, LATE_TAIL))
                        )
                first = False
                # Deleted (every replica stopped and removed first) and every reader has
                # queued its replica's last line: the end goes behind them in the queue.
                if not ids and all(t.done() for t in readers.values()) and await deleted():
                    await queue.put(LOG_END)
                    await asyncio.Event().wait()  # `send` closes the socket
                await asyncio.sleep(LOG_POLL_S)
        finally:
            for t in readers.values():
                t.cancel()

    async def send() -> None:
        while True:
            item = await queue.get()
            if item is LOG_END:
                await sock.close(1000, "deployment deleted", last={**LOG_END, "ts": _now()})
                return
            await sock.send_json(item)

    await _run(sock, discover, send, lambda: sock.heartbeats(heartbeat), sock.until_disconnect)


def _why(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc) or type(exc).__name__


__all__ = ["router"]
