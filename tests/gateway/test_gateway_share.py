"""The workers' shared load book (share.py), two workers' views of one file in one process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from a3s_core.catalog import load_catalog
from a3s_core.gateway.directory import ReplicaInfo
from a3s_core.gateway.load import LoadBook, ReplicaStats
from a3s_core.gateway.share import RECLAIM_AFTER_S, LoadShare
from a3s_core.types import LoadFigures

Shares = tuple[LoadShare, LoadShare]
INFO = ReplicaInfo(id="rep-a", deployment_id="dep-1", url="http://127.0.0.1:1", gpu=None,
                   tensor_parallel_size=1, max_model_len=4096)


@pytest.fixture
def shares(tmp_path: Path) -> Iterator[tuple[LoadShare, LoadShare]]:
    created = LoadShare.create(tmp_path / "share", workers=2, slots=16)
    other = LoadShare.attach(tmp_path / "share", 1)
    yield created, other
    other.close()
    created.close()


def books(shares: Shares) -> tuple[LoadBook, LoadBook]:
    out = []
    for share in shares:
        book = LoadBook(load_catalog(None), stale_after_s=1.5)
        book.share = share
        out.append(book)
    return out[0], out[1]


def _one(book: LoadBook) -> ReplicaStats:
    return book.sync((INFO,))[0]


def test_a_worker_sees_the_replicas_in_flight_over_every_worker(shares: Shares) -> None:
    b0, b1 = books(shares)
    st0, st1 = _one(b0), _one(b1)
    for _ in range(3):
        b1.started(st1)
    b0.started(st0)
    now = time.monotonic()
    load = b0.replicas["rep-a"].as_load(now, 1.5)
    # Its own count stays its own; the others' come from the shared cells.
    assert (load.in_flight, load.peer_in_flight, load.gateway_in_flight) == (1, 3, 4)
    b1.finished(st1)
    assert st0.as_load(now, 1.5).gateway_in_flight == 3
    assert st1.as_load(now, 1.5).in_flight == 2


def test_one_worker_scrapes_and_the_other_moves_the_figures_on_by_all_in_flight(
    shares: Shares,
) -> None:
    b0, b1 = books(shares)
    st0, st1 = _one(b0), _one(b1)
    owner, other = (b0, b1) if b0.owns(st0) else (b1, b0)
    assert owner.owns(st0) != other.owns(st0)  # exactly one scrapes it
    ost, xst = (st0, st1) if owner is b0 else (st1, st0)
    owner.started(ost)
    owner.scraped(ost, LoadFigures(waiting=2.0, running=1.0, kv_cache_usage=0.5))
    load = xst.as_load(time.monotonic(), 1.5)
    assert (load.waiting, load.running, load.kv_cache_usage) == (2.0, 1.0, 0.5)
    assert load.metrics_fresh and load.gpu_utilization is None
    other.started(xst)  # sent since the scrape, through the other worker
    other.started(xst)
    seen_by_owner = ost.as_load(time.monotonic(), 1.5)
    assert seen_by_owner.running == 3.0 and seen_by_owner.gateway_in_flight == 3
    assert load.metrics_age_s is not None  # the scrape's age, though another worker made it
    assert ost.as_load(time.monotonic(), 1.5, live=False).running == 1.0


def test_request_counts_add_up_over_workers(shares: Shares) -> None:
    b0, b1 = books(shares)
    d1 = b1.deployment("dep-1")
    for _ in range(5):
        d1.arrivals.add(0.0)
    d1.errors.add(0.0)
    b1.publish({"dep-1"})
    b0.publish({"dep-1"})  # the worker that routed none still has the deployment's stats
    d0 = b0.deployments["dep-1"]
    d0.arrivals.add(0.0)
    now = time.monotonic()
    assert (d0.requests(now), d0.failed(now)) == (6, 1)
    assert (d1.requests(now), d1.failed(now)) == (5, 1)  # b0's own was not published yet


def test_a_change_in_one_worker_bumps_the_generation_all_see(shares: Shares) -> None:
    s0, s1 = shares
    before = s1.generation
    s0.bump()
    s0.bump()
    assert s1.generation == before + 2


def test_a_dead_workers_counts_are_cleared(shares: Shares) -> None:
    s0 = shares[0]
    b0, b1 = books(shares)
    st0, st1 = _one(b0), _one(b1)
    b1.started(st1)
    b1.started(st1)
    assert st0.as_load(time.monotonic(), 1.5).peer_in_flight == 2
    s0.clear_worker(1)
    assert st0.as_load(time.monotonic(), 1.5).gateway_in_flight == 0


def test_slots_are_reclaimed_only_when_unused_for_a_while(tmp_path: Path) -> None:
    share = LoadShare.create(tmp_path / "s", workers=1, slots=2)
    now = time.monotonic()
    a = share.slot("r:a", now)
    assert a is not None and share.slot("r:b", now) is not None
    assert share.slot("r:c", now) is None  # full
    a.set_own(1)
    later = now + RECLAIM_AFTER_S + 1
    share.forget("r:b")  # b's counts are zero; a still has one in flight
    c = share.slot("r:c", later)
    assert c is not None and c.total() == 0
    assert share.peek("r:b") is None and share.peek("r:a") is not None
    share.close()


def test_a_long_id_keeps_its_own_slot(tmp_path: Path) -> None:
    share = LoadShare.create(tmp_path / "s", workers=1, slots=4)
    x, y = "r:" + "x" * 100 + "1", "r:" + "x" * 100 + "2"
    sx, sy = share.slot(x), share.slot(y)
    assert sx is not None and sy is not None and sx._off != sy._off
    share.close()
