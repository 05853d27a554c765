"""Gateway traffic in the store, on SQLite and PostgreSQL: what publishers write, what the
control plane reads back (merged latency, fresh in-flight counts only), and pruning."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select, update

from a3s_core.catalog import load_catalog
from a3s_core.gateway.directory import ReplicaInfo
from a3s_core.gateway.histogram import Histogram, bucket_of, bucket_value
from a3s_core.gateway.load import LoadBook
from a3s_core.gateway.publish import KEEP_S, TrafficPublisher
from a3s_core.scaling.fleet import Fleet
from a3s_core.settings import Settings
from a3s_core.store import Store, traffic
from a3s_core.store.traffic import GatewayTrafficRow, SlotFigures

DEP = "dep-1"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = (f"sqlite:///{tmp_path / 'a3s.db'}" if request.param == "sqlite"
           else str(request.getfixturevalue("pg_url")))
    s = Store.open(url)  # migrated: the table comes from 0004
    yield s
    s.close()


def fleet_of(store: Store, gateway: Any = None, interval_s: float = 1.0) -> Fleet:
    settings = Settings(traffic_publish_interval_s=interval_s)
    return Fleet(SimpleNamespace(store=store, gateway=gateway, settings=settings))  # type: ignore[arg-type]


def book_with(latencies: list[float], in_flight: dict[str, int] | None = None) -> LoadBook:
    book = LoadBook(load_catalog(None), stale_after_s=1.5)
    dst = book.deployment(DEP)
    now = time.monotonic()
    for i, v in enumerate(latencies):
        dst.arrivals.add(0.0, now=now - 0.01 * (len(latencies) - i))
        dst.first_byte.add(v, now=now - 0.01 * (len(latencies) - i))
    for rid, n in (in_flight or {}).items():
        info = ReplicaInfo(id=rid, deployment_id=DEP, url="http://127.0.0.1:9", gpu=None,
                           tensor_parallel_size=1, max_model_len=0)
        (st,) = book.sync((info,))
        st.in_flight = n
    return book


def test_histogram_resolution_and_percentiles() -> None:
    for v in (0.0012, 0.05, 0.9, 2.0, 2.1, 37.0, 300.0):
        assert abs(bucket_value(bucket_of(v)) - v) / v < 0.023, v
    h = Histogram()
    h.add_all([0.1] * 98 + [3.0, 3.0])
    assert h.percentile(99) == pytest.approx(3.0, rel=0.023)
    assert h.percentile(50) == pytest.approx(0.1, rel=0.023)
    assert Histogram.from_json(h.to_json()).counts == h.counts
    assert Histogram.from_json({"x": 1, "3": "y", "5": 2}).counts == {5: 2}  # tolerant


async def test_two_publishers_latency_is_merged_before_the_p99(store: Store) -> None:
    fast = TrafficPublisher(book_with([0.1] * 100), store.engine, 1.0, gateway="w0")
    slow = TrafficPublisher(book_with([3.0] * 100), store.engine, 1.0, gateway="w1")
    assert await fast.publish_once() and await slow.publish_once()
    seen = fleet_of(store).read(DEP, since_s=60)
    assert seen.requests == 200 and seen.latency.count == 200
    # Either worker's own P99 is its own figure; over both, the slow half sets it.
    assert seen.latency.percentile(99) == pytest.approx(3.0, rel=0.023)
    assert seen.recent.count == 200  # every slot began within the last minute
    assert fleet_of(store).read(DEP, since_s=None).recent.count == 0
    assert set(seen.gateways) == {"w0", "w1"}
    # A second round adds only what came since: nothing here, so the totals stand.
    assert await fast.publish_once()
    assert fleet_of(store).read(DEP).requests == 200


def write_as(store: Store, gateway: str, age_s: float, interval_s: float,
             in_flight: dict[str, int]) -> None:
    """A row as a gateway publishing every `interval_s` wrote it `age_s` ago."""
    with store.engine.begin() as conn:
        past = traffic.db_now(conn) - timedelta(seconds=age_s)
        traffic.write(conn, gateway, gateway, past,
                      [SlotFigures(DEP, traffic.slot_of(past), 1, 0, {}, in_flight)],
                      KEEP_S, interval_s)


async def test_in_flight_counts_only_from_fresh_rows(store: Store) -> None:
    live = TrafficPublisher(book_with([], {"r1": 2}), store.engine, 1.0, gateway="live")
    assert await live.publish_once()
    # A gateway publishing every second that died 10 s ago with 5 requests in flight.
    write_as(store, "dead", 10, 1.0, {"r1": 5})
    seen = fleet_of(store, interval_s=1.0).read(DEP)
    assert seen.in_flight == {"r1": 2}  # stale after 3 intervals: the dead one is left out
    assert set(seen.gateways) == {"live"} and seen.requests == 1  # its answers still count
    # Its own interval decides, not the reader's: dead for a reader set to 5 s too.
    assert fleet_of(store, interval_s=5.0).read(DEP).in_flight == {"r1": 2}
    # The live one's requests finish: its next round says 0, not nothing.
    live.book.replicas["r1"].in_flight = 0
    assert await live.publish_once()
    assert fleet_of(store).read(DEP).in_flight == {}
    # A process does not read its own rows (its live figures are exact).
    me = SimpleNamespace(publisher=live)
    assert "live" not in fleet_of(store, gateway=me).read(DEP).gateways


async def test_staleness_is_judged_by_each_gateways_own_interval(store: Store) -> None:
    """A control plane publishing every 2 s (stale after 6 s) reads a gateway set to
    publish every 10 s: 8 s after its last round it is alive, its count stands."""
    slow = TrafficPublisher(book_with([], {"r1": 3}), store.engine, 10.0, gateway="slow")
    assert await slow.publish_once()
    with store.engine.begin() as conn:  # the round was 8 s ago
        conn.execute(update(GatewayTrafficRow).values(  # type: ignore[arg-type]
            updated_at=traffic.db_now(conn) - timedelta(seconds=8)))
    seen = fleet_of(store, interval_s=2.0).read(DEP)
    assert seen.in_flight == {"r1": 3} and set(seen.gateways) == {"slow"}
    assert "slow" in seen.peers  # a drain waits for its next round, not past it
    # Three of its own intervals later it is taken for dead.
    with store.engine.begin() as conn:
        conn.execute(update(GatewayTrafficRow).values(  # type: ignore[arg-type]
            updated_at=traffic.db_now(conn) - timedelta(seconds=31)))
    seen = fleet_of(store, interval_s=2.0).read(DEP)
    assert seen.in_flight == {} and seen.gateways == {}


async def test_a_sibling_workers_in_flight_is_left_to_the_shared_cells(store: Store) -> None:
    """Workers of one supervisor share in-flight counts live (share.py): their rows add
    requests and latency, but not in-flight, and a drain does not wait on their publish."""
    me = TrafficPublisher(book_with([]), store.engine, 1.0, gateway="w0", group="sup")
    sibling = TrafficPublisher(book_with([0.5] * 3, {"r1": 2}), store.engine, 1.0,
                               gateway="w1", group="sup")
    other = TrafficPublisher(book_with([], {"r1": 1}), store.engine, 1.0, gateway="pod")
    for p in (me, sibling, other):
        assert await p.publish_once()
    seen = fleet_of(store, gateway=SimpleNamespace(publisher=me)).read(DEP)
    assert seen.requests == 3 and seen.latency.count == 3
    assert seen.in_flight == {"r1": 1}
    assert set(seen.gateways) == {"w1", "pod"} and set(seen.peers) == {"pod"}
    assert seen.settling(draining_for_s=0.5)  # "pod" last wrote before the drain + 1 s
    assert not seen.settling(draining_for_s=60)


async def test_old_rows_are_pruned(store: Store) -> None:
    def gateways() -> set[str]:
        with store.engine.connect() as conn:
            rows = conn.execute(select(GatewayTrafficRow.gateway)).scalars()  # type: ignore[call-overload]
            return set(rows)

    with store.engine.begin() as conn:
        now = traffic.db_now(conn)
        for name, age in (("dead", 3 * KEEP_S), ("quiet", KEEP_S + 20), ("pub", KEEP_S + 20)):
            at = now - timedelta(seconds=age)
            traffic.write(conn, name, name, at,
                          [SlotFigures(DEP, traffic.slot_of(at), 1, 0, {}, {})], KEEP_S, 1.0)
    assert gateways() == {"dead", "quiet", "pub"}
    # A live publisher deletes its own rows past the retention, in its round.
    pub = TrafficPublisher(book_with([0.2]), store.engine, 1.0, gateway="pub")
    assert await pub.publish_once()
    assert gateways() == {"dead", "quiet", "pub"}
    with store.engine.connect() as conn:
        ages = [(now - traffic._aware(r.slot_start)).total_seconds() for r in conn.execute(
            select(GatewayTrafficRow.slot_start).where(GatewayTrafficRow.gateway == "pub"))]  # type: ignore[arg-type]
    assert ages and max(ages) < KEEP_S
    # The control plane deletes dead gateways' rows past twice the retention.
    assert traffic.prune(store.engine, 2 * KEEP_S) == 2  # its slot row and its heartbeat
    assert gateways() == {"quiet", "pub"}
    # Reading skips slots older than the window.
    assert fleet_of(store).read(DEP).requests == 1
