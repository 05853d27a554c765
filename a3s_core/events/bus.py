"""The event bus: persist every event with a global seq, then fan it out to subscribers.

A subscriber registers its queue *before* reading the backlog from the store, then skips
what it already sent, so catch-up and live delivery meet with no gap and no duplicate.
Each subscriber has a bounded queue; a slow one is cut off with the seq to resume from,
and never slows the emitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import defaultdict, deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from a3s_core.store import Store
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
class _Subscriber:
    """A bounded buffer with a doorbell. Touched only from its own loop's thread."""

    loop: asyncio.AbstractEventLoop
    size: int
    accept: EventFilter
    buffer: deque[Event] = field(default_factory=deque)
    overflowed: bool = False
    live: bool = False  # past the backlog: new events come from the buffer
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, event: Event) -> None:
        if self.overflowed:
            return
        if len(self.buffer) >= self.size:
            self.overflowed = True
            self.buffer.clear()  # the subscriber resumes from the store, not from here
        else:
            self.buffer.append(event)
        self.wake.set()


class EventBus:
    def __init__(
        self,
        store: Store,
        observers: Callable[[Event], None] | None = None,
        queue_size: int = 1000,
        poll_interval_s: float | None = None,
    ) -> None:
        """`poll_interval_s`: when several platform processes share the store, how often
        an idle bus looks for events the others wrote (None: only when it emits itself)."""
        self.store = store
        self.observers = observers
        self.queue_size = queue_size
        self.poll_interval_s = poll_interval_s
        self._subs: set[_Subscriber] = set()
        self._lock = threading.Lock()
        self._emit_lock = threading.Lock()
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
        """Persist and deliver one event. Safe from any thread. Inside an OpenTelemetry
        span the event carries that span's ids and is also recorded as a span event."""
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
        with self._emit_lock:  # seq order == delivery order, whatever thread emits
            event = self.store.append_event(event)
            self._catch_up(event.seq - 1)
            self.publish(event)
        if self.observers:
            self.observers(event)
        return event

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
            for e in missed:
                self.publish(e)

    def _poll(self) -> None:
        assert self.poll_interval_s is not None
        while not self._closed.wait(self.poll_interval_s):
            try:
                with self._emit_lock:
                    self._catch_up()
            except Exception as exc:  # the store may be briefly unreachable; keep polling
                log.warning("event bus poll failed: %s", exc)

    def close(self) -> None:
        """Stop polling (if it runs). Subscribers already iterating are not interrupted."""
        self._closed.set()
        if self._poller is not None:
            self._poller.join(timeout=5)

    def publish(self, event: Event) -> None:
        """Deliver an already-persisted event to live subscribers (no store write).
        One loop callback per event and loop, however many subscribers that loop serves."""
        self._published = max(self._published, event.seq)
        with self._lock:
            subs = [s for s in self._subs if s.accept(event)]
        by_loop: dict[asyncio.AbstractEventLoop, list[_Subscriber]] = defaultdict(list)
        for sub in subs:
            by_loop[sub.loop].append(sub)
        for loop, group in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: its subscribers are gone
                loop.call_soon_threadsafe(_offer_all, group, event)

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
        self, since: int | None = None, accept: EventFilter | None = None, max_batch: int = 500
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
                    if e.seq > last + 1 and accept == EventFilter():
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


def _offer_all(subs: list[_Subscriber], event: Event) -> None:
    for sub in subs:
        sub.offer(event)
