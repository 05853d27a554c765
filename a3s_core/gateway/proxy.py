"""Forward one request to a replica: pick, send, retry once before the first byte, stream.

The rule that keeps retries safe: nothing is retried once the client has received a byte.
Non-streaming answers are read whole before anything is sent (so a replica dying
mid-generation is still retried); streaming answers are held until their first chunk
arrives, then passed through chunk by chunk as they come, in the request's own task (so
a client that leaves cancels the upstream read, and no per-answer task is spawned).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

from a3s_core.contracts import Balancer
from a3s_core.gateway.asgi import Headers, Receive, Reply
from a3s_core.gateway.directory import DeploymentInfo
from a3s_core.gateway.errors import GatewayError, unavailable
from a3s_core.gateway.load import DeploymentStats, LoadBook, ReplicaStats
from a3s_core.gateway.upstream import UpstreamError, UpstreamPool, UpstreamResponse
from a3s_core.types import RouteRequest

ATTEMPTS = 2  # the first try and one retry on another replica
WATCH_AFTER_S = 0.25
FORWARDED_REQUEST_HEADERS = ("content-type", "accept", "x-request-id", "traceparent")
PASSED_RESPONSE_HEADERS = ("content-type", "x-request-id", "content-encoding")
_PASSED = [(k, k.encode()) for k in PASSED_RESPONSE_HEADERS]
STREAM_HEADERS: Headers = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


@dataclass
class Failure:
    reason: str
    # An upstream 5xx/429 (status, headers, body) to pass on if no retry helps.
    answer: tuple[int, Headers, bytes] | None = None


def _fmt_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _until_disconnect(receive: Receive) -> None:
    # The body has been read, so the next message the server sends is the disconnect.
    while (await receive())["type"] != "http.disconnect":
        pass


class DisconnectWatch:
    """Cancel this request's task if the client leaves while we wait on a replica: the
    cancellation closes the upstream connection, which makes the engine abort the
    generation. The watcher (a task blocked in `receive()`) starts only once the request
    has waited `WATCH_AFTER_S` (`Watches` starts it): most answers that finish sooner
    never pay for it, and a client that leaves sooner costs at most that much wasted
    generation."""

    __slots__ = ("_me", "_receive", "_task", "_watches", "left")

    def __init__(self, receive: Receive | None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.left = False
        self._task: asyncio.Task[None] | None = None
        self._watches: Watches | None = None  # waiting there to be started
        # (With the loop given, Python 3.11 skips the getpid() system call of finding it.)
        self._me = asyncio.current_task(loop) if receive is not None else None
        self._receive = receive if self._me is not None else None

    @property
    def armed(self) -> bool:
        """Whether there is a client to watch for (and it has not been closed)."""
        return self._receive is not None

    def start(self) -> None:
        receive = self._receive
        if receive is None or self._task is not None:
            return
        self._task = asyncio.ensure_future(_until_disconnect(receive))
        self._task.add_done_callback(self._done)

    def _done(self, t: asyncio.Task[None]) -> None:
        if not t.cancelled() and t.exception() is None and self._me is not None:
            self.left = True
            self._me.cancel()

    def close(self) -> None:
        # Let go of the request (its task, the server's receive) and leave `Watches` at
        # once: nothing of a finished request is kept for the sweep.
        self._receive = None
        self._me = None
        if self._watches is not None:
            self._watches.discard(self)
            self._watches = None
        if self._task is not None:
            self._task.remove_done_callback(self._done)
            self._task.cancel()
            self._task = None


class Watches:
    """Starts each request's watcher once it has waited `WATCH_AFTER_S`, on one timer for
    all requests (a uvloop timer made and cancelled per request was ~0.5 µs of CPU and two
    allocations, for answers that nearly all finish long before). The requests waiting are
    held in arrival order in a dict a closed watch leaves at once, so what is held is what
    is in flight: a queue of every request of the last `WATCH_AFTER_S` kept thousands of
    finished ones alive, long enough to be promoted and walked again by the garbage
    collector's older generations (a millisecond-long pause each, at the p99). Each sweep
    starts those due and re-arms for the oldest left; a watcher starts at most `SWEEP_S`
    late."""

    SWEEP_S = 0.05

    def __init__(self) -> None:
        self._pending: dict[DisconnectWatch, float] = {}  # watch → when it is due
        self._timer: asyncio.TimerHandle | None = None

    def add(self, watch: DisconnectWatch, now: float | None = None) -> None:
        if not watch.armed:
            return
        now = time.monotonic() if now is None else now
        self._pending[watch] = now + WATCH_AFTER_S
        watch._watches = self
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(WATCH_AFTER_S, self._sweep)

    def discard(self, watch: DisconnectWatch) -> None:
        self._pending.pop(watch, None)

    def _sweep(self) -> None:
        self._timer = None
        pending = self._pending
        now = time.monotonic()
        while pending:
            watch, due = next(iter(pending.items()))
            if due > now:
                wait = max(due - now, self.SWEEP_S)
                self._timer = asyncio.get_running_loop().call_later(wait, self._sweep)
                return
            del pending[watch]
            watch.start()

    def __len__(self) -> int:
        return len(self._pending)


class Forwarder:
    def __init__(self, pool: UpstreamPool, book: LoadBook) -> None:
        self.pool = pool
        self.book = book
        self.watches = Watches()
        self.loop = asyncio.get_running_loop()
        # Per deployment: the replicas list last routed over (LoadBook.sync hands out the
        # same list while the snapshot is the same) and its ids, for RouteRequest.members.
        self._members: dict[str, tuple[list[ReplicaStats], frozenset[str]]] = {}
        share = book.share  # (this worker, of how many) for RouteRequest
        self.worker = (share.worker, share.workers) if share is not None else (0, 1)

    async def forward(
        self,
        dep: DeploymentInfo,
        replicas: list[ReplicaStats],
        balancer: Balancer,
        path: str,
        method: str,
        body: bytes,
        headers: dict[str, str],
        reply: Reply,
        receive: Receive | None = None,
    ) -> None:
        """Answer the request through `reply` from one replica (a second on failure)."""
        dstats = self.book.deployment(dep.id)
        now = time.monotonic()
        dstats.arrivals.add(0.0, now)
        tried: set[str] = set()
        failure: Failure | None = None
        watch = DisconnectWatch(receive, self.loop)
        self.watches.add(watch, now)
        held = self._members.get(dep.id)
        if held is not None and held[0] is replicas:
            members = held[1]
        else:
            members = frozenset(s.info.id for s in replicas)
            self._members[dep.id] = (replicas, members)
        try:
            for attempt in range(ATTEMPTS):
                st = self._choose(replicas, balancer, tried, dep.id, path, body, members, attempt)
                if st is None:
                    break
                tried.add(st.info.id)
                failure = await self._attempt(st, dstats, path, method, body, headers, reply)
                if failure is None:
                    return
        except asyncio.CancelledError:
            if not watch.left:
                raise  # cancelled from outside (shutdown): not ours to swallow
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            return  # the client left; there is nobody to answer
        finally:
            watch.close()
        dstats.errors.add(0.0)
        where = f"{dep.namespace}/{dep.name}"
        if failure is None:
            raise self._none_routable(where, replicas)
        if failure.answer is not None:
            await reply.whole(*failure.answer)
            return
        raise unavailable(
            f"no replica of deployment {where} could be reached "
            f"({len(tried)} tried; last: {failure.reason})"
        )

    def forget_except(self, live_deployments: set[str]) -> None:
        for dep_id in [d for d in self._members if d not in live_deployments]:
            del self._members[dep_id]

    def _choose(
        self, replicas: list[ReplicaStats], balancer: Balancer, tried: set[str],
        dep_id: str, path: str, body: bytes, members: frozenset[str], attempt: int,
    ) -> ReplicaStats | None:
        now = time.monotonic()
        candidates = [s for s in replicas if s.info.id not in tried and not s.ejected(now)]
        if len(candidates) <= 1:  # nothing to choose: the balancer is not asked
            return candidates[0] if candidates else None
        stale = self.book.stale_after_s
        request = RouteRequest(dep_id, path, body, members, attempt, *self.worker)
        choice = balancer.pick([s.as_load(now, stale) for s in candidates], request)
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
        reply: Reply,
    ) -> Failure | None:
        """None once the client has its answer; a Failure if nothing was sent yet."""
        book = self.book
        book.started(st)  # in flight here and, with workers, in the shared book
        started = time.monotonic()
        resp: UpstreamResponse | None = None
        try:
            resp = await self.pool.request(st.info.url, method, path, headers, body)
            status = resp.status
            if status >= 500 or status == 429:
                payload = await resp.read()
                if status >= 500:
                    book.failed(st, f"HTTP {status} from {st.info.url}")
                return Failure(f"HTTP {status} from replica {st.info.id}",
                               (status, self._headers(resp, st), payload))
            if resp.content_type == "text/event-stream":
                first = await resp.next_chunk()
                await self._stream(resp, first, st, dstats, started, reply)
                return None
            payload = await resp.read()
            done = time.monotonic()
            self._record(st, dstats, None, done - started, ok=status < 400, now=done)
            await reply.whole(status, self._headers(resp, st), payload)
            return None
        except (UpstreamError, TimeoutError) as exc:
            # Connect refused, reset, or the replica died before its answer was complete:
            # the client has received nothing, so another replica may answer instead.
            reason = f"{_fmt_error(exc)} from {st.info.url}"
            book.failed(st, reason)
            return Failure(reason)
        finally:
            book.finished(st)
            if resp is not None:
                resp.release()  # closes the connection if the body was not read whole

    async def _stream(
        self,
        resp: UpstreamResponse,
        first: bytes,
        st: ReplicaStats,
        dstats: DeploymentStats,
        started: float,
        reply: Reply,
    ) -> None:
        """Pass the stream on as it comes; from the first byte on there is no retry."""
        first_at = time.monotonic()
        await reply.start(resp.status, [*self._headers(resp, st), *STREAM_HEADERS])
        try:
            if first:
                await reply.chunk(first)
            while chunk := await resp.next_chunk():
                await reply.chunk(chunk)
        except (UpstreamError, TimeoutError) as exc:
            # Bytes already went out; the best left is to say so in the stream's own
            # terms (vLLM sends the same shape), so clients raise instead of hanging.
            self.book.failed(st, f"{_fmt_error(exc)} mid-stream from {st.info.url}")
            await reply.end(_sse_error(f"replica {st.info.id} failed mid-stream: "
                                       f"{_fmt_error(exc)}"))
            return
        await reply.end()
        done = time.monotonic()
        self._record(st, dstats, first_at - started, done - started, ok=True, now=done)

    def _record(
        self, st: ReplicaStats, dstats: DeploymentStats, ttft: float | None, total: float,
        ok: bool, now: float,
    ) -> None:
        self.book.succeeded(st)
        if not ok:
            return
        if ttft is not None:
            st.ttft.add(ttft, now)
            dstats.ttft.add(ttft, now)
        st.total.add(total, now)
        dstats.total.add(total, now)
        # What the client waited for before anything arrived: TTFT when streaming, the
        # whole answer otherwise. This is the latency the autoscaler's P99 rule reads.
        dstats.first_byte.add(total if ttft is None else ttft, now)

    @staticmethod
    def _headers(resp: UpstreamResponse, st: ReplicaStats) -> Headers:
        got = resp.headers
        out = [(raw, got[k].encode("latin-1")) for k, raw in _PASSED if k in got]
        out.append((b"x-a3s-replica", st.info.id.encode()))
        return out


def _sse_error(message: str) -> bytes:
    body = {"error": {"message": message, "type": "server_error", "param": None,
                      "code": "replica_failed"}}
    return b"data: " + json.dumps(body).encode() + b"\n\n"
