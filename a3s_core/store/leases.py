"""Leases: who leads the controllers. One row per lease name, taken by a conditional UPDATE.

A lease is held by `holder` until `expires_at`. Taking it succeeds only when it is free
(no holder), already ours, or expired, and the check and the write are one statement, so
two processes racing for it cannot both win: PostgreSQL re-checks the WHERE clause on the
row a concurrent winner just wrote, SQLite runs one writer at a time.

Times are the database's clock on PostgreSQL (`clock_timestamp()`), so API hosts whose
clocks disagree still agree on when a lease expires; on SQLite every process shares one
machine and so one clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from a3s_core.store.repo import Store
from a3s_core.store.tables import utcnow


class LeaseRow(SQLModel, table=True):
    __tablename__ = "leases"

    name: str = Field(primary_key=True)
    holder: str | None = Field(default=None, description="None once released")
    acquired_at: datetime = Field(default_factory=utcnow)
    renewed_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(default_factory=utcnow)
    transitions: int = Field(default=0, description="times the lease changed hands; a term")


@dataclass(frozen=True)
class Lease:
    """A lease as read at `now` (the database's time)."""

    name: str
    holder: str | None
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime
    transitions: int
    now: datetime

    @property
    def live_holder(self) -> str | None:
        """The holder, unless the lease was released or has expired."""
        return self.holder if self.holder and self.expires_at > self.now else None


_T = LeaseRow.__table__  # type: ignore[attr-defined]


class Leases:
    def __init__(self, store: Store) -> None:
        self.engine = store.engine
        self.is_postgres = store.is_postgres

    def _now(self, conn: Connection) -> datetime:
        if self.is_postgres:
            value: datetime = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
            return value.astimezone(UTC)
        return datetime.now(UTC)

    def _read(self, conn: Connection, name: str, now: datetime) -> Lease | None:
        row = conn.execute(select(_T).where(_T.c.name == name)).mappings().first()
        if row is None:
            return None
        return Lease(
            name=row["name"],
            holder=row["holder"],
            acquired_at=row["acquired_at"],
            renewed_at=row["renewed_at"],
            expires_at=row["expires_at"],
            transitions=row["transitions"],
            now=now,
        )

    def acquire(self, name: str, holder: str, duration_s: float) -> Lease:
        """Take or renew the lease for `duration_s` if it is free, ours or expired.
        Returns the lease as it stands afterwards: `lease.holder == holder` means we hold
        it until `lease.expires_at`."""
        try:
            with self.engine.begin() as conn:
                now = self._now(conn)
                expires = now + timedelta(seconds=duration_s)
                ours = _T.c.holder == holder
                taken = conn.execute(
                    update(_T)
                    .where(_T.c.name == name)
                    .where(ours | _T.c.holder.is_(None) | (_T.c.expires_at <= now))
                    .values(
                        holder=holder,
                        renewed_at=now,
                        expires_at=expires,
                        acquired_at=case((ours, _T.c.acquired_at), else_=now),
                        transitions=case((ours, _T.c.transitions), else_=_T.c.transitions + 1),
                    )
                ).rowcount
                if not taken and self._read(conn, name, now) is None:  # the first one ever
                    conn.execute(
                        insert(_T).values(
                            name=name,
                            holder=holder,
                            acquired_at=now,
                            renewed_at=now,
                            expires_at=expires,
                            transitions=1,
                        )
                    )
                lease = self._read(conn, name, now)
        except IntegrityError:  # two first holders inserted at once and the other won
            lease = self.get(name)
        assert lease is not None
        return lease

    def release(self, name: str, holder: str) -> bool:
        """Give the lease up at once, if we hold it, so another process need not wait for
        it to expire. Returns whether we held it."""
        with self.engine.begin() as conn:
            now = self._now(conn)
            return bool(
                conn.execute(
                    update(_T)
                    .where(_T.c.name == name, _T.c.holder == holder)
                    .values(holder=None, expires_at=now)
                ).rowcount
            )

    def get(self, name: str) -> Lease | None:
        with self.engine.connect() as conn:
            return self._read(conn, name, self._now(conn))

    def expire(self, name: str) -> None:
        """Make the lease expire now, keeping its holder (tests: a holder that vanished)."""
        with self.engine.begin() as conn:
            conn.execute(update(_T).where(_T.c.name == name).values(expires_at=self._now(conn)))


__all__ = ["Lease", "LeaseRow", "Leases"]
