"""WebSocket streams: deployment events and replica logs (admin token).

- `WS /v1/events?namespace=&deployment=&since=&follow=` — envelopes (`Event.envelope()`),
  in `seq` order. With `since=N`: everything after N from the store, then live, with no gap
  and no duplicate; without it: live events only. `follow=false` sends the backlog and
  closes (1000).
- `WS /v1/deployments/{id}/events?since=` — the same for one deployment; `since` defaults
  to 0 (its whole history), so a watcher that connects after the POST misses nothing.
- `batch=true` (either stream): each message is a JSON array of the envelopes ready at
  that moment, so a busy stream costs one frame per batch rather than one per event.
- `WS /v1/deployments/{id}/logs?tail=&follow=` — replica log lines of the deployment,
  merged: `{"type": "log", "replica", "ts", "line"}`.

Idle connections get `{"type": "heartbeat", "ts", "seq"}` every `heartbeat` seconds
(default 15; `seq` is the last one this connection delivered, so it is safe to resume
from). A client too slow to keep up gets `{"type": "stream.overflow", "resumeFrom": N}`
and a close (1013); it reconnects with `since=N`.

Refusals (wrong or missing token, unknown deployment, bad parameter) happen before the
upgrade: an HTTP denial response (401 / 404 / 422, the API's JSON error body), or, on a
server without the denial extension, a close before accept with 4401 / 4404 / 4422.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect, WebSocketState

from a3s_core.api.deps import admin_token_of_socket, check_admin
from a3s_core.errors import A3SError, InvalidRequest, NotFound
from a3s_core.events import EventBus, EventFilter, SubscriberOverflow
from a3s_core.platform import Platform
from a3s_core.types import Event, LogLine

log = logging.getLogger("a3s.events")
router = APIRouter(tags=["events"])

HEARTBEAT_S = 15.0  # app.state.events_heartbeat_s overrides it; `?heartbeat=` per socket
OVERFLOW_CLOSE = 1013  # "try again later": reconnect with since=resumeFrom
LOG_POLL_S = 1.0  # how often a following log stream looks for new replicas
LATE_TAIL = 1000  # lines of a replica that starts while a client follows the logs


# ---------------------------------------------------------------------- admission


async def _refuse(ws: WebSocket, exc: A3SError) -> None:
    """Refuse the handshake: an HTTP response where the server allows it, else a close."""
    body: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if isinstance(exc, InvalidRequest):
        body["details"] = [{"field": exc.field, "value": exc.value, "message": exc.message}]
    try:
        await ws.send_denial_response(JSONResponse({"error": body}, exc.status_code))
    except RuntimeError:  # no "websocket.http.response" extension
        reason = exc.message.encode()[:120].decode(errors="ignore")
        await ws.close(code=4000 + exc.status_code, reason=reason)


def _int(ws: WebSocket, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = ws.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:
        raise InvalidRequest(
            f"{name}: must be an integer from {lo} to {hi} (got {raw!r})", field=name, value=raw
        )
    return value


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

    SIZE = 4096

    def __init__(self) -> None:
        self.texts: OrderedDict[int, str] = OrderedDict()

    def __call__(self, event: Event) -> str:
        text = self.texts.get(event.seq)
        if text is None:
            text = json.dumps(event.envelope(), separators=(",", ":"), ensure_ascii=False)
            self.texts[event.seq] = text
            if len(self.texts) > self.SIZE:
                self.texts.popitem(last=False)
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
        self.lock = asyncio.Lock()
        self.loop = asyncio.get_running_loop()
        self.last_sent = self.loop.time()
        self.seq = 0  # last event seq delivered (heartbeats carry it)

    async def send(self, text: str) -> None:
        async with self.lock:
            await self.ws.send_text(text)
        self.last_sent = self.loop.time()

    async def send_json(self, payload: dict[str, Any]) -> None:
        await self.send(json.dumps(payload, separators=(",", ":"), ensure_ascii=False))

    async def close(self, code: int, reason: str) -> None:
        if self.ws.application_state == WebSocketState.CONNECTED:
            async with self.lock:
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
    return isinstance(exc, WebSocketDisconnect | OSError) or type(exc).__name__ in (
        "ClientDisconnected",
        "ConnectionClosed",
        "ConnectionClosedOK",
        "ConnectionClosedError",
        "WebSocketDisconnected",
    )


# ---------------------------------------------------------------------- events


async def _stream_events(
    ws: WebSocket, platform: Platform, since: int | None, accept: EventFilter, follow: bool
) -> None:
    heartbeat = _heartbeat(ws)
    batched = _bool(ws, "batch", False)
    if since is None:  # "live only": pin the start so heartbeats carry a resumable seq
        since = await run_in_threadpool(platform.store.last_seq)
    await ws.accept()
    sock = _Socket(ws)
    sock.seq = since
    wire = _wire_of(platform.bus)

    async def backlog_only() -> None:
        while True:
            page = await run_in_threadpool(
                platform.store.events_since,
                sock.seq,
                namespace=accept.namespace,
                deployment_id=accept.deployment_id,
                limit=500,
            )
            if batched and page:
                await sock.send("[" + ",".join(wire(e) for e in page) + "]")
                sock.seq = page[-1].seq
            for e in page if not batched else []:
                await sock.send(wire(e))
                sock.seq = e.seq
            if len(page) < 500:
                await sock.close(1000, f"caught up at seq {sock.seq}")
                return

    async def pump() -> None:
        batches = platform.bus.subscribe_batches(since, accept)
        try:
            async for batch in batches:
                if batched:
                    await sock.send("[" + ",".join(wire(e) for e in batch) + "]")
                else:
                    for e in batch:
                        await sock.send(wire(e))
                        sock.seq = e.seq
                sock.seq = batch[-1].seq
        except SubscriberOverflow as exc:
            message = f"client too slow; reconnect with since={exc.resume_from}"
            await sock.send_json(
                {"type": "stream.overflow", "resumeFrom": exc.resume_from, "message": message}
            )
            await sock.close(OVERFLOW_CLOSE, message)
        finally:
            await batches.aclose()

    await _run(
        sock,
        backlog_only if not follow else pump,
        lambda: sock.heartbeats(heartbeat),
        sock.until_disconnect,
    )


@router.websocket("/v1/events")
async def events(ws: WebSocket) -> None:
    try:
        platform = await _admit(ws)
        since = _int(ws, "since", None, 0, 2**63 - 1)
        follow = _bool(ws, "follow", True)
        _bool(ws, "batch", False)
        accept = EventFilter(
            namespace=ws.query_params.get("namespace") or None,
            deployment_id=ws.query_params.get("deployment") or None,
        )
        _heartbeat(ws)
    except A3SError as exc:
        await _refuse(ws, exc)
        return
    await _stream_events(ws, platform, since, accept, follow)


@router.websocket("/v1/deployments/{deployment_id}/events")
async def deployment_events(ws: WebSocket, deployment_id: str) -> None:
    try:
        platform = await _admit(ws, deployment_id)
        since = _int(ws, "since", 0, 0, 2**63 - 1)
        follow = _bool(ws, "follow", True)
        _bool(ws, "batch", False)
        _heartbeat(ws)
    except A3SError as exc:
        await _refuse(ws, exc)
        return
    await _stream_events(ws, platform, since, EventFilter(deployment_id=deployment_id), follow)


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

    async def discover() -> None:
        first = True
        try:
            while True:
                for rid in await replica_ids():
                    if rid not in readers:
                        readers[rid] = asyncio.ensure_future(
                            read(rid, tail if first else max(tail, LATE_TAIL))
                        )
                first = False
                await asyncio.sleep(LOG_POLL_S)
        finally:
            for t in readers.values():
                t.cancel()

    async def send() -> None:
        while True:
            await sock.send_json(await queue.get())

    await _run(sock, discover, send, lambda: sock.heartbeats(heartbeat), sock.until_disconnect)


def _why(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc) or type(exc).__name__


__all__ = ["router"]
