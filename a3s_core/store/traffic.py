"""Gateway traffic: what every data-plane process answered, per deployment and time slot.

Each gateway process (`--role gateway`, every worker of `--role all`) writes one row per
(deployment, slot of `SLOT_S` seconds) it answered requests in, in one transaction per
publish interval (a3s_core/gateway/publish.py). The control plane adds up the fresh rows
(a3s_core/scaling/fleet.py): requests and failures, a latency histogram whose P99 is taken
after merging, and each replica's in-flight count as of the gateway's last publish.

A row with `deployment_id == HEARTBEAT` is written every publish whatever the traffic, so
the control plane knows which gateways are alive (drain waits for each of them to have
published once after it began; see a3s_core/scaling/fleet.py).

Times are the database's clock on PostgreSQL (`clock_timestamp()`), as for leases, so
gateways on machines whose clocks disagree still agree on slots and staleness; on SQLite
every process shares one machine. The publisher places each request in a slot by how long
ago it was answered, measured on its own monotonic clock, so only the age crosses hosts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Column, Index, delete, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Field, SQLModel

from a3s_core.store.tables import utcnow

SLOT_S = 5  # seconds per slot; slots start at multiples of it (epoch seconds)
HEARTBEAT = ""  # the deployment id of a gateway's liveness row


class GatewayTrafficRow(SQLModel, table=True):
    __tablename__ = "gateway_traffic"
    __table_args__ = (Index("ix_gateway_traffic_slot_start", "slot_start"),)

    deployment_id: str = Field(primary_key=True)
    slot_start: datetime = Field(primary_key=True)
    gateway: str = Field(primary_key=True, description="the process: host:pid:token")
    gateway_group: str = Field(description="workers of one supervisor share a group")
    requests: int = 0
    failures: int = 0
    latency: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False),
        description="first-byte latency histogram (a3s_core/gateway/histogram.py)",
    )
    in_flight: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False),
        description="replica id → this gateway's requests in flight at updated_at",
    )
    publish_interval_s: float = Field(
        default=0.0,
        description="the publisher's interval: the row is stale after 3 of them (fleet.py)",
    )
    updated_at: datetime = Field(default_factory=utcnow)


_T = GatewayTrafficRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class SlotFigures:
    """One row to write: the slot's running totals (a publish replaces the row)."""

    deployment_id: str
    slot_start: datetime
    requests: int
    failures: int
    latency: dict[str, int]
    in_flight: dict[str, int]


@dataclass(frozen=True)
class TrafficRow:
    """A row as read, with ages in seconds on the database's clock."""

    deployment_id: str
    gateway: str
    gateway_group: str
    slot_age_s: float  # seconds since the slot started
    updated_age_s: float  # seconds since the gateway last wrote this row
    publish_interval_s: float  # how often that gateway writes (0: not known)
    requests: int
    failures: int
    latency: dict[str, Any]
    in_flight: dict[str, Any]


def db_now(conn: Connection) -> datetime:
    if conn.dialect.name == "postgresql":
        value: datetime = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
        return value.astimezone(UTC)
    return datetime.now(UTC)


def slot_of(at: datetime) -> datetime:
    epoch = at.timestamp()
    return datetime.fromtimestamp(epoch - epoch % SLOT_S, UTC)


def write(
    conn: Connection,
    gateway: str,
    group: str,
    now: datetime,
    slots: Sequence[SlotFigures],
    keep_s: float,
    interval_s: float,
) -> None:
    """Upsert this gateway's slot rows (and its heartbeat) at `now`, and delete its own
    rows older than `keep_s`. `interval_s`: how often this gateway publishes, stored on
    each row so a reader judges staleness by the writer's interval, not its own. One
    statement each; the caller owns the transaction."""
    rows = [
        {"deployment_id": s.deployment_id, "slot_start": s.slot_start, "gateway": gateway,
         "gateway_group": group, "requests": s.requests, "failures": s.failures,
         "latency": s.latency, "in_flight": s.in_flight, "publish_interval_s": interval_s,
         "updated_at": now}
        for s in slots
    ]
    rows.append({"deployment_id": HEARTBEAT, "slot_start": slot_of(now), "gateway": gateway,
                 "gateway_group": group, "requests": 0, "failures": 0, "latency": {},
                 "in_flight": {}, "publish_interval_s": interval_s, "updated_at": now})
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(_T)
    keys = ("deployment_id", "slot_start", "gateway")
    changing = ("gateway_group", "requests", "failures", "latency", "in_flight",
                "publish_interval_s", "updated_at")
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=list(keys),
            set_={c: insert.excluded[c] for c in changing},
        ),
        rows,
    )
    conn.execute(
        delete(_T).where(_T.c.gateway == gateway,
                         _T.c.slot_start < now - timedelta(seconds=keep_s))
    )


def read(
    engine: Engine, deployment_ids: Iterable[str], within_s: float
) -> tuple[list[TrafficRow], datetime]:
    """Every gateway's rows for these deployments (and the heartbeats) whose slot started
    less than `within_s` ago, and the database's time of reading."""
    wanted = sorted({*deployment_ids, HEARTBEAT})
    with engine.connect() as conn:
        now = db_now(conn)
        found = conn.execute(
            select(_T).where(_T.c.deployment_id.in_(wanted),
                             _T.c.slot_start >= now - timedelta(seconds=within_s))
        ).mappings().all()
    out = []
    for r in found:
        slot_start, updated = _aware(r["slot_start"]), _aware(r["updated_at"])
        out.append(TrafficRow(
            deployment_id=r["deployment_id"], gateway=r["gateway"],
            gateway_group=r["gateway_group"],
            slot_age_s=(now - slot_start).total_seconds(),
            updated_age_s=(now - updated).total_seconds(),
            requests=r["requests"], failures=r["failures"],
            latency=r["latency"] or {}, in_flight=r["in_flight"] or {},
            publish_interval_s=float(r["publish_interval_s"] or 0.0),
        ))
    return out, now


def prune(engine: Engine, older_than_s: float) -> int:
    """Delete every gateway's rows whose slot started more than `older_than_s` ago (those
    of gateways that died: live ones delete their own). Returns how many went."""
    with engine.begin() as conn:
        cutoff = db_now(conn) - timedelta(seconds=older_than_s)
        return int(conn.execute(delete(_T).where(_T.c.slot_start < cutoff)).rowcount or 0)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


__all__ = [
    "HEARTBEAT",
    "SLOT_S",
    "GatewayTrafficRow",
    "SlotFigures",
    "TrafficRow",
    "db_now",
    "prune",
    "read",
    "slot_of",
    "write",
]
