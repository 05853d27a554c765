"""`EventBus(linger_s=…)`: a quiet stream is delivered at once; events that come within
`linger_s` of the last delivery wait and go together."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from a3s_core.events import EventBus
from a3s_core.store import Store


async def test_quiet_events_go_at_once_and_a_burst_gathers(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'a3s.db'}")
    bus = EventBus(store, linger_s=30.0)  # long: this tests the grouping, not the clock
    batches = bus.subscribe_batches()
    try:
        first = asyncio.ensure_future(anext(batches))
        while bus.live_subscriber_count < 1:
            await asyncio.sleep(0.01)
        bus.emit("t.one", "one")
        # Nothing was handed over before: no wait, although linger_s is 30 s.
        assert [e.message for e in await asyncio.wait_for(first, 10)] == ["one"]

        second = asyncio.ensure_future(anext(batches))
        bus.emit("t.two", "two")
        bus.emit("t.three", "three")
        await asyncio.sleep(0.2)
        assert not second.done()  # within linger_s of the last batch: gathering
        second.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await second
    finally:
        await batches.aclose()
        store.close()


async def test_without_linger_each_wake_up_hands_over_what_is_there(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'a3s.db'}")
    bus = EventBus(store)
    batches = bus.subscribe_batches()
    try:
        first = asyncio.ensure_future(anext(batches))
        while bus.live_subscriber_count < 1:
            await asyncio.sleep(0.01)
        bus.emit("t.one", "one")
        assert [e.message for e in await asyncio.wait_for(first, 10)] == ["one"]
        bus.emit("t.two", "two")
        bus.emit("t.three", "three")
        batch = await asyncio.wait_for(anext(batches), 10)
        assert [e.message for e in batch] == ["two", "three"]
    finally:
        await batches.aclose()
        store.close()
