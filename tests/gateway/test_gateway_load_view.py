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
from a3s_core.gateway.load import LoadBook, replica_load
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
