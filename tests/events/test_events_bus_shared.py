"""Two platform processes on one store (two buses, two store handles on one SQLite file
or one PostgreSQL schema): a subscriber on one sees the other's events in seq order,
filtered or not; on PostgreSQL an idle bus hears of them at once (LISTEN/NOTIFY)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from a3s_core.events import EventBus, EventFilter
from a3s_core.store import Store
from a3s_core.types import Event


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'a3s.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def stores(url: str) -> Iterator[tuple[Store, Store]]:
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


async def test_postgres_wakes_an_idle_bus_without_waiting_for_its_poll(
    stores: tuple[Store, Store],
) -> None:
    if not stores[0].is_postgres:
        assert stores[0].event_listener() is None  # SQLite: polling only
        return
    # A poll interval no test waits out: only a notification can deliver in time.
    here, there = EventBus(stores[0], poll_interval_s=60), EventBus(stores[1])
    try:
        reader = asyncio.ensure_future(take(here.subscribe(), 2))
        await live(here)
        await asyncio.sleep(0.2)  # the poller is listening (it starts with the subscriber)
        await asyncio.to_thread(there.emit, "remote.one", "one", namespace="x")
        await asyncio.to_thread(there.emit, "remote.two", "two", namespace="x")
        got = await asyncio.wait_for(reader, 10)
        assert [(e.seq, e.type) for e in got] == [(1, "remote.one"), (2, "remote.two")]
    finally:
        here.close()


def test_postgres_listener_reports_the_highest_committed_seq(pg_url: str) -> None:
    stores = Store.open(pg_url), Store.open(pg_url)
    listener = stores[0].event_listener()
    assert listener is not None
    try:
        assert listener.wait(0.05) is None  # nothing committed: the timeout
        batch = [Event(ts=datetime.now(UTC), type=f"t{i}", level="info", message="m")
                 for i in range(3)]
        with stores[1].engine.connect() as conn:  # rolled back: nothing to hear
            conn.execute(text("INSERT INTO events (ts, type, level, message, data) "
                              "VALUES (now(), 'x', 'info', 'm', '{}')"))
            conn.rollback()
        assert listener.wait(0.2) is None
        stored = stores[1].append_events(batch)  # one INSERT: one notification, its top
        assert listener.wait(5) == stored[-1].seq
        assert listener.wait(0.05) is None
    finally:
        listener.close()
        for store in stores:
            store.close()
