"""The directory: what it reads, how long it trusts it, and invalidation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel

from a3s_core.gateway import directory as directory_mod
from a3s_core.gateway.directory import Directory, load_snapshot
from a3s_core.keys import hash_key
from a3s_core.store.db import make_engine
from a3s_core.store.tables import ApiKeyRow, DeploymentRow, ReplicaRow


def store(tmp_path: Path) -> Engine:
    db = make_engine(f"sqlite:///{tmp_path / 'dir.db'}")
    SQLModel.metadata.create_all(db)
    return db


def add(db: Engine, dep_id: str, name: str, ns: str = "ns", status: str = "running",
        replicas: tuple[tuple[str, str, str | None], ...] = (), key: str | None = None,
        revoked: bool = False, balancer: str | None = None) -> None:
    with Session(db) as s:
        s.add(DeploymentRow(  # type: ignore[call-arg]
            id=dep_id, name=name, namespace=ns, model="org/m", engine="vllm", status=status,
            spec={"name": name, "balancer": balancer},
        ))
        s.flush()
        for rid, state, url in replicas:
            s.add(ReplicaRow(id=rid, deployment_id=dep_id, state=state, url=url, gpu="L4-24GB",
                             tensor_parallel_size=2))
        if key:
            s.add(ApiKeyRow(id="k-" + dep_id, deployment_id=dep_id, key_hash=hash_key(key),
                            prefix="sk-a3s-x", revoked_at=datetime.now(UTC) if revoked else None))
        s.commit()


def test_snapshot_reads_routable_state(tmp_path: Path) -> None:
    db = store(tmp_path)
    add(db, "d1", "qwen", replicas=(("r1", "ready", "http://a:1/"), ("r2", "starting", "http://b:1"),
                                    ("r3", "ready", None)), key="sk-a3s-one", balancer="weighted")
    add(db, "d2", "qwen", ns="other", key="sk-a3s-two", revoked=True)
    add(db, "d3", "gone", status="deleted", key="sk-a3s-three")
    snap = load_snapshot(db)
    assert snap.key("sk-a3s-one").deployment_id == "d1"
    assert snap.key("sk-a3s-two").revoked and snap.key("sk-a3s-two").deployment_id is None
    assert snap.key("sk-a3s-three").revoked  # its deployment is deleted
    assert not snap.key("sk-a3s-nope").revoked
    assert [d.namespace for d in snap.named("qwen")] == ["ns", "other"]
    assert snap.by_path("ns", "gone") is None and snap.named("gone") == []
    d1 = snap.by_path("ns", "qwen")
    assert d1 is not None and d1.balancer == "weighted"
    [ready] = snap.ready_replicas("d1")  # only ready replicas with a URL
    assert (ready.url, ready.gpu, ready.tensor_parallel_size) == ("http://a:1", "L4-24GB", 2)


async def test_cached_until_invalidated_or_old(tmp_path: Path) -> None:
    db = store(tmp_path)
    add(db, "d1", "one", key="sk-a3s-one")
    directory = Directory(db, ttl_s=60)
    first = await directory.snapshot()
    add(db, "d2", "two", key="sk-a3s-two")
    assert await directory.snapshot() is first  # within ttl: no read
    directory.invalidate()
    second = await directory.snapshot()
    assert second is not first and second.key("sk-a3s-two").deployment_id == "d2"

    # Past the ttl the old snapshot is served while a refresh runs in the background.
    directory.ttl_s = 0.0
    add(db, "d3", "three")
    stale = await directory.snapshot()
    assert stale is second
    await asyncio.sleep(0.2)
    assert (await directory.snapshot()).by_path("ns", "three") is not None


async def test_in_hand_is_the_snapshot_that_needs_no_wait(tmp_path: Path) -> None:
    """The request path's no-coroutine shortcut: what snapshot() would return at once,
    and None whenever snapshot() would read the store first."""
    db = store(tmp_path)
    add(db, "d1", "one", key="sk-a3s-one")
    directory = Directory(db, ttl_s=60)
    assert directory.in_hand() is None  # never read
    first = await directory.snapshot()
    assert directory.in_hand() is first
    directory.invalidate()
    assert directory.in_hand() is None  # a change here: the next request reads first
    second = await directory.snapshot()
    assert directory.in_hand() is second and second is not first
    assert second.key("sk-a3s-one") is second.key("sk-a3s-one")  # made once per snapshot
    # Old: still served at once, with a refresh started behind it.
    directory.ttl_s = 0.0
    add(db, "d2", "two")
    assert directory.in_hand() is second
    await asyncio.sleep(0.2)
    fresh = directory.in_hand()
    assert fresh is not None and fresh.by_path("ns", "two") is not None


async def test_concurrent_callers_share_one_read(tmp_path: Path) -> None:
    db = store(tmp_path)
    add(db, "d1", "one")
    directory = Directory(db)
    snaps = await asyncio.gather(*(directory.snapshot() for _ in range(20)))
    assert len({id(s) for s in snaps}) == 1


async def test_a_key_is_hashed_once_per_snapshot_and_revoked_with_the_next(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = store(tmp_path)
    add(db, "d1", "one", key="sk-a3s-one")
    hashed: list[str] = []

    def counting(key: str) -> str:
        hashed.append(key)
        return hash_key(key)

    monkeypatch.setattr(directory_mod, "hash_key", counting)
    directory = Directory(db, ttl_s=60)
    first = await directory.snapshot()
    assert [first.key("sk-a3s-one").deployment_id for _ in range(3)] == ["d1"] * 3
    assert hashed == ["sk-a3s-one"]  # the later requests found it without hashing
    # Garbage keys are hashed every time and kept nowhere: the cache holds live keys only.
    for i in range(1000):
        assert first.key(f"sk-a3s-junk-{i}").deployment_id is None
    assert first.key("sk-a3s-junk-1").deployment_id is None
    assert len(hashed) == 1002 and len(first._seen) == 1

    with Session(db) as s:  # revoked through the API: a row change, then invalidate()
        row = s.get(ApiKeyRow, "k-d1")
        assert row is not None
        row.revoked_at = datetime.now(UTC)
        s.add(row)
        s.commit()
    assert first.key("sk-a3s-one").deployment_id == "d1"  # that snapshot, as before
    directory.invalidate()
    second = await directory.snapshot()
    assert second is not first and not second._seen  # nothing carried over
    found = second.key("sk-a3s-one")
    assert found.deployment_id is None and found.revoked
    assert second.key("sk-a3s-one").revoked and not second._seen


async def test_a_refresh_past_the_ttl_does_not_reuse_the_old_snapshots_keys(
        tmp_path: Path) -> None:
    """Another process revoked the key (no invalidate() here): the background refresh's
    snapshot refuses it, though the old one had it cached."""
    db = store(tmp_path)
    add(db, "d1", "one", key="sk-a3s-one")
    directory = Directory(db, ttl_s=0.0)
    first = await directory.snapshot()
    assert first.key("sk-a3s-one").deployment_id == "d1"
    with Session(db) as s:
        row = s.get(ApiKeyRow, "k-d1")
        assert row is not None
        row.revoked_at = datetime.now(UTC)
        s.add(row)
        s.commit()
    assert directory.in_hand() is first  # served while the refresh runs
    await asyncio.sleep(0.2)
    fresh = directory.in_hand()
    assert fresh is not None and fresh is not first
    assert fresh.key("sk-a3s-one").revoked and fresh.key("sk-a3s-one").deployment_id is None
