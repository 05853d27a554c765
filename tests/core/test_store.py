"""The store on both databases: SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from a3s_core.errors import Conflict
from a3s_core.store import DeploymentRow, ReplicaRow, Store, new_id
from a3s_core.types import Event


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = (
        f"sqlite:///{tmp_path / 'a3s.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    s = Store.open(url)
    yield s
    s.close()


def dep(name: str = "qwen", namespace: str = "default") -> DeploymentRow:
    return DeploymentRow(
        id=new_id("dep"),
        name=name,
        namespace=namespace,
        model="m",
        engine="vllm",
        spec={"name": name, "model": "m"},
    )


def test_deployment_keys_and_uniqueness(store: Store) -> None:
    d = dep()
    keys = store.create_deployments([d])
    key = keys[d.id]
    assert store.verify_key(key) == d.id
    assert store.verify_key(key + "x") is None
    with pytest.raises(Conflict):
        store.create_deployments([dep()])
    store.create_deployments([dep(namespace="other")])
    # A deleted deployment frees its name.
    store.update_deployment(d.id, status="deleted")
    store.create_deployments([dep()])
    assert len(store.list_deployments(include_deleted=True)) == 3


def test_revoke_and_rotate(store: Store) -> None:
    d = dep()
    key = store.create_deployments([d])[d.id]
    new = store.rotate_key(d.id)
    assert store.verify_key(key) is None and store.verify_key(new) == d.id
    assert store.revoke_keys(d.id) == 1
    assert store.verify_key(new) is None


def test_gpu_booking_is_exclusive_under_concurrency(store: Store) -> None:
    d = dep()
    store.create_deployments([d])
    wins: list[str] = []
    lock = threading.Lock()

    def attempt(i: int) -> None:
        row = ReplicaRow(id=f"r{i}", deployment_id=d.id, node="n0", gpu_indices=[0, 1])
        if store.book(row, d.id):
            with lock:
                wins.append(row.id)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.allocations() == {"n0": {0: wins[0], 1: wins[0]}}
    store.remove_replica(wins[0])
    assert store.allocations() == {}
    assert store.replicas(d.id) == []


def test_transition_never_undoes_a_delete(store: Store) -> None:
    d = dep()
    store.create_deployments([d])
    assert store.transition(d.id, status="running") is not None
    store.update_deployment(d.id, status="deleting")
    assert store.transition(d.id, status="running") is None
    assert store.get_deployment(d.id).status == "deleting"


def test_event_seq_is_global_and_ordered(store: Store) -> None:
    def ev(i: int) -> Event:
        return Event(
            ts=datetime.now(UTC),
            type="t",
            message=f"m{i}",
            deployment_id="a" if i % 2 else "b",
            namespace="ns",
        )

    threads = [threading.Thread(target=lambda i=i: store.append_event(ev(i))) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = [e.seq for e in store.events_since(0)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 20
    assert [e.seq for e in store.events_since(seqs[9])] == seqs[10:]
    assert all(e.deployment_id == "a" for e in store.events_since(0, deployment_id="a"))
    assert store.last_seq() == seqs[-1]


def test_append_events_stores_a_batch_in_order(store: Store) -> None:
    """One transaction, consecutive seqs in list order, each seq on its own event."""
    first = store.append_event(Event(ts=datetime.now(UTC), type="t", message="first"))
    batch = [
        Event(ts=datetime.now(UTC), type="t", message=f"m{i}", data={"i": i}) for i in range(25)
    ]
    stored = store.append_events(batch)
    assert [e.seq for e in stored] == list(range(first.seq + 1, first.seq + 26))
    assert [e.message for e in stored] == [e.message for e in batch]
    back = store.events_since(first.seq)
    assert [(e.seq, e.message, e.data) for e in back] == [
        (e.seq, e.message, e.data) for e in stored
    ]
    assert store.append_events([]) == []


def test_reopen_keeps_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a3s.db'}"
    s = Store.open(url)
    d = dep()
    key = s.create_deployments([d])[d.id]
    s.close()
    again = Store.open(url)  # runs migrations again: a no-op that keeps the data
    assert again.get_deployment(d.id).name == "qwen"
    assert again.verify_key(key) == d.id
