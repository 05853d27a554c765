"""Publishing this gateway process's traffic to the store, for the control plane.

Every `traffic_publish_interval_s` (2 s by default) a background task takes, on the event
loop, what the load book recorded since the last round (first-byte latencies, requests
routed, requests no replica answered: the same windows `Gateway.stats` reads) and each
replica's in-flight count now, then writes them in one transaction from a worker thread
(`asyncio.to_thread`): one upsert per (deployment, 5 s slot) touched, plus a heartbeat
row, and the deletion of this process's rows past the retention. The request path is not
touched: it records into the windows as before, and reading them back costs what was
added since the last round.

Each process publishes its own figures, not the workers' shared sums (share.py), so rows
add up; in-flight counts are this process's own (`ReplicaStats.in_flight`).

While the store is unreachable (or not migrated yet, for a `--role gateway` started
before the control plane) rounds fail with one warning; the totals of the slots still
open are kept and written by the first round that succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine as DbEngine

from a3s_core.gateway.histogram import Histogram
from a3s_core.settings import Settings
from a3s_core.store import traffic
from a3s_core.store.traffic import SLOT_S, SlotFigures

if TYPE_CHECKING:
    from a3s_core.gateway.load import LoadBook

log = logging.getLogger(__name__)

WINDOW_S = 60.0  # the latency window's length (latency.py): what the control plane reads
KEEP_S = WINDOW_S + 3 * SLOT_S  # rows live a little longer than the window they serve


def instance_id() -> str:
    """This gateway: host and pid, and a token for several gateways in one process (tests)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class _Slot:
    requests: int = 0
    failures: int = 0
    latency: Histogram = field(default_factory=Histogram)


@dataclass
class _Round:
    """What one round took from the book: ages (seconds before `taken`) of each sample."""

    latency: dict[str, list[tuple[float, float]]]  # deployment → [(age, seconds)]
    requests: dict[str, list[float]]
    failures: dict[str, list[float]]
    in_flight: dict[str, dict[str, int]]  # deployment → replica → count


class TrafficPublisher:
    def __init__(
        self,
        book: LoadBook,
        db: DbEngine,
        interval_s: float,
        gateway: str | None = None,
        group: str | None = None,
    ) -> None:
        self.book = book
        self.db = db
        self.interval_s = interval_s
        self.gateway = gateway or instance_id()
        self.group = group or self.gateway
        self._mark = float("-inf")  # samples after this are not published yet
        self._open: dict[tuple[str, datetime], _Slot] = {}
        self._dirty: set[tuple[str, datetime]] = set()  # written by no round yet
        self._reported: set[str] = set()  # deployments last published with requests in flight
        self._failing = False

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.publish_once()

    async def publish_once(self) -> bool:
        """One round now; False when the store refused it (logged once per outage)."""
        batch = self._take()
        try:
            await asyncio.to_thread(self._write, batch)
        except Exception as exc:
            if not self._failing:
                log.warning("publishing gateway traffic to the store failed (retrying every "
                            "%.1fs): %s", self.interval_s, exc)
            self._failing = True
            return False
        if self._failing:
            log.warning("publishing gateway traffic to the store works again")
        self._failing = False
        return True

    def _take(self) -> _Round:
        """On the event loop: the samples since the last round, and in-flight counts now."""
        now = time.monotonic()
        mark, self._mark = self._mark, now
        out = _Round({}, {}, {}, {})
        for dep_id, dst in self.book.deployments.items():
            if lat := dst.first_byte.after(mark):
                out.latency[dep_id] = [(now - t, v) for t, v in lat]
            if req := dst.arrivals.after(mark):
                out.requests[dep_id] = [now - t for t, _ in req]
            if err := dst.errors.after(mark):
                out.failures[dep_id] = [now - t for t, _ in err]
        flights: dict[str, dict[str, int]] = defaultdict(dict)
        for st in self.book.replicas.values():
            if st.in_flight > 0:
                flights[st.info.deployment_id][st.info.id] = st.in_flight
        out.in_flight = dict(flights)
        return out

    def _write(self, batch: _Round) -> None:
        """In a worker thread: place the samples in slots by the database's clock, write."""
        with self.db.begin() as conn:
            now = traffic.db_now(conn)

            def slot(dep_id: str, age: float) -> _Slot:
                key = (dep_id, traffic.slot_of(now - timedelta(seconds=age)))
                self._dirty.add(key)
                found = self._open.get(key)
                if found is None:
                    found = self._open[key] = _Slot()
                return found

            for dep_id, samples in batch.latency.items():
                for age, seconds in samples:
                    slot(dep_id, age).latency.add(seconds)
            for dep_id, ages in batch.requests.items():
                for age in ages:
                    slot(dep_id, age).requests += 1
            for dep_id, ages in batch.failures.items():
                for age in ages:
                    slot(dep_id, age).failures += 1
            # In-flight counts ride on the current slot's row; a deployment whose last
            # published count was not 0 gets its 0 written, so nobody waits on it.
            for dep_id in set(batch.in_flight) | self._reported:
                slot(dep_id, 0.0)
            rows = [
                SlotFigures(
                    deployment_id=dep_id, slot_start=start, requests=s.requests,
                    failures=s.failures, latency=s.latency.to_json(),
                    in_flight=batch.in_flight.get(dep_id, {}),
                )
                for (dep_id, start) in sorted(self._dirty)
                if (s := self._open[(dep_id, start)]) is not None
            ]
            traffic.write(conn, self.gateway, self.group, now, rows, KEEP_S)
        self._dirty.clear()
        self._reported = set(batch.in_flight)
        # A slot that ended before the previous one started takes no more samples.
        done = traffic.slot_of(now) - timedelta(seconds=2 * SLOT_S)
        for key in [k for k in self._open if k[1] < done]:
            del self._open[key]


def publish_group(settings: Settings) -> str | None:
    """The workers of one supervisor (`a3s serve --workers N`) share in-flight counts live
    through their load file: they form a group, whose rows the others leave out of in-flight
    sums (share.py already has them). None: this process is a group of its own."""
    if not settings.load_share:
        return None
    return f"{socket.gethostname()}:{settings.load_share}"
