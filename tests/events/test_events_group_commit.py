"""Group commit in the event bus, on SQLite and PostgreSQL: concurrent emits share a
transaction, yet every emit returns its own committed event, seqs are unique and in
order, subscribers see each event once with no gap, and a failed commit fails exactly
the emits of its batch."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from a3s_core.events import EventBus
from a3s_core.store import Store
from a3s_core.types import Event


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'a3s.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    s = Store.open(url)
    yield s
    s.close()


class GatedStore(Store):
    """A store whose first `append_events` waits until `gate` is set, which records the
    size of every batch it is given, and fails the calls numbered in `fail_calls`."""

    def __init__(self, inner: Store, fail_calls: frozenset[int] = frozenset()) -> None:
        super().__init__(inner.engine)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.batches: list[int] = []
        self.fail_calls = fail_calls

    def append_events(self, events: list[Event]) -> list[Event]:
        if not self.batches:
            self.entered.set()
            assert self.gate.wait(30), "the test never opened the gate"
        self.batches.append(len(events))
        if len(self.batches) - 1 in self.fail_calls:
            raise Boom("database went away")
        return super().append_events(events)


class Boom(Exception):
    pass


def queued(bus: EventBus) -> int:
    return len(bus._queue)


def emit_all(bus: EventBus, n: int, results: list[Event | BaseException]) -> list[threading.Thread]:
    def one(i: int) -> None:
        try:
            results.append(bus.emit("t.tick", f"tick {i}", namespace="ns", data={"i": i}))
        except BaseException as exc:  # collected for the test to look at
            results.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads


def wait_until(cond: object, what: str) -> None:
    done = threading.Event()
    for _ in range(3000):  # polls a condition; no assertion on how long it takes
        if cond():  # type: ignore[operator]
            return
        done.wait(0.01)
    raise AssertionError(f"never happened: {what}")


async def take(events: AsyncIterator[Event], n: int) -> list[Event]:
    out: list[Event] = []
    if n == 0:
        return out
    async for e in events:
        out.append(e)
        if len(out) == n:
            break
    return out


def test_emits_queued_during_a_commit_share_the_next_one(store: Store) -> None:
    gated = GatedStore(store)
    bus = EventBus(gated)
    results: list[Event | BaseException] = []
    first = emit_all(bus, 1, results)
    assert gated.entered.wait(30)  # the first emit holds the commit lock, inside the store
    rest = emit_all(bus, 20, results)
    wait_until(lambda: queued(bus) == 20, "20 emits queued behind the first commit")
    gated.gate.set()
    for t in first + rest:
        t.join(30)
    assert gated.batches == [1, 20]  # one transaction for the twenty
    assert bus.commits == 2
    events = [r for r in results if isinstance(r, Event)]
    assert len(events) == 21
    seqs = sorted(e.seq for e in events)
    assert seqs == list(range(seqs[0], seqs[0] + 21))
    stored = {e.seq: e for e in store.events_since(0)}  # durable once emit returned
    for e in events:
        assert stored[e.seq].message == e.message and stored[e.seq].data == e.data


def test_many_threads_unique_ordered_seqs_and_subscribers_miss_nothing(url: str) -> None:
    store = Store.open(url)
    bus = EventBus(store)
    n_threads, per_thread = 12, 25
    total = n_threads * per_thread
    returned: list[list[Event]] = [[] for _ in range(n_threads)]

    def emitter(j: int) -> None:
        for i in range(per_thread):
            returned[j].append(bus.emit("t.tick", f"{j}/{i}", namespace=f"ns{j % 2}"))

    async def main() -> tuple[list[Event], int, list[Event], list[Event]]:
        everything = asyncio.ensure_future(take(bus.subscribe(), total))
        while bus.live_subscriber_count < 1:
            await asyncio.sleep(0.01)
        threads = [threading.Thread(target=emitter, args=(j,)) for j in range(n_threads)]
        for t in threads:
            t.start()
        # A client that joins mid-way with `since` gets the backlog, then live, once each.
        while bus.store.last_seq() < total // 3:
            await asyncio.sleep(0.005)
        since = bus.store.last_seq()
        late = asyncio.ensure_future(take(bus.subscribe(since=since), total - since))
        ns0 = asyncio.ensure_future(take(bus.subscribe(since=0), total))
        await asyncio.to_thread(lambda: [t.join(60) for t in threads])
        filtered = [e for e in await asyncio.wait_for(ns0, 60) if e.namespace == "ns0"]
        got = await asyncio.wait_for(everything, 60)
        return got, since, await asyncio.wait_for(late, 60), filtered

    try:
        got, since, late, ns0 = asyncio.run(main())
        all_seqs = [e.seq for batch in returned for e in batch]
        assert sorted(all_seqs) == list(range(1, total + 1))  # unique, no gap
        for batch in returned:  # each thread's emits in the order it made them
            assert [e.seq for e in batch] == sorted(e.seq for e in batch)
        assert [e.seq for e in got] == list(range(1, total + 1))
        assert [e.seq for e in late] == list(range(since + 1, total + 1))
        by_seq = {e.seq: e.message for batch in returned for e in batch}
        assert all(by_seq[e.seq] == e.message for e in got)
        assert [e.seq for e in ns0] == sorted(e.seq for e in ns0)
        assert len(ns0) == total // 2
    finally:
        store.close()
    again = Store.open(url)  # a platform restart: every emit that returned is there
    try:
        assert [e.seq for e in again.events_since(0, limit=10_000)] == list(range(1, total + 1))
        assert EventBus(again).emit("after.restart", "again").seq == total + 1
    finally:
        again.close()


def test_a_failed_commit_fails_its_batch_only(store: Store) -> None:
    gated = GatedStore(store, fail_calls=frozenset({1}))  # the second transaction fails
    bus = EventBus(gated)
    results: list[Event | BaseException] = []
    first = emit_all(bus, 1, results)
    assert gated.entered.wait(30)
    rest = emit_all(bus, 5, results)
    wait_until(lambda: queued(bus) == 5, "5 emits queued behind the first commit")
    gated.gate.set()
    for t in first + rest:
        t.join(30)
    assert gated.batches == [1, 5]
    events = [r for r in results if isinstance(r, Event)]
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(events) == 1 and len(errors) == 5
    assert all(isinstance(e, Boom) for e in errors)
    # The bus carries on: the next emit is stored with the next seq.
    after = bus.emit("t.after", "after the failure")
    assert [e.seq for e in store.events_since(0)] == [events[0].seq, after.seq]
    assert after.seq == events[0].seq + 1
