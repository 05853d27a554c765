"""Live state per replica and per deployment: scraped figures, in-flight counts, health,
latency windows. Only the event loop touches it, so there are no locks.

With several data-plane workers (`a3s serve --workers N`) the book also writes to and
reads from a `LoadShare` (share.py): scraped figures and in-flight counts are then the
replica's over every worker, not this worker's share of them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from a3s_core.catalog import GpuCatalog
from a3s_core.gateway.directory import ReplicaInfo
from a3s_core.gateway.latency import LatencyWindow
from a3s_core.gateway.share import LoadShare, Slot
from a3s_core.types import LoadFigures, ReplicaLoad

EJECT_AFTER_FAILURES = 3  # consecutive failures (connect error, 5xx, failed scrape)
BACKOFF_START_S = 2.0
BACKOFF_MAX_S = 30.0


@dataclass
class ReplicaStats:
    info: ReplicaInfo
    weight: float = 1.0
    in_flight: int = 0
    figures: LoadFigures = field(default_factory=LoadFigures)
    scraped_at: float | None = None
    in_flight_at_scrape: int = 0
    failures: int = 0
    ejected_until: float | None = None
    backoff_s: float = BACKOFF_START_S
    last_error: str = ""
    requests: int = 0
    ttft: LatencyWindow = field(default_factory=LatencyWindow)
    total: LatencyWindow = field(default_factory=LatencyWindow)
    slot: Slot | None = None  # in the workers' LoadShare, when there is one
    # (info, weight, fields) that as_load copies; made again when either is replaced.
    _constant: tuple[ReplicaInfo, float, dict[str, Any]] | None = field(
        default=None, init=False, repr=False, compare=False)

    def scrape_view(self) -> tuple[LoadFigures, float | None, int, int]:
        """(figures, scraped_at, in flight now, in flight when scraped), over every worker
        when the book is shared, else this process's own."""
        slot = self.slot
        if slot is None:
            return self.figures, self.scraped_at, self.in_flight, self.in_flight_at_scrape
        figures, at, at_scrape = slot.figures()
        return figures, at, slot.total(), at_scrape

    def fresh(self, now: float, stale_after_s: float) -> bool:
        at = self.scrape_view()[1]
        return at is not None and now - at <= stale_after_s

    def ejected(self, now: float) -> bool:
        return self.ejected_until is not None and now < self.ejected_until

    def as_load(self, now: float, stale_after_s: float, live: bool = True) -> ReplicaLoad:
        """This replica as a balancer sees it. With `live`, the engine's figures are moved
        on by what this gateway (all its workers) started and finished since the scrape: a
        replica that answered a burst 50 ms ago no longer looks busy until the next scrape,
        and one that was just sent a burst already looks busy. `live=False` gives the figures as
        scraped (what the API and the autoscaler report).

        Runs per candidate replica per request: what `scrape_view` reads is read inline,
        and the fields that change only with the replica or its weight come from a copy
        of a dict made once (tests/gateway/test_gateway_load_view.py holds it to the
        straightforward construction)."""
        slot = self.slot
        own = self.in_flight
        if slot is None:
            f, at, in_flight = self.figures, self.scraped_at, own
            at_scrape = self.in_flight_at_scrape
        else:
            f, at, at_scrape = slot.figures()
            in_flight = slot.total()
        values = self._constant_fields()
        if at is not None:
            age = values["metrics_age_s"] = now - at
            if age <= stale_after_s:
                waiting = f.waiting or 0.0
                running = f.running or 0.0
                if live:
                    delta = float(in_flight - at_scrape)
                    if delta >= 0:
                        running += delta
                    else:  # finished ones leave the running set; the queue refills it first
                        freed = min(running, -delta)
                        running -= freed
                        waiting = max(0.0, waiting - (-delta - freed))
                values["waiting"] = waiting
                values["running"] = running
                values["kv_cache_usage"] = f.kv_cache_usage
                values["gpu_utilization"] = f.gpu_utilization
                values["metrics_fresh"] = True
        # This worker's own count, and the other workers' from the shared cells.
        values["in_flight"] = own
        peers = in_flight - own
        values["peer_in_flight"] = peers if peers > 0 else 0
        return replica_load(values)

    def _constant_fields(self) -> dict[str, Any]:
        """A new dict of every ReplicaLoad field, in the model's order: this replica's id,
        URL, weight and KV capacity, and the values of a replica never scraped."""
        info, weight = self.info, self.weight
        made = self._constant
        if made is None or made[0] is not info or made[1] is not weight:
            made = self._constant = (info, weight, {
                "replica_id": info.id,
                "url": info.url,
                "waiting": 0.0,
                "running": 0.0,
                "in_flight": 0,
                "peer_in_flight": 0,
                "kv_cache_usage": None,
                "gpu_utilization": None,
                "weight": weight,
                "metrics_fresh": False,
                "metrics_age_s": None,
                "kv_capacity_tokens": info.kv_capacity_tokens,
            })
        return made[2].copy()


_LOAD_FIELDS = frozenset(ReplicaLoad.model_fields)
_new = object.__new__
# The slots pydantic gives every model, set through their descriptors (what
# object.__setattr__ ends up calling, without the attribute lookup on the way).
_set_dict = BaseModel.__dict__["__dict__"].__set__
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def replica_load(values: dict[str, Any]) -> ReplicaLoad:
    """A ReplicaLoad of `values`, which name every field with a value of its type.

    What `ReplicaLoad.model_construct` makes (the same four attributes pydantic sets),
    without its per-field pass for defaults and aliases: this runs per replica per
    request, and that pass was about 5 µs of it, the largest single cost of a pick
    (benchmarks/profile_gateway.py). tests/gateway/test_gateway_load_view.py holds the
    two to the same result and `values` to every field of the model."""
    load: ReplicaLoad = _new(ReplicaLoad)
    _set_dict(load, values)
    _set_fields_set(load, set(_LOAD_FIELDS))
    _set_extra(load, None)
    _set_private(load, None)
    return load


@dataclass
class DeploymentStats:
    ttft: LatencyWindow = field(default_factory=LatencyWindow)
    total: LatencyWindow = field(default_factory=LatencyWindow)
    first_byte: LatencyWindow = field(default_factory=LatencyWindow)
    # Timestamps only (value 0): every request routed, and those no replica could answer.
    arrivals: LatencyWindow = field(default_factory=LatencyWindow)
    errors: LatencyWindow = field(default_factory=LatencyWindow)
    slot: Slot | None = None  # the other workers' published counts, when shared

    def requests(self, now: float) -> int:
        """Requests routed in the window, by every worker."""
        own = self.arrivals.count(now)
        return own if self.slot is None else own + self.slot.others()[0]

    def failed(self, now: float) -> int:
        own = self.errors.count(now)
        return own if self.slot is None else own + self.slot.others()[1]


class LoadBook:
    """Everything the gateway knows about load and health, keyed by replica id."""

    def __init__(
        self,
        catalog: GpuCatalog,
        stale_after_s: float,
        eject_after: int = EJECT_AFTER_FAILURES,
        backoff_start_s: float = BACKOFF_START_S,
        backoff_max_s: float = BACKOFF_MAX_S,
    ) -> None:
        self.catalog = catalog
        self.stale_after_s = stale_after_s
        self.eject_after = eject_after
        self.backoff_start_s = backoff_start_s
        self.backoff_max_s = backoff_max_s
        self.replicas: dict[str, ReplicaStats] = {}
        self.deployments: dict[str, DeploymentStats] = {}
        self.share: LoadShare | None = None  # set by the gateway of a worker
        # sync()'s answer per deployment: (the snapshot's tuple, the epoch, the stats).
        # The epoch moves whenever `replicas` changes, which makes every answer stale.
        self._synced: dict[str, tuple[tuple[ReplicaInfo, ...], int, list[ReplicaStats]]] = {}
        self._epoch = 0

    def owns(self, st: ReplicaStats) -> bool:
        """Whether this process scrapes the replica (always, unless workers share)."""
        return self.share is None or self.share.owns(_rkey(st.info.id))

    # -- membership ---------------------------------------------------------------------

    def sync(self, replicas: tuple[ReplicaInfo, ...]) -> list[ReplicaStats]:
        """The stats of these replicas, created on first sight (and renewed if the URL
        changed: a restarted replica is a new process with nothing in flight here).

        The list is shared (callers only read it): the snapshot hands out the same tuple
        for a deployment until it is re-read, so a request finds its list by identity
        rather than looking up each replica again."""
        dep = replicas[0].deployment_id if replicas else None
        held = self._synced.get(dep) if dep is not None else None
        if held is not None and held[0] is replicas and held[1] == self._epoch:
            return held[2]
        out = []
        fresh_weights = False
        for info in replicas:
            st = self.replicas.get(info.id)
            if st is None or st.info != info:
                # Requests in flight keep (and count down on) the object they started with.
                st = ReplicaStats(info=info, backoff_s=self.backoff_start_s)
                if self.share is not None:
                    st.slot = self.share.slot(_rkey(info.id))
                self.replicas[info.id] = st
                fresh_weights = True
            out.append(st)
        if fresh_weights:
            self._weigh(out)
            self._epoch += 1  # other deployments' lists may hold a replaced object
        if dep is not None:
            self._synced[dep] = (replicas, self._epoch, out)
        return out

    def forget_except(self, live: set[str], live_deployments: set[str]) -> None:
        # A replica that left the ready set (draining) stays while this process still has
        # requests on it: drain waits on that count, and the publisher reports it.
        self._epoch += 1
        self._synced.clear()
        gone = [r for r, st in self.replicas.items() if r not in live and st.in_flight <= 0]
        for rid in gone:
            del self.replicas[rid]
            if self.share is not None:
                self.share.forget(_rkey(rid))
        for did in [d for d in self.deployments if d not in live_deployments]:
            del self.deployments[did]
            if self.share is not None:
                self.share.forget(_dkey(did))

    def deployment(self, deployment_id: str) -> DeploymentStats:
        st = self.deployments.get(deployment_id)
        if st is None:
            st = self.deployments[deployment_id] = DeploymentStats()
            if self.share is not None:
                st.slot = self.share.slot(_dkey(deployment_id))
        return st

    def publish(self, deployments: set[str], now: float | None = None) -> None:
        """Once a scrape round (shared books only): keep this worker's slots alive and
        publish its per-deployment request counts for the other workers to add up. Every
        live deployment gets its stats here, so a worker that routed none of its requests
        (the one running the autoscaler, say) still reads the others' counts."""
        if self.share is None:
            return
        now = time.monotonic() if now is None else now
        for dep_id in deployments:
            self.deployment(dep_id)
        for st in self.replicas.values():
            if st.slot is not None:
                st.slot.touch(now)
        for dst in self.deployments.values():
            if dst.slot is not None:
                dst.slot.touch(now)
                dst.slot.set_own(dst.arrivals.count(now), dst.errors.count(now))

    # -- requests -----------------------------------------------------------------------

    def started(self, st: ReplicaStats) -> None:
        st.in_flight += 1
        st.requests += 1
        if st.slot is not None:
            st.slot.set_own(st.in_flight)

    def finished(self, st: ReplicaStats) -> None:
        st.in_flight -= 1
        if st.slot is not None:
            st.slot.set_own(st.in_flight)

    def _weigh(self, replicas: list[ReplicaStats]) -> None:
        """weight = memory bandwidth (GB/s) × TP from the GPU catalog: decoding streams the
        weights once per token, so serving throughput follows bandwidth, not peak TFLOPS
        (an A100's 2039 GB/s outweighs an L40S's 864, as the seed expects, though the
        L40S has more dense bf16 TFLOPS). A replica on a GPU the catalog does not know
        gets the mean per-GPU weight of its known peers (not 1, which would starve it)."""
        known: list[float] = []
        for st in replicas:
            gpu = self.catalog.get(st.info.gpu) if st.info.gpu else None
            if gpu is not None:
                st.weight = gpu.bandwidth_gbs * st.info.tensor_parallel_size
                known.append(st.weight / st.info.tensor_parallel_size)
            else:
                st.weight = 0.0
        per_gpu = sum(known) / len(known) if known else 1.0
        for st in replicas:
            if st.weight == 0.0:
                st.weight = per_gpu * st.info.tensor_parallel_size

    # -- health -------------------------------------------------------------------------

    def succeeded(self, st: ReplicaStats) -> None:
        """A request went through: the failure streak and the back-off start over."""
        st.failures = 0
        st.ejected_until = None
        st.backoff_s = self.backoff_start_s

    def readmit(self, st: ReplicaStats) -> None:
        """A probe of an ejected replica answered: it takes requests again, on probation
        (its failure count stays one short of ejection, its back-off stays doubled)."""
        st.ejected_until = None

    def failed(self, st: ReplicaStats, reason: str, now: float | None = None) -> bool:
        """Count a failure; returns True when this one ejected the replica."""
        now = time.monotonic() if now is None else now
        st.failures += 1
        st.last_error = reason
        if st.failures >= self.eject_after and not st.ejected(now):
            st.ejected_until = now + st.backoff_s
            # Next ejection (if the probe lets it back and it fails again) lasts longer.
            st.backoff_s = min(st.backoff_s * 2, self.backoff_max_s)
            st.failures = self.eject_after - 1  # one more failure after a probe re-ejects
            return True
        return False

    def probe_due(self, st: ReplicaStats, now: float) -> bool:
        return st.ejected_until is not None and now >= st.ejected_until

    # -- metrics ------------------------------------------------------------------------

    def scraped(self, st: ReplicaStats, figures: LoadFigures, now: float | None = None) -> None:
        st.figures = figures
        st.scraped_at = time.monotonic() if now is None else now
        st.in_flight_at_scrape = st.in_flight
        if st.slot is not None:
            st.slot.publish(figures, st.scraped_at, st.slot.total())


def _rkey(replica_id: str) -> str:
    return "r:" + replica_id


def _dkey(deployment_id: str) -> str:
    return "d:" + deployment_id
