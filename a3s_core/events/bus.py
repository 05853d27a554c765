"""The event bus: persist every event with a global seq, then fan it out to subscribers.

Group commit: an emit queues its event and then takes the commit lock; whoever holds it
stores *everything* queued so far in one transaction, publishes it in seq order and
releases the callers it served. So a single caller pays one transaction per event, and
many concurrent callers share one — throughput grows with the number of emitters while
every `emit` still returns only once its event is committed (durable).

A subscriber registers its queue *before* reading the backlog from the store, then skips
what it already sent, so catch-up and live delivery meet with no gap and no duplicate.
Each subscriber has a bounded queue; a slow one is cut off with the seq to resume from,
and never slows the emitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
from collections import defaultdict, deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from a3s_core.store import Store
from a3s_core.store.event_listener import EventListener
from a3s_core.types import Event, Level

log = logging.getLogger(__name__)


class SubscriberOverflow(Exception):
    """The subscriber fell too far behind; it should reconnect with `since=resume_from`."""

    def __init__(self, resume_from: int) -> None:
        super().__init__(f"client too slow; resume with since={resume_from}")
        self.resume_from = resume_from


@dataclass
class EventFilter:
    namespace: str | None = None
    deployment_id: str | None = None

    def __call__(self, e: Event) -> bool:
        return (self.namespace is None or e.namespace == self.namespace) and (
            self.deployment_id is None or e.deployment_id == self.deployment_id
        )


@dataclass(eq=False)
class _Pending:
    """One queued emit: done once a commit stored it (then `event` carries its seq), or
    failed with `error`."""

    event: Event
    done: bool = False
    error: BaseException | None = None


@dataclass(eq=False)
class _Subscriber:
    """A bounded buffer with a doorbell. Touched only from its own loop's thread."""

    loop: asyncio.AbstractEventLoop
    size: int
    accept: EventFilter
    buffer: deque[Event] = field(default_factory=deque)
    overflowed: bool = False
    live: bool = False  # past the backlog: new events come from the buffer
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, events: list[Event]) -> None:
        if self.overflowed:
            return
        if len(self.buffer) + len(events) > self.size:
            self.overflowed = True
            self.buffer.clear()  # the subscriber resumes from the store, not from here
        else:
            self.buffer.extend(events)
        self.wake.set()


_Group = list[tuple[_Subscriber, list[Event]]]


@dataclass(eq=False)
class _Outbox:
    """Deliveries gathered for one loop's subscribers while a flush is due."""

    groups: _Group = field(default_factory=list)
    armed: bool = False  # a flush is scheduled
    flushed_at: float = -math.inf


class EventBus:
    def __init__(
        self,
        store: Store,
        observers: Callable[[Event], None] | None = None,
        queue_size: int = 1000,
        poll_interval_s: float | None = None,
        linger_s: float = 0.0,
    ) -> None:
        """`poll_interval_s`: when several platform processes share the store, how often
        an idle bus looks for events the others wrote (None: only when it emits itself)."""
        self.store = store
        self.linger_s = linger_s
        self._outboxes: dict[asyncio.AbstractEventLoop, _Outbox] = {}
        self._outbox_lock = threading.Lock()
        self.observers = observers
        self.queue_size = queue_size
        self.poll_interval_s = poll_interval_s
        self._subs: set[_Subscriber] = set()
        self._lock = threading.Lock()  # guards _subs
        self._emit_lock = threading.Lock()  # the commit lock: one batch at a time
        self._queue_lock = threading.Lock()  # guards _queue (held only to append or swap)
        self._queue: list[_Pending] = []
        self.commits = 0  # transactions that stored events (emits / commits = batch size)
        self._published = store.last_seq()  # highest seq handed to subscribers
        self._poller: threading.Thread | None = None
        self._closed = threading.Event()

    # ------------------------------------------------------------------ emit

    def emit(
        self,
        type: str,
        message: str,
        *,
        deployment_id: str | None = None,
        name: str | None = None,
        namespace: str | None = None,
        level: Level = "info",
        data: dict[str, Any] | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> Event:
        """Persist and deliver one event; returns it with its seq once it is committed.
        Safe from any thread; concurrent emits share a transaction (group commit). Inside
        an OpenTelemetry span the event carries that span's ids and is also recorded as a
        span event. Raises what the store raised when the event could not be stored."""
        span = trace.get_current_span()
        ctx = span.get_span_context()
        if ctx.is_valid and trace_id is None:
            trace_id, span_id = f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
            if span.is_recording():
                span.add_event(type, {"message": message, "level": level})
        event = Event(
            ts=datetime.now(UTC),
            type=type,
            deployment_id=deployment_id,
            name=name,
            namespace=namespace,
            level=level,
            message=message,
            trace_id=trace_id,
            span_id=span_id,
            data=data or {},
        )
        pending = _Pending(event)
        with self._queue_lock:
            self._queue.append(pending)
        with self._emit_lock:  # seq order == delivery order, whatever thread emits
            if not pending.done:  # nobody took it into their batch meanwhile: commit now
                self._commit_queued()
        if pending.error is not None:
            raise pending.error
        if self.observers:
            self.observers(pending.event)
        return pending.event

    def _commit_queued(self) -> None:
        """Store everything queued in one transaction, then deliver it (after any events
        other processes wrote before it). Caller holds the emit lock."""
        with self._queue_lock:
            batch, self._queue = self._queue, []
        try:
            stored = self.store.append_events([p.event for p in batch])
        except BaseException as exc:
            for p in batch:
                p.error, p.done = exc, True
            return
        self.commits += 1
        for p, e in zip(batch, stored, strict=True):
            p.event, p.done = e, True
        try:
            self._catch_up(stored[0].seq - 1)
        except Exception as exc:  # committed, so not the emitters' error: the next
            # catch-up (next emit, or the poller) delivers it all in order
            log.warning("event bus could not read events of other processes: %s", exc)
            return
        self.publish_many(stored)

    def _catch_up(self, upto: int | None = None) -> None:
        """Deliver, in order, events other processes wrote since the last one delivered
        here (up to `upto`, default: the newest). Caller holds the emit lock."""
        if upto is None:
            upto = self.store.last_seq()
        while upto > self._published:
            missed = self.store.events_since(
                self._published, limit=min(upto - self._published, 500)
            )
            if not missed:
                self._published = upto  # rolled back or deleted: nothing to deliver
                break
            self.publish_many(missed)

    def _poll(self) -> None:
        """Deliver other processes' events: woken by the store's notifications where it
        has them (PostgreSQL), else every `poll_interval_s`, which stays the fallback (a
        notification lost with a dropped connection delays delivery, nothing more)."""
        interval = self.poll_interval_s
        assert interval is not None
        listener: EventListener | None = None
        listening = True
        while not self._closed.is_set():
            try:
                if listener is None and listening:
                    listener = self.store.event_listener()
                    listening = listener is not None
                if listener is not None:
                    seq = listener.wait(interval)
                    if seq is not None and seq <= self._published:
                        continue  # our own commit, or one delivered already
                elif self._closed.wait(interval):
                    break
                with self._emit_lock:
                    self._catch_up()
            except Exception as exc:  # the store may be briefly unreachable; keep polling
                log.warning("event bus poll failed: %s", exc)
                if listener is not None:
                    listener.close()
                    listener = None  # a fresh connection next time round
                if self._closed.wait(interval):
                    break
        if listener is not None:
            listener.close()

    def close(self) -> None:
        """Stop polling (if it runs). Subscribers already iterating are not interrupted."""
        self._closed.set()
        if self._poller is not None:
            self._poller.join(timeout=5)

    def publish(self, event: Event) -> None:
        """Deliver an already-persisted event to live subscribers (no store write)."""
        self.publish_many([event])

    def publish_many(self, events: list[Event]) -> None:
        """Deliver already-persisted events, in seq order, to live subscribers. One loop
        callback per loop for the whole batch, however many subscribers it serves."""
        if not events:
            return
        self._published = max(self._published, events[-1].seq)
        with self._lock:
            subs = list(self._subs)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Subscriber, list[Event]]]]
        by_loop = defaultdict(list)
        matching: dict[tuple[str | None, str | None], list[Event]] = {}  # per distinct filter
        for sub in subs:
            key = (sub.accept.namespace, sub.accept.deployment_id)
            mine = matching.get(key)
            if mine is None:
                mine = matching[key] = [e for e in events if sub.accept(e)]
            if mine:
                by_loop[sub.loop].append((sub, mine))
        for loop, group in by_loop.items():
            self._post(loop, group)

    def _post(self, loop: asyncio.AbstractEventLoop, group: _Group) -> None:
        """Hand a loop its subscribers' events. With `linger_s`, deliveries that come
        within `linger_s` of the loop's last one wait and go together: under load every
        subscriber wakes (and its socket writes) once per `linger_s` with what gathered,
        instead of once per event; a quiet stream is delivered at once."""
        try:
            if self.linger_s <= 0:
                loop.call_soon_threadsafe(_offer_all, group)
                return
            with self._outbox_lock:
                box = self._outboxes.get(loop)
                if box is None:
                    box = self._outboxes[loop] = _Outbox()
                box.groups.extend(group)
                if box.armed:
                    return
                box.armed = True
            loop.call_soon_threadsafe(self._arm, loop, box)
        except RuntimeError:  # a closed loop: its subscribers are gone
            with self._outbox_lock:
                self._outboxes.pop(loop, None)

    def _arm(self, loop: asyncio.AbstractEventLoop, box: _Outbox) -> None:
        wait_s = box.flushed_at + self.linger_s - loop.time()
        if wait_s > 0:
            loop.call_later(wait_s, self._flush, loop, box)
        else:
            self._flush(loop, box)

    def _flush(self, loop: asyncio.AbstractEventLoop, box: _Outbox) -> None:
        with self._outbox_lock:
            groups, box.groups, box.armed = box.groups, [], False
        box.flushed_at = loop.time()
        _offer_all(groups)

    # ------------------------------------------------------------------ subscribe

    async def subscribe(
        self, since: int | None = None, accept: EventFilter | None = None
    ) -> AsyncIterator[Event]:
        """Events after `since` (None: only new ones), then live ones, in seq order.
        Raises SubscriberOverflow when the consumer falls `queue_size` events behind."""
        async with contextlib.aclosing(self.subscribe_batches(since, accept)) as batches:
            async for batch in batches:
                for e in batch:
                    yield e

    async def subscribe_batches(
        self,
        since: int | None = None,
        accept: EventFilter | None = None,
        max_batch: int = 500,
    ) -> AsyncGenerator[list[Event], None]:
        """As `subscribe`, but hands over everything already waiting at once (up to
        `max_batch`), so a consumer that sends over a network can write it in one go."""
        accept = accept or EventFilter()
        sub = _Subscriber(asyncio.get_running_loop(), self.queue_size, accept)
        with self._lock:
            self._subs.add(sub)
            if self.poll_interval_s and self._poller is None and not self._closed.is_set():
                self._poller = threading.Thread(target=self._poll, name="a3s-bus-poll", daemon=True)
                self._poller.start()
        try:
            last = since if since is not None else await asyncio.to_thread(self.store.last_seq)
            while True:  # backlog, in pages, straight from the store
                page = await asyncio.to_thread(
                    self.store.events_since,
                    last,
                    namespace=accept.namespace,
                    deployment_id=accept.deployment_id,
                    limit=max_batch,
                )
                if page:
                    last = page[-1].seq
                    yield page
                if len(page) == max_batch:
                    continue
                if not sub.overflowed:
                    break
                # Live events piled up while the backlog was read: the store has them all,
                # so keep reading it rather than cutting the subscriber off.
                sub.overflowed = False
                sub.buffer.clear()
            sub.live = True
            unfiltered = accept == EventFilter()
            while True:
                if sub.overflowed:
                    raise SubscriberOverflow(last)
                if not sub.buffer:
                    sub.wake.clear()
                    await sub.wake.wait()
                    continue
                batch: list[Event] = []
                while sub.buffer and len(batch) < max_batch:
                    e = sub.buffer.popleft()
                    if e.seq <= last:
                        continue  # already sent from the backlog
                    if e.seq > last + 1 and unfiltered:
                        # A gap means another platform process wrote events: fill it from
                        # the store.
                        batch += await asyncio.to_thread(
                            self.store.events_since, last, limit=e.seq - last - 1
                        )
                    batch.append(e)
                    last = e.seq
                if batch:
                    yield batch
        finally:
            with self._lock:
                self._subs.discard(sub)

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    @property
    def live_subscriber_count(self) -> int:
        """Subscribers past their backlog, waiting for new events."""
        return sum(1 for s in list(self._subs) if s.live)


def _offer_all(group: _Group) -> None:
    for sub, events in group:
        sub.offer(events)
