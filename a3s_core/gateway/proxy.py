"""Forward one request to a replica: pick, send, retry once before the first byte, stream.

The rule that keeps retries safe: nothing is retried once the client has received a byte.
Non-streaming answers are read whole before anything is sent (so a replica dying
mid-generation is still retried); streaming answers are held until their first chunk
arrives, then passed through chunk by chunk as they come.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response, StreamingResponse

from a3s_core.contracts import Balancer
from a3s_core.gateway.directory import DeploymentInfo
from a3s_core.gateway.errors import GatewayError, unavailable
from a3s_core.gateway.load import DeploymentStats, LoadBook, ReplicaStats
from a3s_core.gateway.upstream import UpstreamError, UpstreamPool, UpstreamResponse

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

ATTEMPTS = 2  # the first try and one retry on another replica
WATCH_AFTER_S = 0.25
FORWARDED_REQUEST_HEADERS = ("content-type", "accept", "x-request-id", "traceparent")
PASSED_RESPONSE_HEADERS = ("content-type", "x-request-id", "content-encoding")


@dataclass
class Failure:
    reason: str
    response: Response | None = None  # an upstream 5xx/429 to pass on if no retry helps


def _fmt_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _until_disconnect(receive: Receive) -> None:
    # The body has been read, so the next message the server sends is the disconnect.
    while (await receive())["type"] != "http.disconnect":
        pass


class DisconnectWatch:
    """Cancel this request's task if the client leaves while we wait on a replica: the
    cancellation closes the upstream connection, which makes the engine abort the
    generation. The watcher (a task blocked in `receive()`) starts only after
    `WATCH_AFTER_S`: most answers that finish sooner never pay for it, and a client that
    leaves sooner costs at most that much wasted generation."""

    def __init__(self, receive: Receive | None) -> None:
        self.left = False
        self._task: asyncio.Task[None] | None = None
        self._me = asyncio.current_task()
        self._receive = receive
        self._timer = (
            asyncio.get_running_loop().call_later(WATCH_AFTER_S, self._start)
            if receive is not None and self._me is not None else None
        )

    def _start(self) -> None:
        assert self._receive is not None
        self._task = asyncio.ensure_future(_until_disconnect(self._receive))
        self._task.add_done_callback(self._done)

    def _done(self, t: asyncio.Task[None]) -> None:
        if not t.cancelled() and t.exception() is None and self._me is not None:
            self.left = True
            self._me.cancel()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.remove_done_callback(self._done)
            self._task.cancel()


class Forwarder:
    def __init__(self, pool: UpstreamPool, book: LoadBook) -> None:
        self.pool = pool
        self.book = book

    async def forward(
        self,
        dep: DeploymentInfo,
        replicas: list[ReplicaStats],
        balancer: Balancer,
        path: str,
        method: str,
        body: bytes,
        headers: dict[str, str],
        receive: Receive | None = None,
    ) -> Response:
        dstats = self.book.deployment(dep.id)
        dstats.arrivals.add(0.0)
        fwd_headers = {k: headers[k] for k in FORWARDED_REQUEST_HEADERS if k in headers}
        tried: set[str] = set()
        failure: Failure | None = None
        watch = DisconnectWatch(receive)
        try:
            for _ in range(ATTEMPTS):
                st = self._choose(replicas, balancer, tried)
                if st is None:
                    break
                tried.add(st.info.id)
                result = await self._attempt(st, dstats, path, method, body, fwd_headers)
                if isinstance(result, Response):
                    return result
                failure = result
        except asyncio.CancelledError:
            if not watch.left:
                raise  # cancelled from outside (shutdown): not ours to swallow
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            return Response(status_code=499)  # nobody reads it; nginx's "client closed"
        finally:
            watch.close()
        dstats.errors.add(0.0)
        where = f"{dep.namespace}/{dep.name}"
        if failure is None:
            raise self._none_routable(where, replicas)
        if failure.response is not None:
            return failure.response
        raise unavailable(
            f"no replica of deployment {where} could be reached "
            f"({len(tried)} tried; last: {failure.reason})"
        )

    def _choose(
        self, replicas: list[ReplicaStats], balancer: Balancer, tried: set[str]
    ) -> ReplicaStats | None:
        now = time.monotonic()
        candidates = [s for s in replicas if s.info.id not in tried and not s.ejected(now)]
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        stale = self.book.stale_after_s
        choice = balancer.pick([s.as_load(now, stale) for s in candidates])
        for s in candidates:
            if s.info.id == choice.replica_id:
                return s
        raise GatewayError(
            500, f"balancer {balancer.name!r} picked replica {choice.replica_id!r}, "
            "which it was not offered", type_="server_error", code="balancer_error",
        )

    def _none_routable(self, where: str, replicas: list[ReplicaStats]) -> GatewayError:
        now = time.monotonic()
        waits = [s.ejected_until - now for s in replicas if s.ejected_until is not None]
        last = next((s.last_error for s in replicas if s.last_error), "")
        return unavailable(
            f"all {len(replicas)} replicas of deployment {where} are down (ejected after "
            f"repeated failures; probed again within {max(waits, default=0):.0f}s)"
            + (f"; last error: {last}" if last else ""),
            retry_after_s=min(waits, default=None),
        )

    async def _attempt(
        self,
        st: ReplicaStats,
        dstats: DeploymentStats,
        path: str,
        method: str,
        body: bytes,
        headers: dict[str, str],
    ) -> Response | Failure:
        book = self.book
        st.in_flight += 1
        st.requests += 1
        started = time.monotonic()
        handed_off = False
        resp: UpstreamResponse | None = None
        try:
            resp = await self.pool.request(st.info.url, method, path, headers, body)
            status = resp.status
            if status >= 500 or status == 429:
                payload = await resp.read()
                if status >= 500:
                    book.failed(st, f"HTTP {status} from {st.info.url}")
                return Failure(
                    f"HTTP {status} from replica {st.info.id}",
                    Response(payload, status, self._headers(resp, st)),
                )
            if resp.content_type == "text/event-stream":
                first = await resp.next_chunk()
                first_at = time.monotonic()
                handed_off = True  # from here the stream owns resp and the in-flight count
                return StreamingResponse(
                    self._stream(resp, first, st, dstats, started, first_at),
                    status_code=status,
                    headers={**self._headers(resp, st), "cache-control": "no-cache",
                             "x-accel-buffering": "no"},
                )
            payload = await resp.read()
            took = time.monotonic() - started
            self._record(st, dstats, None, took, ok=status < 400)
            return Response(payload, status, self._headers(resp, st))
        except (UpstreamError, TimeoutError) as exc:
            # Connect refused, reset, or the replica died before its answer was complete:
            # the client has received nothing, so another replica may answer instead.
            reason = f"{_fmt_error(exc)} from {st.info.url}"
            book.failed(st, reason)
            return Failure(reason)
        finally:
            if not handed_off:
                st.in_flight -= 1
                if resp is not None:
                    resp.release()  # closes the connection if the body was not read whole

    async def _stream(
        self,
        resp: UpstreamResponse,
        first: bytes,
        st: ReplicaStats,
        dstats: DeploymentStats,
        started: float,
        first_at: float,
    ) -> AsyncIterator[bytes]:
        complete = False
        try:
            if first:
                yield first
            async for chunk in resp.chunks():
                yield chunk
            complete = True
        except (UpstreamError, TimeoutError) as exc:
            # Bytes already went out; the best left is to say so in the stream's own
            # terms (vLLM sends the same shape), so clients raise instead of hanging.
            self.book.failed(st, f"{_fmt_error(exc)} mid-stream from {st.info.url}")
            yield _sse_error(f"replica {st.info.id} failed mid-stream: {_fmt_error(exc)}")
        finally:
            st.in_flight -= 1
            # An unfinished exchange closes the connection: the replica stops generating.
            resp.release()
            if complete:
                self._record(st, dstats, first_at - started, time.monotonic() - started, ok=True)

    def _record(
        self, st: ReplicaStats, dstats: DeploymentStats, ttft: float | None, total: float,
        ok: bool,
    ) -> None:
        self.book.succeeded(st)
        if not ok:
            return
        now = time.monotonic()
        if ttft is not None:
            st.ttft.add(ttft, now)
            dstats.ttft.add(ttft, now)
        st.total.add(total, now)
        dstats.total.add(total, now)
        # What the client waited for before anything arrived: TTFT when streaming, the
        # whole answer otherwise. This is the latency the autoscaler's P99 rule reads.
        dstats.first_byte.add(total if ttft is None else ttft, now)

    @staticmethod
    def _headers(resp: UpstreamResponse, st: ReplicaStats) -> dict[str, str]:
        out = {k: resp.headers[k] for k in PASSED_RESPONSE_HEADERS if k in resp.headers}
        out["x-a3s-replica"] = st.info.id
        return out


def _sse_error(message: str) -> bytes:
    body = {"error": {"message": message, "type": "server_error", "param": None,
                      "code": "replica_failed"}}
    return b"data: " + json.dumps(body).encode() + b"\n\n"
