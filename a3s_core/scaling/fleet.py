"""Every gateway's traffic, for the control plane: the rows gateways publish (publish.py,
a3s_core/store/traffic.py) added to this process's own live figures.

A control process (`--role control`) serves no traffic, so without this its autoscaler
would see no requests and no latency, and a drain could not wait for requests the
gateways are still answering. A process with a gateway of its own (`--role all`) adds the
others' rows to its own figures: with `--workers N` that is every worker's latency, not
only the leading worker's sample.

- Requests, failures and latency: this process's own (exact samples) plus every other
  gateway's rows whose slot started within the window; the P99 over more than one process
  is taken from the merged histogram (within ±2.2 %, histogram.py). The recent figures
  use only the slots that started after the last scaling change.
- In flight: this process's own (with its workers' shared cells: live), plus each other
  gateway's count as of its last publish, if that is fresher than `STALE_INTERVALS` of
  that gateway's publish intervals (each row says its writer's: a gateway set to publish
  every 10 s is not dead at 8 s for a control plane set to 2 s), so a dead gateway does
  not hold a drain for ever. Rows of this supervisor's other workers are left out here:
  the shared cells already count them.
- Queue depth and GPU use come from the replicas' own metrics, scraped by this process
  (a control process scrapes without serving: `Platform.observer`), not from the rows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from a3s_core.gateway.histogram import Histogram
from a3s_core.gateway.latency import percentile
from a3s_core.gateway.publish import KEEP_S, WINDOW_S
from a3s_core.store import traffic
from a3s_core.types import ScalingSignals

if TYPE_CHECKING:
    from a3s_core.gateway.app import Gateway
    from a3s_core.platform import Platform

STALE_INTERVALS = 3  # a gateway silent for this many publish intervals is taken for dead
SETTLE_S = 1.0  # a gateway's directory snapshot lives 0.5 s; and a margin
PRUNE_EVERY_S = 30.0


@dataclass
class FleetTraffic:
    """The other gateways' figures for one deployment (this process's own left out)."""

    requests: int = 0
    failures: int = 0
    latency: Histogram = field(default_factory=Histogram)
    recent: Histogram = field(default_factory=Histogram)
    in_flight: dict[str, int] = field(default_factory=dict)  # replica → requests
    gateways: dict[str, float] = field(default_factory=dict)  # live one → s since it wrote
    peers: dict[str, float] = field(default_factory=dict)  # those outside this group

    @property
    def empty(self) -> bool:
        return not (self.requests or self.failures or self.latency.counts or self.in_flight)

    def settling(self, draining_for_s: float) -> bool:
        """Whether a live gateway (outside this process's workers) has not published since
        a drain that began `draining_for_s` ago reached its directory: its in-flight
        count for the replica is not known yet."""
        return any(age > draining_for_s - SETTLE_S for age in self.peers.values())


class Fleet:
    """Reads (and prunes) the traffic rows for one platform process. Sync: call it from a
    worker thread, as the store is."""

    def __init__(self, platform: Platform) -> None:
        self.engine = platform.store.engine
        self.gateway = platform.gateway
        # For rows that do not say their writer's interval: assume this process's own.
        self.interval_s = platform.settings.traffic_publish_interval_s or 2.0
        self._pruned_at = 0.0

    def stale_after_s(self, row: traffic.TrafficRow) -> float:
        """How old this row's gateway's last write may be before it is taken for dead:
        `STALE_INTERVALS` of the interval that gateway publishes at, not this one's."""
        return STALE_INTERVALS * (row.publish_interval_s or self.interval_s)

    def _own(self) -> tuple[str | None, str | None]:
        publisher = self.gateway.publisher if self.gateway is not None else None
        if publisher is None:
            return None, None
        return publisher.gateway, publisher.group

    def read(self, deployment_id: str, since_s: float | None = None) -> FleetTraffic:
        """`since_s`: seconds since the last scaling change (None: no recent figures)."""
        return self.read_many([deployment_id], since_s)[deployment_id]

    def read_many(
        self, deployment_ids: Sequence[str], since_s: float | None = None
    ) -> dict[str, FleetTraffic]:
        """`read` for several deployments in one query (the deployment list)."""
        rows, _ = traffic.read(self.engine, deployment_ids, WINDOW_S)
        own, group = self._own()
        # Which gateways are alive, from every row (heartbeats included): the same for all.
        gateways: dict[str, float] = {}
        peers: dict[str, float] = {}
        for row in rows:
            if row.gateway == own or row.updated_age_s > self.stale_after_s(row):
                continue
            age = gateways.get(row.gateway)
            if age is None or row.updated_age_s < age:
                gateways[row.gateway] = row.updated_age_s
                if row.gateway_group != group:
                    peers[row.gateway] = row.updated_age_s
        out = {d: FleetTraffic(gateways=dict(gateways), peers=dict(peers))
               for d in deployment_ids}
        newest: dict[tuple[str, str], traffic.TrafficRow] = {}
        for row in rows:
            if row.gateway == own:
                continue  # this process's own figures are read live
            seen = out.get(row.deployment_id)
            if seen is None:
                continue  # a heartbeat
            seen.requests += row.requests
            seen.failures += row.failures
            hist = Histogram.from_json(row.latency)
            seen.latency.merge(hist)
            if since_s is not None and row.slot_age_s <= since_s:
                seen.recent.merge(hist)
            key = (row.deployment_id, row.gateway)
            held = newest.get(key)
            if held is None or row.updated_age_s < held.updated_age_s:
                newest[key] = row
        for row in newest.values():
            if row.updated_age_s > self.stale_after_s(row) or row.gateway_group == group:
                continue
            in_flight = out[row.deployment_id].in_flight
            for replica_id, n in row.in_flight.items():
                if isinstance(n, int) and n > 0:
                    in_flight[replica_id] = in_flight.get(replica_id, 0) + n
        return out

    def prune_if_due(self) -> None:
        """Delete dead gateways' rows (live ones delete their own), at most every 30 s.
        Twice the retention: never a row a live gateway may be deleting itself."""
        now = time.monotonic()
        if now - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = now
            traffic.prune(self.engine, 2 * KEEP_S)


# -- merging with this process's own figures -----------------------------------------------


@dataclass
class _Local:
    requests: int = 0
    failures: int = 0
    samples: list[float] = field(default_factory=list)
    recent: list[float] = field(default_factory=list)


def _local(gateway: Gateway | None, deployment_id: str, since_s: float | None) -> _Local:
    """This process's own figures (not its workers' shared sums: their rows count them)."""
    dst = gateway.book.deployments.get(deployment_id) if gateway is not None else None
    if dst is None:
        return _Local()
    now = time.monotonic()
    since = None if since_s is None else now - since_s
    return _Local(
        requests=dst.arrivals.count(now),
        failures=dst.errors.count(now),
        samples=dst.first_byte.values(now),
        recent=dst.first_byte.values(now, since) if since_s is not None else [],
    )


def merge_signals(
    sig: ScalingSignals,
    fleet: FleetTraffic,
    gateway: Gateway | None,
    deployment_id: str,
    replica_ids: Sequence[str],
    since_s: float | None,
) -> ScalingSignals:
    """`sig` (this process's view) with the other gateways' traffic added."""
    if fleet.empty:
        return sig
    local = _local(gateway, deployment_id, since_s)
    latency = Histogram(fleet.latency.counts)
    latency.add_all(local.samples)
    updates: dict[str, Any] = {
        "requests_in_window": local.requests + fleet.requests,
        "p99_latency_s": latency.percentile(99),
    }
    if since_s is None:  # no scaling change known: the whole window is recent
        recent = latency
    else:
        recent = Histogram(fleet.recent.counts)
        recent.add_all(local.recent)
    updates["recent_p99_latency_s"] = recent.percentile(99)
    updates["recent_requests"] = recent.count
    own = sum(gateway.in_flight(r) for r in replica_ids) if gateway is not None else 0
    theirs = sum(fleet.in_flight.get(r, 0) for r in replica_ids)
    updates["in_flight"] = max(sig.in_flight or 0, own + theirs)
    return sig.model_copy(update=updates)


def merge_stats(
    stats: dict[str, Any], fleet: FleetTraffic, gateway: Gateway | None, deployment_id: str
) -> dict[str, Any]:
    """`Gateway.stats` (this process's, or an empty one) with the other gateways' traffic:
    requests, failures, first-byte percentiles and in-flight counts over every gateway."""
    out = dict(stats)
    out["gateways"] = len(fleet.gateways) + (1 if gateway is not None and gateway.publisher
                                            else 0)
    if fleet.empty:
        return out
    local = _local(gateway, deployment_id, None)
    out["requests"] = local.requests + fleet.requests
    out["failedRequests"] = local.failures + fleet.failures
    if fleet.latency.counts:
        merged = Histogram(fleet.latency.counts)
        merged.add_all(local.samples)
        out["firstByte"] = {"count": merged.count, "p50_s": merged.percentile(50),
                            "p99_s": merged.percentile(99)}
    elif local.samples:
        values = sorted(local.samples)
        out["firstByte"] = {"count": len(values), "p50_s": percentile(values, 50),
                            "p99_s": percentile(values, 99)}
    replicas = []
    for r in out.get("replicas") or []:
        extra = fleet.in_flight.get(r["id"], 0)
        replicas.append({**r, "inFlight": (r.get("inFlight") or 0) + extra} if extra else r)
    out["replicas"] = replicas
    shown = {r["id"] for r in replicas}
    out["inFlight"] = sum(r.get("inFlight") or 0 for r in replicas) + sum(
        n for rid, n in fleet.in_flight.items() if rid not in shown
    )
    out["windowS"] = out.get("windowS") or WINDOW_S
    return out
