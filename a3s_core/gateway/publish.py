"""Publishing this gateway process's traffic to the store, for the control plane.

Every `traffic_publish_interval_s` (2 s by default) a background task notes, on the event
loop, each replica's in-flight count now (a step per replica), then in a worker thread
(`asyncio.to_thread`) reads what the load book's windows recorded since the last round
(first-byte latencies, requests routed, requests no replica answered: the windows
`Gateway.stats` reads; a copy of a window is one C call, safe beside the loop's appends)
and writes it in one transaction: one upsert per (deployment, 5 s slot) touched, plus a
heartbeat row, and the deletion of this process's rows past the retention. The request
path is not touched: it records into the windows as before.

Each process publishes its own figures, not the workers' shared sums (share.py), so rows
add up; in-flight counts are this process's own (`ReplicaStats.in_flight`).

While the store is unreachable (or not migrated yet, for a `--role gateway` started
before the control plane) rounds fail with one warning; the totals of the slots still
open are kept and written by the first round that succeeds.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import secrets
import socket
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine as DbEngine

from a3s_core.gateway.histogram import Histogram
from a3s_core.settings import Settings
from a3s_core.store import traffic
from a3s_core.store.traffic import SLOT_S, SlotFigures

if TYPE_CHECKING:
    from a3s_core.gateway.load import DeploymentStats, LoadBook

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
    """What one round takes on the event loop: references, and counts (cheap)."""

    upto: float  # monotonic: samples up to here belong to this round
    deployments: list[tuple[str, DeploymentStats]]
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
        writing = asyncio.ensure_future(asyncio.to_thread(self._write, batch))
        try:
            await asyncio.shield(writing)
        except asyncio.CancelledError:
            # The thread runs on regardless: let it finish before anyone (stop()'s last
            # round) touches the open slots again.
            with contextlib.suppress(Exception):
                await writing
            raise
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
        """On the event loop: which deployments, and the in-flight counts now. Costs a
        step per deployment and replica; the samples are read in the thread."""
        flights: dict[str, dict[str, int]] = defaultdict(dict)
        for st in self.book.replicas.values():
            if st.in_flight > 0:
                flights[st.info.deployment_id][st.info.id] = st.in_flight
        return _Round(time.monotonic(), list(self.book.deployments.items()), dict(flights))

    def _write(self, batch: _Round) -> None:
        """In a worker thread: the samples since the last round, placed in slots by the
        database's clock, written."""
        mark = self._mark
        with self.db.begin() as conn:
            now = traffic.db_now(conn)
            upto = batch.upto

            def slot_at(t: float) -> datetime:
                """The slot of a sample taken at monotonic `t`: by its age, on the db clock."""
                return traffic.slot_of(now - timedelta(seconds=upto - t))

            def slot(dep_id: str, start: datetime) -> _Slot:
                key = (dep_id, start)
                self._dirty.add(key)
                found = self._open.get(key)
                if found is None:
                    found = self._open[key] = _Slot()
                return found

            # Per run of samples in one slot, not per sample: a round holds thousands.
            for dep_id, dst in batch.deployments:
                samples = dst.first_byte.between(mark, upto)
                for start, lo, hi in slot_runs(samples, slot_at):
                    slot(dep_id, start).latency.add_all([v for _, v in samples[lo:hi]])
                for start, lo, hi in slot_runs(dst.arrivals.between(mark, upto), slot_at):
                    slot(dep_id, start).requests += hi - lo
                for start, lo, hi in slot_runs(dst.errors.between(mark, upto), slot_at):
                    slot(dep_id, start).failures += hi - lo
            self._mark = upto  # in the open slots now: a failed write below keeps them
            # In-flight counts ride on the current slot's row; a deployment whose last
            # published count was not 0 gets its 0 written, so nobody waits on it.
            for dep_id in set(batch.in_flight) | self._reported:
                slot(dep_id, traffic.slot_of(now))
            rows = [
                SlotFigures(
                    deployment_id=dep_id, slot_start=start, requests=s.requests,
                    failures=s.failures, latency=s.latency.to_json(),
                    in_flight=batch.in_flight.get(dep_id, {}),
                )
                for (dep_id, start) in sorted(self._dirty)
                if (s := self._open[(dep_id, start)]) is not None
            ]
            traffic.write(conn, self.gateway, self.group, now, rows, KEEP_S, self.interval_s)
        self._dirty.clear()
        self._reported = set(batch.in_flight)
        # A slot that ended before the previous one started takes no more samples.
        done = traffic.slot_of(now) - timedelta(seconds=2 * SLOT_S)
        for key in [k for k in self._open if k[1] < done]:
            del self._open[key]


def slot_runs(
    samples: list[tuple[float, float]], slot_at: Callable[[float], datetime],
) -> Iterator[tuple[datetime, int, int]]:
    """(slot start, lo, hi) for each run `samples[lo:hi]` that `slot_at` places in one
    slot. Samples come oldest first and `slot_at` never goes back in time, so each run
    ends where a bisection finds the next slot: `slot_at` is called a few dozen times a
    round, not once a sample, and answers as it would for every sample."""
    lo, n = 0, len(samples)
    while lo < n:
        start = slot_at(samples[lo][0])
        hi = bisect.bisect_right(samples, start, lo + 1, n, key=lambda s: slot_at(s[0]))
        yield start, lo, hi
        lo = hi


def publish_group(settings: Settings) -> str | None:
    """The workers of one supervisor (`a3s serve --workers N`) share in-flight counts live
    through their load file: they form a group, whose rows the others leave out of in-flight
    sums (share.py already has them). None: this process is a group of its own."""
    if not settings.load_share:
        return None
    return f"{socket.gethostname()}:{settings.load_share}"
