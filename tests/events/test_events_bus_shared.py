"""Two platform processes on one store (two buses, two store handles on the same SQLite
file): a subscriber on one sees the other's events in seq order, filtered or not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from a3s_core.events import EventBus, EventFilter
from a3s_core.store import Store
from a3s_core.types import Event


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    url = f"sqlite:///{tmp_path / 'a3s.db'}"
    a, b = Store.open(url), Store.open(url)
    yield a, b
    a.close()
    b.close()


async def take(events: AsyncIterator[Event], n: int) -> list[Event]:
    out: list[Event] = []
    async for e in events:
        out.append(e)
        if len(out) == n:
            break
    return out


async def live(bus: EventBus) -> None:
    while bus.live_subscriber_count < 1:
        await asyncio.sleep(0.01)


async def test_events_of_another_process_arrive_before_our_next_one(
    stores: tuple[Store, Store],
) -> None:
    here, there = EventBus(stores[0]), EventBus(stores[1])
    sub = here.subscribe(accept=EventFilter(namespace="x"))
    reader = asyncio.ensure_future(take(sub, 3))
    await live(here)
    there.emit("remote.one", "from the other process", namespace="x")
    there.emit("remote.other", "not for this filter", namespace="y")
    here.emit("local.one", "from this process", namespace="x")
    here.emit("local.two", "again", namespace="x")
    got = await asyncio.wait_for(reader, 10)
    assert [e.type for e in got] == ["remote.one", "local.one", "local.two"]
    assert [e.seq for e in got] == [1, 3, 4]


async def test_an_idle_bus_polls_for_events_of_other_processes(
    stores: tuple[Store, Store],
) -> None:
    here, there = EventBus(stores[0], poll_interval_s=0.05), EventBus(stores[1])
    try:
        reader = asyncio.ensure_future(take(here.subscribe(), 2))
        await live(here)
        await asyncio.to_thread(there.emit, "remote.one", "one", namespace="x")
        await asyncio.to_thread(there.emit, "remote.two", "two", namespace="x")
        got = await asyncio.wait_for(reader, 10)
        assert [(e.seq, e.type) for e in got] == [(1, "remote.one"), (2, "remote.two")]
    finally:
        here.close()
