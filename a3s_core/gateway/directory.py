"""What the gateway needs to know from the store, read in bulk and kept for under a second.

The hot path never queries the database: it reads an immutable `Snapshot` that a refresh
replaces at most every `ttl_s` (stale-while-revalidate: the request that notices the age
starts the refresh and goes on with the old snapshot). `invalidate()` (called by the
controller on changes in this process) makes the next lookup wait for fresh rows, so a
revoked key or a deleted deployment stops working at once here; other processes see it
within `ttl_s`.

When the store cannot be read ("fail static"): requests keep being served from the last
good snapshot; what it does not settle (no snapshot yet, an unknown key or name, or any
request after an `invalidate()` whose rows could not be read back, so that this process's
own changes are never undone) raises `StoreUnavailable` (503). A failed read is retried at
most every `ttl_s`, whatever the traffic; one warning is logged when the store becomes
unreachable and one info line when it is back. `store_ok` and `stale_for_s` report it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine as DbEngine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from a3s_core.gateway.errors import StoreUnavailable
from a3s_core.keys import hash_key
from a3s_core.store.tables import ApiKeyRow, DeploymentRow, ReplicaRow

# Deployments in these states are gone for the data plane: their names answer 404.
GONE_STATUSES = frozenset({"deleted", "deleting"})
log = logging.getLogger(__name__)


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
    kv_capacity_tokens: int | None = None  # from the deployment's plan, for the balancer


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
    # One KeyLookup per live key, made with the snapshot rather than per request.
    _hits: Mapping[str, KeyLookup] = field(init=False, repr=False, compare=False)
    # Presented key → its lookup, for live keys only: a request with a known key skips
    # SHA-256 (about 2 % of a plain request's CPU). Each entry is a key whose hash is in
    # `keys`, so there are at most that many, whatever garbage clients send; it dies with
    # the snapshot, so a revocation takes effect with the next one, as before.
    _seen: dict[str, KeyLookup] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hits", {d: KeyLookup(dep) for d, dep in self.keys.items()})
        object.__setattr__(self, "_seen", {})

    def key(self, key: str) -> KeyLookup:
        seen = self._seen.get(key)
        if seen is not None:
            return seen
        digest = hash_key(key)
        hit = self._hits.get(digest)
        if hit is not None:
            self._seen[key] = hit
            return hit
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
    plans: dict[str, dict[str, Any]] = {}
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
        if d.plan:
            plans[d.id] = d.plan
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
                kv_capacity_tokens=kv_capacity_tokens(
                    plans.get(r.deployment_id), r.gpu, max(1, r.tensor_parallel_size or 1)
                ),
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


def kv_capacity_tokens(plan: dict[str, Any] | None, gpu: str | None, tp: int) -> int | None:
    """Tokens of KV cache a replica on `gpu` × `tp` holds, by the plan's arithmetic (its
    KV budget per GPU × GPUs ÷ KV bytes per token); None when the plan does not say (no
    plan, an encoder, a GPU the plan has no candidate for)."""
    if not plan:
        return None
    try:
        per_token = int(plan.get("kv_bytes_per_token") or 0)
        if per_token <= 0:
            return None
        for cand in plan.get("candidates") or ():
            if cand.get("gpu") == gpu and int(cand.get("tensor_parallel_size", 0)) == tp:
                return int(cand["kv_budget_per_gpu_bytes"]) * tp // per_token
    except (TypeError, ValueError, KeyError, AttributeError):
        return None  # a plan from an older or foreign writer: routing does without
    return None


# What a lenient caller (the metrics scraper) gets while the store has never been read.
EMPTY = Snapshot(taken_at=-math.inf)


class Directory:
    """The gateway's read side of the store, cached (≤ `ttl_s`) so requests never wait on it."""

    def __init__(
        self, db: DbEngine, ttl_s: float = 0.5, miss_refresh_s: float = 0.1, wait_s: float = 5.0
    ) -> None:
        self._db = db
        self.ttl_s = ttl_s
        # A request waits at most this long for a read it needs (a store that does not
        # answer, rather than refuses, would hold it for the driver's own timeout, if any).
        self.wait_s = wait_s
        # On an unknown key or name, re-read if the snapshot is older than this: another
        # process may have just created the deployment. Bounded, so random keys cannot
        # turn into a query per request.
        self.miss_refresh_s = miss_refresh_s
        self._snapshot: Snapshot | None = None
        self._snapshot_gen = -1
        self._gen = 0  # bumped by invalidate(); a snapshot read before the bump is stale
        self._refreshing: asyncio.Task[Snapshot | None] | None = None
        self._refreshing_gen = -1
        # The store's health as the last read found it. A failed read is not retried for
        # `ttl_s` (counted from its end), so an outage costs the store one attempt per
        # `ttl_s` however many requests arrive.
        self._failed_at = -math.inf
        # The first failed read of this outage; None while the store reads fine.
        self._down_since: float | None = None

    @property
    def current(self) -> Snapshot | None:
        """The snapshot in hand, however old (for reports that must not wait)."""
        return self._snapshot

    @property
    def store_ok(self) -> bool:
        """False from a failed read of the store until the next successful one (any thread;
        for health reports)."""
        return self._down_since is None

    @property
    def stale_for_s(self) -> float | None:
        """None while the store reads fine. During an outage, how old the rows the gateway
        serves from are: seconds since the last successful read, or since the first failed
        one when none has succeeded yet (any thread)."""
        if self._down_since is None:
            return None
        snap = self._snapshot
        since = snap.taken_at if snap is not None else self._down_since
        return None if since is None else round(max(0.0, time.monotonic() - since), 3)

    def invalidate(self) -> None:
        """The next lookup reads the store again (call after any change to deployments,
        replicas or keys)."""
        self._gen += 1

    async def snapshot(self, strict: bool = False) -> Snapshot:
        """The snapshot to use now. Waits for the store only before the first read and after
        `invalidate()`; otherwise returns the one in hand and refreshes it in the background
        when older than `ttl_s`.

        When the store cannot be read, a `strict` caller (the request path) gets
        `StoreUnavailable` unless the snapshot in hand is still trustworthy, i.e. was read
        after the last `invalidate()`: falling back must never undo a change made in this
        process (a key revoked, a deployment deleted). Other callers (the metrics scraper)
        get the last snapshot however old, or an empty one when there is none."""
        snap = self.in_hand()
        if snap is not None:
            return snap
        try:
            return await self.refresh()
        except StoreUnavailable:
            if strict:
                raise
            return self._snapshot if self._snapshot is not None else EMPTY

    def in_hand(self) -> Snapshot | None:
        """What `snapshot()` returns when it need not wait (refreshing it in the background
        when older than `ttl_s`), without a coroutine; None when it must wait."""
        snap = self._snapshot
        if snap is None or self._snapshot_gen != self._gen:
            return None
        now = time.monotonic()
        if (now - snap.taken_at > self.ttl_s and self._refreshing is None
                and now - self._failed_at >= self.ttl_s):
            self._start_refresh()
        return snap

    async def fresh_on_miss(self, snap: Snapshot) -> Snapshot:
        """A newer snapshot when `snap` is old enough that a miss may be its staleness.
        Raises `StoreUnavailable` when that read fails or a failed one is recent."""
        if time.monotonic() - snap.taken_at > self.miss_refresh_s:
            return await self.refresh()
        return snap

    async def refresh(self) -> Snapshot:
        """Read the store now. One read per generation: concurrent callers share it.

        Raises `StoreUnavailable` when the read fails or takes longer than `wait_s`, and at
        once, without a read, when the last one failed less than `ttl_s` ago."""
        while True:
            if time.monotonic() - self._failed_at < self.ttl_s:
                raise StoreUnavailable(self.ttl_s)
            gen = self._gen
            task = self._refreshing
            if task is None or self._refreshing_gen != gen:
                task = self._start_refresh()
            try:
                async with asyncio.timeout(self.wait_s):
                    snap = await asyncio.shield(task)  # the read goes on for the others
            except TimeoutError:
                self._read_failed(TimeoutError(f"no answer from the store in {self.wait_s} s"))
                raise StoreUnavailable(self.ttl_s) from None
            if snap is None:
                raise StoreUnavailable(self.ttl_s)
            if self._snapshot_gen >= gen:
                return snap

    def _start_refresh(self) -> asyncio.Task[Snapshot | None]:
        gen = self._gen
        task = asyncio.get_running_loop().create_task(self._read(gen))
        self._refreshing, self._refreshing_gen = task, gen
        return task

    async def _read(self, gen: int) -> Snapshot | None:
        """One read of the store; None when it failed. Never raises: a background refresh
        has nobody awaiting it, and its exception would only surface at GC."""
        try:
            snap = await asyncio.to_thread(load_snapshot, self._db)
        except Exception as exc:
            self._read_failed(exc)
            return None
        else:
            if gen >= self._snapshot_gen:  # an older read finishing late never wins
                self._snapshot, self._snapshot_gen = snap, gen
            self._failed_at = -math.inf
            down = self._down_since
            if down is not None:
                self._down_since = None
                log.info("the store is reachable again (it was not for %.1f s)",
                         time.monotonic() - down)
            return snap
        finally:
            if self._refreshing_gen == gen:
                self._refreshing = None

    def _read_failed(self, exc: Exception) -> None:
        now = time.monotonic()
        self._failed_at = now
        if self._down_since is not None:
            log.debug("the store is still unreachable: %s: %s", type(exc).__name__, exc)
            return
        self._down_since = now
        snap = self._snapshot
        if snap is None:
            held = "nothing (no snapshot yet)"
        elif self._snapshot_gen != self._gen:
            held = "nothing (its last snapshot predates a change made in this process)"
        else:
            held = f"its last snapshot ({now - snap.taken_at:.1f} s old)"
        # The driver's text is for the operator's log only; clients get StoreUnavailable.
        # Anything but a database or OS error is likely a bug: keep its traceback.
        log.warning(
            "the store is unreachable (%s: %s); the gateway serves known keys and deployments "
            "from %s, answers 503 store_unavailable where that does not settle a request, "
            "and retries every %.2g s", type(exc).__name__, exc, held, self.ttl_s,
            exc_info=not isinstance(exc, SQLAlchemyError | OSError),
        )
