"""The store: every read and write the control plane makes, one short transaction each."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from a3s_core import keys
from a3s_core.errors import Conflict, NotFound
from a3s_core.store.db import make_engine, upgrade
from a3s_core.store.event_listener import EventListener
from a3s_core.store.event_writer import SqliteEventWriter
from a3s_core.store.tables import (
    ApiKeyRow,
    DeploymentRow,
    EventRow,
    GpuAllocationRow,
    ReplicaRow,
    utcnow,
)
from a3s_core.types import Event


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        self._event_lock = threading.Lock()
        # SQLite: appends through the driver (event_writer.py says why); PostgreSQL: Core.
        self._event_writer = (
            None if self.is_postgres or engine.dialect.name != "sqlite"
            else SqliteEventWriter(engine, _EVENTS)
        )

    @classmethod
    def open(cls, url: str) -> Store:
        engine = make_engine(url)
        upgrade(engine)
        return cls(engine)

    def close(self) -> None:
        if self._event_writer is not None:
            # Under the append lock: closing the SQLite connection while another thread
            # is inside an append on it crashes the interpreter, not just that append.
            with self._event_lock:
                self._event_writer.close()
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as s:
            yield s

    # ------------------------------------------------------------------ deployments

    def create_deployments(self, rows: list[DeploymentRow]) -> dict[str, str]:
        """Insert deployments and one API key each, all or nothing. Returns id → key."""
        issued: dict[str, str] = {}
        with self.session() as s:
            for row in rows:
                live = s.exec(
                    select(DeploymentRow).where(
                        DeploymentRow.namespace == row.namespace,
                        DeploymentRow.name == row.name,
                        DeploymentRow.status != "deleted",
                    )
                ).first()
                if live is not None:
                    raise Conflict(
                        f"deployment {row.name!r} already exists in namespace {row.namespace!r} "
                        f"(id {live.id}, status {live.status}); delete it first or choose "
                        "another name",
                        id=live.id,
                    )
                s.add(row)
                key = keys.generate_key()
                s.add(self._key_row(row.id, key))
                issued[row.id] = key
            try:
                s.commit()
            except IntegrityError as exc:  # a concurrent request won the race for the name
                raise Conflict(
                    "a deployment with one of these names was created at the same moment; "
                    "retry to see it"
                ) from exc
        return issued

    @staticmethod
    def _key_row(deployment_id: str, key: str) -> ApiKeyRow:
        return ApiKeyRow(
            id=new_id("key"),
            deployment_id=deployment_id,
            key_hash=keys.hash_key(key),
            prefix=keys.display_prefix(key),
        )

    def get_deployment(self, deployment_id: str) -> DeploymentRow:
        with self.session() as s:
            row = s.get(DeploymentRow, deployment_id)
            if row is None:  # a name where an id belongs? say whose name it is
                named = s.exec(select(DeploymentRow).where(
                    DeploymentRow.name == deployment_id, DeploymentRow.status != "deleted",
                ).limit(3)).all()
        if row is None:
            hint = "; ".join(f"{deployment_id!r} in namespace {d.namespace!r} is {d.id}"
                             for d in named)
            raise NotFound(f"deployment {deployment_id!r} does not exist"
                           + (f" (deployments are addressed by id: {hint})" if hint else ""))
        return row

    def find_deployment(self, namespace: str, name: str) -> DeploymentRow | None:
        with self.session() as s:
            return s.exec(
                select(DeploymentRow).where(
                    DeploymentRow.namespace == namespace,
                    DeploymentRow.name == name,
                    DeploymentRow.status != "deleted",
                )
            ).first()

    def list_deployments(
        self, namespace: str | None = None, include_deleted: bool = False
    ) -> list[DeploymentRow]:
        with self.session() as s:
            q = select(DeploymentRow).order_by(col(DeploymentRow.created_at), col(DeploymentRow.id))
            if namespace:
                q = q.where(DeploymentRow.namespace == namespace)
            if not include_deleted:
                q = q.where(DeploymentRow.status != "deleted")
            return list(s.exec(q))

    def update_deployment(self, deployment_id: str, **fields: Any) -> DeploymentRow:
        with self.session() as s:
            row = s.get(DeploymentRow, deployment_id)
            if row is None:
                raise NotFound(f"deployment {deployment_id!r} does not exist")
            for k, v in fields.items():
                setattr(row, k, v)
            row.updated_at = utcnow()
            s.add(row)
            s.commit()
            return row

    def transition(self, deployment_id: str, **fields: Any) -> DeploymentRow | None:
        """Update a deployment the controller is working on, unless the API has meanwhile
        asked for its deletion (a conditional UPDATE, so a stale read cannot undo it).
        Returns None when the row is being deleted."""
        terminal = ("deleting", "deleted")
        if fields.get("status") in terminal:
            return self.update_deployment(deployment_id, **fields)
        fields["updated_at"] = utcnow()
        with self.session() as s:
            result = s.exec(  # type: ignore[call-overload]
                update(DeploymentRow)
                .where(col(DeploymentRow.id) == deployment_id)
                .where(col(DeploymentRow.status).notin_(terminal))
                .values(**fields)
            )
            s.commit()
            if result.rowcount == 0:
                return None
            return s.get(DeploymentRow, deployment_id)

    def merge_autoscaling_state(self, deployment_id: str, **keys: Any) -> None:
        """Set (or, with None, drop) keys of `autoscaling_state` in one transaction, so
        the controller and the autoscaler never overwrite each other's keys."""
        with self.session() as s:
            q = select(DeploymentRow).where(DeploymentRow.id == deployment_id)
            if self.is_postgres:
                q = q.with_for_update()
            row = s.exec(q).first()
            if row is None:
                return
            state = dict(row.autoscaling_state or {})
            for k, v in keys.items():
                if v is None:
                    state.pop(k, None)
                else:
                    state[k] = v
            row.autoscaling_state = state
            s.add(row)
            s.commit()

    def count(self, table: type[Any]) -> int:
        with self.session() as s:
            return len(list(s.exec(select(table))))

    # ------------------------------------------------------------------ replicas

    def add_replica(self, row: ReplicaRow) -> ReplicaRow:
        with self.session() as s:
            s.add(row)
            s.commit()
            return row

    def replicas(self, deployment_id: str | None = None) -> list[ReplicaRow]:
        with self.session() as s:
            q = select(ReplicaRow).order_by(col(ReplicaRow.created_at), col(ReplicaRow.id))
            if deployment_id:
                q = q.where(ReplicaRow.deployment_id == deployment_id)
            return list(s.exec(q))

    def replicas_of(self, deployment_ids: Sequence[str]) -> dict[str, list[ReplicaRow]]:
        """`replicas` for several deployments in one query, by deployment id."""
        out: dict[str, list[ReplicaRow]] = {d: [] for d in deployment_ids}
        if not out:
            return out
        with self.session() as s:
            q = (select(ReplicaRow).where(col(ReplicaRow.deployment_id).in_(list(out)))
                 .order_by(col(ReplicaRow.created_at), col(ReplicaRow.id)))
            for row in s.exec(q):
                out[row.deployment_id].append(row)
        return out

    def update_replica(self, replica_id: str, **fields: Any) -> ReplicaRow | None:
        with self.session() as s:
            row = s.get(ReplicaRow, replica_id)
            if row is None:
                return None
            for k, v in fields.items():
                setattr(row, k, v)
            row.updated_at = utcnow()
            s.add(row)
            s.commit()
            return row

    def remove_replica(self, replica_id: str) -> None:
        """Delete the replica row and free its GPUs in one transaction."""
        with self.session() as s:
            s.exec(delete(GpuAllocationRow).where(col(GpuAllocationRow.replica_id) == replica_id))  # type: ignore[call-overload]
            s.exec(delete(ReplicaRow).where(col(ReplicaRow.id) == replica_id))  # type: ignore[call-overload]
            s.commit()

    # ------------------------------------------------------------------ GPU booking

    def book(self, row: ReplicaRow, deployment_id: str) -> bool:
        """Insert the replica and book its GPUs atomically. False when another replica got
        one of the GPUs first (the primary key on (node, gpu_index) decides)."""
        with self.session() as s:
            s.add(row)
            for idx in row.gpu_indices:
                s.add(
                    GpuAllocationRow(
                        node=row.node or "",
                        gpu_index=idx,
                        replica_id=row.id,
                        deployment_id=deployment_id,
                    )
                )
            try:
                s.commit()
            except IntegrityError:
                s.rollback()
                return False
        return True

    def allocations(self) -> dict[str, dict[int, str]]:
        """node → {gpu index → replica id}."""
        out: dict[str, dict[int, str]] = {}
        with self.session() as s:
            for a in s.exec(select(GpuAllocationRow)):
                out.setdefault(a.node, {})[a.gpu_index] = a.replica_id
        return out

    # ------------------------------------------------------------------ API keys

    def verify_key(self, key: str) -> str | None:
        """The deployment a live key opens, or None."""
        with self.session() as s:
            row = s.exec(select(ApiKeyRow).where(ApiKeyRow.key_hash == keys.hash_key(key))).first()
        if row is None or row.revoked_at is not None:
            return None
        return row.deployment_id

    def revoke_keys(self, deployment_id: str) -> int:
        with self.session() as s:
            rows = list(
                s.exec(
                    select(ApiKeyRow).where(
                        ApiKeyRow.deployment_id == deployment_id,
                        col(ApiKeyRow.revoked_at).is_(None),
                    )
                )
            )
            for r in rows:
                r.revoked_at = utcnow()
                s.add(r)
            s.commit()
        return len(rows)

    def rotate_key(self, deployment_id: str) -> str:
        """Revoke every key of the deployment and issue a new one, in one transaction."""
        key = keys.generate_key()
        with self.session() as s:
            for r in s.exec(
                select(ApiKeyRow).where(
                    ApiKeyRow.deployment_id == deployment_id, col(ApiKeyRow.revoked_at).is_(None)
                )
            ):
                r.revoked_at = utcnow()
                s.add(r)
            s.add(self._key_row(deployment_id, key))
            s.commit()
        return key

    def keys_of(self, deployment_id: str) -> list[ApiKeyRow]:
        with self.session() as s:
            return list(s.exec(select(ApiKeyRow).where(ApiKeyRow.deployment_id == deployment_id)))

    # ------------------------------------------------------------------ events

    def append_event(self, event: Event) -> Event:
        """Persist one event with the next global seq (see `append_events`)."""
        return self.append_events([event])[0]

    def append_events(self, events: list[Event]) -> list[Event]:
        """Persist events in one transaction, with consecutive global seqs in list order;
        returns them with their seqs. Commits are serialised (a lock here, an advisory
        lock on PostgreSQL for other processes) so seq order is commit order: a reader
        that saw seq N never later finds a new event below N. One pre-built Core
        `INSERT … RETURNING` (executemany for a batch), because every event pays for it."""
        if not events:
            return []
        rows = [_event_values(e) for e in events]
        if self._event_writer is not None:
            with self._event_lock:
                seqs = self._event_writer.append(rows)
            return [e.model_copy(update={"seq": s}) for e, s in zip(events, seqs, strict=True)]
        with self._event_lock, self.engine.begin() as conn:
            if self.is_postgres:  # serialise across platform processes too
                conn.execute(_PG_EVENT_LOCK)
            if len(rows) == 1:
                seqs = [conn.execute(_INSERT_EVENT, rows[0]).scalar_one()]
            else:  # sort_by_parameter_order: seqs come back in the order of `rows`
                seqs = list(conn.execute(_INSERT_EVENTS, rows).scalars())
        if len(seqs) != len(events):  # pragma: no cover - a driver that lost rows
            raise RuntimeError(f"stored {len(seqs)} events of {len(events)}")
        return [e.model_copy(update={"seq": seq}) for e, seq in zip(events, seqs, strict=True)]

    def events_since(
        self,
        since: int = 0,
        *,
        namespace: str | None = None,
        deployment_id: str | None = None,
        limit: int = 1000,
    ) -> list[Event]:
        with self.session() as s:
            q = select(EventRow).where(col(EventRow.seq) > since)
            if namespace:
                q = q.where(EventRow.namespace == namespace)
            if deployment_id:
                q = q.where(EventRow.deployment_id == deployment_id)
            rows = s.exec(q.order_by(col(EventRow.seq)).limit(limit))
            return [row_to_event(r) for r in rows]

    def event_listener(self) -> EventListener | None:
        """Something to block on until another connection commits events (PostgreSQL
        LISTEN/NOTIFY), or None where the store has no such thing (SQLite)."""
        return EventListener(self.engine) if self.is_postgres else None

    def last_seq(self) -> int:
        with self.session() as s:
            row = s.exec(select(EventRow).order_by(col(EventRow.seq).desc()).limit(1)).first()
        return row.seq or 0 if row else 0


_EVENTS = EventRow.__table__  # type: ignore[attr-defined]
_INSERT_EVENT = insert(_EVENTS).returning(_EVENTS.c.seq)
_INSERT_EVENTS = insert(_EVENTS).returning(_EVENTS.c.seq, sort_by_parameter_order=True)
_PG_EVENT_LOCK = text("SELECT pg_advisory_xact_lock(4242)")


def _event_values(e: Event) -> dict[str, Any]:
    return {
        "ts": e.ts,
        "type": e.type,
        "deployment_id": e.deployment_id,
        "name": e.name,
        "namespace": e.namespace,
        "level": e.level,
        "message": e.message,
        "trace_id": e.trace_id,
        "span_id": e.span_id,
        "data": e.data,
    }


def row_to_event(r: EventRow) -> Event:
    ts = r.ts if r.ts.tzinfo else r.ts.replace(tzinfo=UTC)
    return Event(
        seq=r.seq or 0,
        ts=ts,
        type=r.type,
        deployment_id=r.deployment_id,
        name=r.name,
        namespace=r.namespace,
        level=r.level,  # type: ignore[arg-type]
        message=r.message,
        trace_id=r.trace_id,
        span_id=r.span_id,
        data=r.data or {},
    )


def now() -> datetime:
    return datetime.now(UTC)


__all__ = ["Store", "new_id", "now", "row_to_event"]
