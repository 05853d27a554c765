"""The event bus: persist every event with a global seq, then fan it out to subscribers.

A subscriber registers its queue *before* reading the backlog from the store, then skips
what it already sent, so catch-up and live delivery meet with no gap and no duplicate.
Each subscriber has a bounded queue; a slow one is cut off with the seq to resume from,
and never slows the emitter.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
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
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Event]
    accept: EventFilter
    overflowed: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class EventBus:
    def __init__(
        self,
        store: Store,
        observers: Callable[[Event], None] | None = None,
        queue_size: int = 1000,
    ) -> None:
        self.store = store
        self.observers = observers
        self.queue_size = queue_size
        self._subs: set[_Subscriber] = set()
        self._lock = threading.Lock()
        self._emit_lock = threading.Lock()

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
            self.publish(event)
        if self.observers:
            self.observers(event)
        return event

    def publish(self, event: Event) -> None:
        """Deliver an already-persisted event to live subscribers (no store write)."""
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            if sub.accept(event):
                sub.loop.call_soon_threadsafe(self._offer, sub, event)

    @staticmethod
    def _offer(sub: _Subscriber, event: Event) -> None:
        if sub.overflowed:
            return
        try:
            sub.queue.put_nowait(event)
        except asyncio.QueueFull:
            sub.overflowed = True
            sub.wake.set()

    # ------------------------------------------------------------------ subscribe

    async def subscribe(
        self, since: int | None = None, accept: EventFilter | None = None
    ) -> AsyncIterator[Event]:
        """Events after `since` (None: only new ones), then live ones, in seq order.
        Raises SubscriberOverflow when the consumer falls `queue_size` events behind."""
        accept = accept or EventFilter()
        sub = _Subscriber(asyncio.get_running_loop(), asyncio.Queue(self.queue_size), accept)
        with self._lock:
            self._subs.add(sub)
        try:
            last = since if since is not None else await asyncio.to_thread(self.store.last_seq)
            while True:  # backlog, in pages, straight from the store
                page = await asyncio.to_thread(
                    self.store.events_since,
                    last,
                    namespace=accept.namespace,
                    deployment_id=accept.deployment_id,
                    limit=500,
                )
                for e in page:
                    last = e.seq
                    yield e
                if len(page) < 500:
                    break
            while True:
                if sub.overflowed:
                    raise SubscriberOverflow(last)
                get = asyncio.ensure_future(sub.queue.get())
                wake = asyncio.ensure_future(sub.wake.wait())
                done, _ = await asyncio.wait({get, wake}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    raise SubscriberOverflow(last)
                wake.cancel()
                e = get.result()
                if e.seq <= last:
                    continue  # already sent from the backlog
                if e.seq > last + 1 and accept == EventFilter():
                    # A gap means another platform process wrote events: fill it from the store.
                    for missed in await asyncio.to_thread(
                        self.store.events_since, last, limit=e.seq - last - 1
                    ):
                        last = missed.seq
                        yield missed
                last = e.seq
                yield e
        finally:
            with self._lock:
                self._subs.discard(sub)

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)
