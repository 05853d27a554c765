"""What the gateway needs to know from the store, read in bulk and kept for under a second.

The hot path never queries the database: it reads an immutable `Snapshot` that a refresh
replaces at most every `ttl_s` (stale-while-revalidate: the request that notices the age
starts the refresh and goes on with the old snapshot). `invalidate()` (called by the
controller on changes in this process) makes the next lookup wait for fresh rows, so a
revoked key or a deleted deployment stops working at once here; other processes see it
within `ttl_s`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine as DbEngine
from sqlmodel import Session, col, select

from a3s_core.keys import hash_key
from a3s_core.store.tables import ApiKeyRow, DeploymentRow, ReplicaRow

# Deployments in these states are gone for the data plane: their names answer 404.
GONE_STATUSES = frozenset({"deleted", "deleting"})


@dataclass(frozen=True, slots=True)
class DeploymentInfo:
    id: str
    name: str
    namespace: str
    engine: str
    status: str
    model: str
    balancer: str | None
    created: int


@dataclass(frozen=True, slots=True)
class ReplicaInfo:
    id: str
    deployment_id: str
    url: str
    gpu: str | None
    tensor_parallel_size: int
    max_model_len: int


@dataclass(frozen=True, slots=True)
class KeyLookup:
    deployment_id: str | None
    revoked: bool = False


@dataclass(frozen=True)
class Snapshot:
    taken_at: float
    deployments: Mapping[str, DeploymentInfo] = field(default_factory=dict)
    by_ns_name: Mapping[tuple[str, str], str] = field(default_factory=dict)
    by_name: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    keys: Mapping[str, str] = field(default_factory=dict)  # key hash → deployment id
    revoked: frozenset[str] = frozenset()
    replicas: Mapping[str, tuple[ReplicaInfo, ...]] = field(default_factory=dict)

    def key(self, key: str) -> KeyLookup:
        digest = hash_key(key)
        dep = self.keys.get(digest)
        if dep is not None:
            return KeyLookup(dep)
        return KeyLookup(None, revoked=digest in self.revoked)

    def by_path(self, namespace: str, name: str) -> DeploymentInfo | None:
        dep_id = self.by_ns_name.get((namespace, name))
        return self.deployments.get(dep_id) if dep_id else None

    def named(self, name: str) -> list[DeploymentInfo]:
        return [self.deployments[i] for i in self.by_name.get(name, ())]

    def ready_replicas(self, deployment_id: str) -> tuple[ReplicaInfo, ...]:
        return self.replicas.get(deployment_id, ())


def load_snapshot(db: DbEngine) -> Snapshot:
    """Every live deployment, its ready replicas and its keys, in three queries."""
    with Session(db) as session:
        deps = session.exec(select(DeploymentRow)).all()
        reps = session.exec(
            select(ReplicaRow).where(ReplicaRow.state == "ready", col(ReplicaRow.url).is_not(None))
        ).all()
        keys = session.exec(
            select(ApiKeyRow.key_hash, ApiKeyRow.deployment_id, ApiKeyRow.revoked_at)
        ).all()
    deployments: dict[str, DeploymentInfo] = {}
    by_ns_name: dict[tuple[str, str], str] = {}
    by_name: dict[str, list[str]] = {}
    for d in deps:
        if d.status in GONE_STATUSES:
            continue
        spec: dict[str, Any] = d.spec or {}
        info = DeploymentInfo(
            id=d.id, name=d.name, namespace=d.namespace, engine=d.engine, status=d.status,
            model=d.model, balancer=spec.get("balancer") or None,
            created=int(d.created_at.timestamp()) if d.created_at else 0,
        )
        deployments[d.id] = info
        by_ns_name[(d.namespace, d.name)] = d.id
        by_name.setdefault(d.name, []).append(d.id)
    replicas: dict[str, list[ReplicaInfo]] = {}
    for r in reps:
        if r.deployment_id not in deployments or not r.url:
            continue
        replicas.setdefault(r.deployment_id, []).append(
            ReplicaInfo(
                id=r.id, deployment_id=r.deployment_id, url=r.url.rstrip("/"), gpu=r.gpu,
                tensor_parallel_size=max(1, r.tensor_parallel_size or 1),
                max_model_len=r.max_model_len,
            )
        )
    live_keys: dict[str, str] = {}
    revoked: set[str] = set()
    for key_hash, dep_id, revoked_at in keys:
        if revoked_at is not None or dep_id not in deployments:
            revoked.add(key_hash)  # a deleted deployment's keys are as good as revoked
        else:
            live_keys[key_hash] = dep_id
    return Snapshot(
        taken_at=time.monotonic(),
        deployments=deployments,
        by_ns_name=by_ns_name,
        by_name={k: tuple(sorted(v)) for k, v in by_name.items()},
        keys=live_keys,
        revoked=frozenset(revoked),
        replicas={k: tuple(sorted(v, key=lambda r: r.id)) for k, v in replicas.items()},
    )


class Directory:
    """The gateway's read side of the store, cached (≤ `ttl_s`) so requests never wait on it."""

    def __init__(self, db: DbEngine, ttl_s: float = 0.5, miss_refresh_s: float = 0.1) -> None:
        self._db = db
        self.ttl_s = ttl_s
        # On an unknown key or name, re-read if the snapshot is older than this: another
        # process may have just created the deployment. Bounded, so random keys cannot
        # turn into a query per request.
        self.miss_refresh_s = miss_refresh_s
        self._snapshot: Snapshot | None = None
        self._snapshot_gen = -1
        self._gen = 0  # bumped by invalidate(); a snapshot read before the bump is stale
        self._refreshing: asyncio.Task[Snapshot] | None = None
        self._refreshing_gen = -1

    @property
    def current(self) -> Snapshot | None:
        """The snapshot in hand, however old (for reports that must not wait)."""
        return self._snapshot

    def invalidate(self) -> None:
        """The next lookup reads the store again (call after any change to deployments,
        replicas or keys)."""
        self._gen += 1

    async def snapshot(self) -> Snapshot:
        snap = self._snapshot
        if snap is None or self._snapshot_gen != self._gen:
            return await self.refresh()
        if time.monotonic() - snap.taken_at > self.ttl_s and self._refreshing is None:
            self._start_refresh()
        return snap

    async def fresh_on_miss(self, snap: Snapshot) -> Snapshot:
        """A newer snapshot when `snap` is old enough that a miss may be its staleness."""
        if time.monotonic() - snap.taken_at > self.miss_refresh_s:
            return await self.refresh()
        return snap

    async def refresh(self) -> Snapshot:
        """Read the store now. One read per generation: concurrent callers share it."""
        while True:
            gen = self._gen
            task = self._refreshing
            if task is None or self._refreshing_gen != gen:
                task = self._start_refresh()
            snap = await asyncio.shield(task)
            if self._snapshot_gen >= gen:
                return snap

    def _start_refresh(self) -> asyncio.Task[Snapshot]:
        gen = self._gen
        task = asyncio.get_running_loop().create_task(self._read(gen))
        self._refreshing, self._refreshing_gen = task, gen
        return task

    async def _read(self, gen: int) -> Snapshot:
        try:
            snap = await asyncio.to_thread(load_snapshot, self._db)
            if gen >= self._snapshot_gen:  # an older read finishing late never wins
                self._snapshot, self._snapshot_gen = snap, gen
            return snap
        finally:
            if self._refreshing_gen == gen:
                self._refreshing = None
