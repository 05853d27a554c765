"""A replica as a balancer sees it (`ReplicaStats.as_load`), built per replica per request
without pydantic's per-field pass, and the shared figures read without a new LoadFigures
each time: the same values as the slow ways, and never stale after a scrape."""

from __future__ import annotations

import copy
import pickle
import time
from pathlib import Path

from a3s_core.catalog import load_catalog
from a3s_core.gateway.directory import ReplicaInfo
from a3s_core.gateway.load import LoadBook, ReplicaStats, replica_load
from a3s_core.gateway.share import LoadShare
from a3s_core.types import LoadFigures, ReplicaLoad

INFO = ReplicaInfo(id="rep-a", deployment_id="dep-1", url="http://127.0.0.1:1", gpu="A100-80GB",
                   tensor_parallel_size=2, max_model_len=4096, kv_capacity_tokens=1000)


def test_as_load_is_the_validated_model_of_every_field() -> None:
    book = LoadBook(load_catalog(None), stale_after_s=1.5)
    st = book.sync((INFO,))[0]
    book.started(st)
    book.scraped(st, LoadFigures(waiting=2.0, running=1.0, kv_cache_usage=0.5))
    book.started(st)
    load = st.as_load(time.monotonic(), 1.5)
    # Every field of the model is set (a field added to ReplicaLoad must be filled here).
    assert set(load.__dict__) == set(ReplicaLoad.model_fields)
    assert load.model_fields_set == set(ReplicaLoad.model_fields)
    same = ReplicaLoad.model_validate(load.model_dump())
    assert load == same and repr(load) == repr(same)
    assert (load.running, load.in_flight, load.kv_capacity_tokens) == (2.0, 2, 1000)
    assert load.gateway_in_flight == 2
    # It behaves as any model: copies, pickles, updates.
    assert pickle.loads(pickle.dumps(load)) == load and copy.deepcopy(load) == load
    assert load.model_copy(update={"waiting": 7.0}).waiting == 7.0 and load.waiting == 2.0


def test_replica_load_matches_model_construct() -> None:
    values = {"replica_id": "r", "url": "http://x", "waiting": 1.0, "running": 0.0,
              "in_flight": 3, "peer_in_flight": 1, "kv_cache_usage": None,
              "gpu_utilization": 40.0, "weight": 2039.0, "metrics_fresh": True,
              "metrics_age_s": 0.2, "kv_capacity_tokens": None}
    fast, slow = replica_load(dict(values)), ReplicaLoad.model_construct(**values)
    assert fast == slow and fast.model_fields_set == slow.model_fields_set
    fast.waiting = 5.0  # one object's fields set is its own
    assert replica_load(dict(values)).waiting == 1.0


def test_shared_figures_are_read_again_after_each_scrape(tmp_path: Path) -> None:
    owner_share = LoadShare.create(tmp_path / "share", workers=2, slots=8)
    other_share = LoadShare.attach(tmp_path / "share", 1)
    try:
        books = []
        for share in (owner_share, other_share):
            book = LoadBook(load_catalog(None), stale_after_s=10.0)
            book.share = share
            books.append(book)
        sts = [b.sync((INFO,))[0] for b in books]
        owner = 0 if books[0].owns(sts[0]) else 1
        reader = sts[1 - owner]
        now = time.monotonic()
        books[owner].scraped(sts[owner], LoadFigures(waiting=1.0, running=0.0), now)
        first = reader.as_load(now, 10.0)
        assert (first.waiting, first.kv_cache_usage) == (1.0, None)
        assert reader.as_load(now, 10.0).waiting == 1.0  # read again: the same figures
        # A new scrape with other figures (and one the engine no longer gives): seen at once.
        books[owner].scraped(sts[owner], LoadFigures(waiting=4.0, kv_cache_usage=0.25), now)
        second = reader.as_load(now, 10.0)
        assert (second.waiting, second.running, second.kv_cache_usage) == (4.0, 0.0, 0.25)
        # The same figures scraped later: the new time counts (fresh, younger).
        books[owner].scraped(sts[owner], LoadFigures(waiting=4.0, kv_cache_usage=0.25), now + 5)
        third = reader.as_load(now + 5, 10.0)
        assert third.metrics_age_s == 0.0 and third.waiting == 4.0
        assert first.waiting == 1.0  # loads already handed out are not changed
    finally:
        other_share.close()
        owner_share.close()


def test_sync_by_the_snapshots_tuple_follows_every_change() -> None:
    book = LoadBook(load_catalog(None), stale_after_s=1.5)
    other = ReplicaInfo(id="rep-b", deployment_id="dep-1", url="http://127.0.0.1:2", gpu=None,
                        tensor_parallel_size=1, max_model_len=4096)
    snap1 = (INFO, other)
    first = book.sync(snap1)
    assert [st.info.id for st in first] == ["rep-a", "rep-b"]
    assert book.sync(snap1) == first  # the same snapshot: the same stats
    book.started(first[0])
    # Re-read with equal rows: new tuple, same stats (their in-flight counts carry on).
    again = book.sync((INFO, other))
    assert again[0] is first[0] and again[0].in_flight == 1
    # A restarted replica (new URL) is a new process: new stats, nothing in flight.
    moved = ReplicaInfo(id="rep-b", deployment_id="dep-1", url="http://127.0.0.1:3", gpu=None,
                        tensor_parallel_size=1, max_model_len=4096)
    snap3 = (INFO, moved)
    third = book.sync(snap3)
    assert third[1] is not first[1] and third[1].info.url.endswith(":3")
    assert book.replicas["rep-b"] is third[1]
    # Forgotten replicas are made again on the next sync, even of a tuple seen before; one
    # with a request still in flight (draining) is kept until it has none.
    book.forget_except(set(), set())
    fourth = book.sync(snap3)
    assert fourth[0] is third[0] and fourth[0].in_flight == 1
    assert fourth[1] is not third[1] and book.replicas["rep-b"] is fourth[1]
    book.finished(fourth[0])
    book.forget_except(set(), set())
    fifth = book.sync(snap3)
    assert fifth[0] is not fourth[0] and book.replicas["rep-a"] is fifth[0]
    assert book.sync(()) == []


def reference_as_load(st: ReplicaStats, now: float, stale_after_s: float,
                      live: bool = True) -> ReplicaLoad:
    """ReplicaStats.as_load as first written: every field worked out and validated."""
    f, at, in_flight, at_scrape = st.scrape_view()
    fresh = at is not None and now - at <= stale_after_s
    waiting = (f.waiting or 0.0) if fresh else 0.0
    running = (f.running or 0.0) if fresh else 0.0
    if fresh and live:
        delta = float(in_flight - at_scrape)
        if delta >= 0:
            running += delta
        else:
            freed = min(running, -delta)
            running -= freed
            waiting = max(0.0, waiting - (-delta - freed))
    return ReplicaLoad(
        replica_id=st.info.id, url=st.info.url, waiting=waiting, running=running,
        in_flight=st.in_flight, peer_in_flight=max(0, in_flight - st.in_flight),
        kv_cache_usage=f.kv_cache_usage if fresh else None,
        gpu_utilization=f.gpu_utilization if fresh else None, weight=st.weight,
        metrics_fresh=fresh, metrics_age_s=None if at is None else now - at,
        kv_capacity_tokens=st.info.kv_capacity_tokens,
    )


def same_load(fast: ReplicaLoad, slow: ReplicaLoad) -> None:
    """Equal, field for field in the model's order and with the same types."""
    assert list(fast.__dict__) == list(ReplicaLoad.model_fields)
    assert [(k, v, type(v)) for k, v in fast.__dict__.items()] == [
        (k, v, type(v)) for k, v in slow.__dict__.items()]
    assert repr(fast) == repr(slow) and fast.model_dump_json() == slow.model_dump_json()


def test_as_load_is_the_reference_in_every_state(tmp_path: Path) -> None:
    """Never scraped, fresh, stale; more and fewer in flight than at the scrape (the queue
    refilling the running set); live or as scraped; shared or not; after a new weight,
    a restarted replica's new info, and with a load handed out earlier mutated."""
    share = LoadShare.create(tmp_path / "share", workers=2, slots=8)
    peer = LoadShare.attach(tmp_path / "share", 1)
    try:
        for shared in (False, True):
            book = LoadBook(load_catalog(None), stale_after_s=1.5)
            other = LoadBook(load_catalog(None), stale_after_s=1.5)
            if shared:
                book.share, other.share = share, peer
            st = book.sync((INFO,))[0]
            mate = other.sync((INFO,))[0]
            now = time.monotonic()
            for figs in (LoadFigures(), LoadFigures(waiting=3.0, running=2.0,
                                                    kv_cache_usage=0.4, gpu_utilization=55.0)):
                for started, finished, peers in ((0, 0, 0), (4, 0, 2), (4, 3, 0), (9, 9, 3)):
                    for _ in range(started):
                        book.started(st)
                    book.scraped(st, figs, now)
                    for _ in range(finished):
                        book.finished(st)
                    for _ in range(peers):
                        other.started(mate)
                    for at in (now, now + 1.5, now + 1.6):
                        for live in (True, False):
                            handed = st.as_load(at, 1.5, live)
                            same_load(handed, reference_as_load(st, at, 1.5, live))
                            handed.waiting = 99.0  # a balancer's change stays its own
                            handed.__dict__["url"] = "x"
                            same_load(st.as_load(at, 1.5, live),
                                      reference_as_load(st, at, 1.5, live))
                    while st.in_flight:
                        book.finished(st)
                    while mate.in_flight:
                        other.finished(mate)
            st.weight = 123.5
            same_load(st.as_load(now, 1.5), reference_as_load(st, now, 1.5))
            st.info = ReplicaInfo(id="rep-a", deployment_id="dep-1", url="http://elsewhere:1",
                                  gpu=None, tensor_parallel_size=1, max_model_len=0)
            same_load(st.as_load(now, 1.5), reference_as_load(st, now, 1.5))
            assert st.as_load(now, 1.5).url == "http://elsewhere:1"
        never = LoadBook(load_catalog(None), stale_after_s=1.5).sync((INFO,))[0]
        same_load(never.as_load(now, 1.5), reference_as_load(never, now, 1.5))
    finally:
        peer.close()
        share.close()
