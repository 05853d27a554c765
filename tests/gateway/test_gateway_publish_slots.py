"""The publisher places samples in slots a run at a time (`slot_runs`) and buckets a run's
latencies in one call (`Histogram.add_all`): the same slots and buckets as placing and
bucketing each sample on its own, which is what it did before, on samples that straddle
slot boundaries by microseconds and on every bucket edge."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from a3s_core.catalog import load_catalog
from a3s_core.gateway import histogram
from a3s_core.gateway.histogram import TOP, Histogram, bucket_of
from a3s_core.gateway.load import LoadBook
from a3s_core.gateway.publish import TrafficPublisher, _Round, slot_runs
from a3s_core.store import Store, traffic
from a3s_core.store.traffic import HEARTBEAT, SLOT_S, GatewayTrafficRow

# A database clock 0.3 s into a slot (epoch seconds multiple of SLOT_S + 0.3), with
# microseconds, and the monotonic time the round reads up to.
NOW = datetime.fromtimestamp(1_790_000_000 + 0.3, UTC) + timedelta(microseconds=123_457)
UPTO = 5_000.25


def straddling_ages() -> list[float]:
    """Ages right at, just before and just after slot boundaries (by a microsecond or
    less, where rounding to microseconds decides), and some in between."""
    since_start = (NOW - traffic.slot_of(NOW)).total_seconds()
    ages = [0.0, since_start / 2]
    for k in range(4):
        edge = since_start + k * SLOT_S
        for d in (0.0, 1e-7, 4.9e-7, 5e-7, 5.1e-7, 1e-6, 1.5e-6, 2.5e-6, 1e-3, 0.7):
            ages += [edge + d, max(0.0, edge - d)]
    return ages


def samples_of(ages: list[float]) -> list[tuple[float, float]]:
    """(monotonic time, latency) oldest first, as a window's `between` gives them."""
    return sorted((UPTO - a, 0.001 * (1 + i % 300)) for i, a in enumerate(ages))


def per_sample(samples: list[tuple[float, float]]) -> dict[datetime, list[float]]:
    """What the publisher did before: each sample's slot computed on its own."""
    out: dict[datetime, list[float]] = {}
    for t, v in samples:
        out.setdefault(traffic.slot_of(NOW - timedelta(seconds=UPTO - t)), []).append(v)
    return out


def slot_at(t: float) -> datetime:
    return traffic.slot_of(NOW - timedelta(seconds=UPTO - t))


def test_runs_are_the_slots_of_each_sample_across_boundaries() -> None:
    rng = random.Random(7)
    cases = [straddling_ages(), [], [0.0], [3.0] * 5,
             [rng.uniform(0, 17) for _ in range(2000)]]
    for ages in cases:
        samples = samples_of(ages)
        runs = list(slot_runs(samples, slot_at))
        want = per_sample(samples)
        assert {start: [v for _, v in samples[lo:hi]] for start, lo, hi in runs} == want
        # The runs cover every sample once, in order, one run per slot.
        assert [i for _, lo, hi in runs for i in range(lo, hi)] == list(range(len(samples)))
        assert len(runs) == len(want)
    assert len(per_sample(samples_of(straddling_ages()))) == 5  # 4 boundaries crossed


def test_the_rows_written_are_those_of_each_sample_in_its_slot(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               ) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'a3s.db'}")
    try:
        monkeypatch.setattr(traffic, "db_now", lambda conn: NOW)
        book = LoadBook(load_catalog(None), stale_after_s=1.5)
        dep = book.deployment("dep-1")
        ages = straddling_ages()
        for i, (t, v) in enumerate(samples_of(ages)):
            dep.first_byte.add(v, now=t)
            dep.arrivals.add(0.0, now=t)
            if i % 3 == 0:
                dep.errors.add(0.0, now=t)
        pub = TrafficPublisher(book, store.engine, 2.0, gateway="g")
        pub._write(_Round(UPTO, list(book.deployments.items()), {}))
        with store.engine.connect() as conn:
            rows = {traffic._aware(r.slot_start): r for r in conn.execute(
                select(GatewayTrafficRow).where(
                    GatewayTrafficRow.deployment_id != HEARTBEAT))}  # type: ignore[arg-type]
        by_slot = per_sample(samples_of(ages))
        errors = per_sample([s for i, s in enumerate(samples_of(ages)) if i % 3 == 0])
        assert set(rows) == set(by_slot)
        for start, values in by_slot.items():
            want = Histogram()
            for v in values:
                want.add(v)
            assert rows[start].requests == len(values)
            assert rows[start].failures == len(errors.get(start, []))
            assert rows[start].latency == want.to_json()
    finally:
        store.close()


def test_add_all_buckets_as_bucket_of_on_every_edge() -> None:
    values = [0.0, -1.0, 1e-9, 2e300]
    for edge in histogram._EDGES:
        below = math.nextafter(edge, 0.0)
        values += [edge, below, math.nextafter(below, 0.0), math.nextafter(edge, math.inf)]
        assert bucket_of(edge) == bucket_of(below) + 1  # each is where a bucket begins
    rng = random.Random(3)
    values += [10 ** rng.uniform(-4, 4) for _ in range(20_000)]
    for v in values:
        h = Histogram()
        h.add_all([v])
        assert h.counts == {bucket_of(v): 1}, v
    one_by_one, at_once = Histogram({5: 2}), Histogram({5: 2})
    for v in values:
        one_by_one.add(v)
    at_once.add_all(iter(values))
    assert at_once.counts == one_by_one.counts
    assert bucket_of(histogram._EDGES[-1]) == TOP and len(set(histogram._EDGES)) == TOP


def test_add_all_refuses_what_add_refuses() -> None:
    for bad in (math.nan, math.inf):
        h = Histogram()
        with pytest.raises((ValueError, OverflowError)):
            h.add_all([0.1, bad])
        with pytest.raises((ValueError, OverflowError)):
            Histogram().add(bad)
    ok = Histogram()
    ok.add_all([])
    assert ok.counts == {}
