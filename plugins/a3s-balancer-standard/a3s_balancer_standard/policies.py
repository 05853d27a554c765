"""Three load-only policies over the gateway's live view of each replica (`ReplicaLoad`);
they ignore the request (`prefix.py` has the one that reads it).

Every policy gets only routable replicas (ready, not ejected) and keeps its state on the
instance: the gateway makes one instance per deployment.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from a3s_core.contracts import Balancer
from a3s_core.types import ReplicaLoad, RouteRequest


def queue_of(r: ReplicaLoad) -> float:
    """Requests the replica is working on or holding.

    Engine figures (waiting + running) see every client, but are up to one scrape
    interval old; the gateway's in-flight count (every worker's: `gateway_in_flight`) is
    exact for its own requests at this instant. Taking the larger keeps a burst that
    arrives between two scrapes from all landing on the replica that looked idlest at the
    last scrape.
    """
    ours = float(r.gateway_in_flight)
    if r.metrics_fresh:
        engine = r.waiting + r.running
        return ours if ours > engine else engine  # max(engine, ours), without the call
    return ours


class _Rotating(Balancer):
    """Break exact ties in turn, so equal replicas share work instead of the first
    in the list getting all of it while the rest idle."""

    def __init__(self) -> None:
        self._turn = 0

    def _first_of_ties(
        self, ranked: Sequence[tuple[tuple[float, ...], int]], replicas: Sequence[ReplicaLoad]
    ) -> ReplicaLoad:
        best = ranked[0][0]
        return self._in_turn([i for key, i in ranked if key == best], replicas)

    def _in_turn(self, ties: list[int], replicas: Sequence[ReplicaLoad]) -> ReplicaLoad:
        """The next of the tied replicas (indices into `replicas`), in turn."""
        self._turn += 1
        return replicas[ties[self._turn % len(ties)]]


class LeastQueue(_Rotating):
    """Fewest waiting + running requests; ties broken by the gateway's in-flight count."""

    name = "least-queue"

    def pick(
        self, replicas: Sequence[ReplicaLoad], request: RouteRequest | None = None
    ) -> ReplicaLoad:
        if not replicas:
            raise ValueError("pick() needs at least one replica")
        # One pass (this runs per request): the least (queue, in-flight) and every index
        # that equals it, in list order, which is what sorting by ((queue, in-flight),
        # index) and taking the ties at the head gives. A NaN queue (from an engine figure)
        # orders nothing, so for it the sort decides, as it always did.
        ties: list[int] = []
        best_q = best_f = 0.0
        for i, r in enumerate(replicas):
            q = queue_of(r)
            if q != q:
                return self._first_of_ties(self._ranked(replicas), replicas)
            f = float(r.in_flight)
            if not ties or q < best_q or (q == best_q and f < best_f):
                best_q, best_f, ties = q, f, [i]
            elif q == best_q and f == best_f:
                ties.append(i)
        return self._in_turn(ties, replicas)

    @staticmethod
    def _ranked(replicas: Sequence[ReplicaLoad]) -> list[tuple[tuple[float, ...], int]]:
        return sorted(((queue_of(r), float(r.in_flight)), i) for i, r in enumerate(replicas))


def load_of(r: ReplicaLoad) -> float | None:
    """GPU utilisation in percent; KV-cache usage (as percent) for engines such as vLLM
    whose /metrics carry no utilisation figure; None when nothing fresh is known."""
    if not r.metrics_fresh:
        return None
    if r.gpu_utilization is not None:
        return r.gpu_utilization
    if r.kv_cache_usage is not None:
        return r.kv_cache_usage * 100.0
    return None


class LeastLoad(_Rotating):
    """Lowest GPU utilisation; replicas without a fresh figure rank after those with one,
    and the queue (then in-flight) decides among equals."""

    name = "least-load"

    def pick(
        self, replicas: Sequence[ReplicaLoad], request: RouteRequest | None = None
    ) -> ReplicaLoad:
        if not replicas:
            raise ValueError("pick() needs at least one replica")

        def key(r: ReplicaLoad) -> tuple[float, ...]:
            load = load_of(r)
            return (math.inf if load is None else load, queue_of(r), float(r.in_flight))

        ranked = sorted((key(r), i) for i, r in enumerate(replicas))
        return self._first_of_ties(ranked, replicas)


class Weighted(Balancer):
    """Smooth weighted round-robin (nginx): every pick adds each replica's weight to its
    current score, takes the highest, and subtracts the total from the winner. Over any
    window of sum(weights) picks each replica gets exactly its share, interleaved rather
    than in runs (weights 5:1:1 give a a b a c a a, not a a a a a b c)."""

    name = "weighted"

    def __init__(self) -> None:
        self._current: dict[str, float] = {}

    def pick(
        self, replicas: Sequence[ReplicaLoad], request: RouteRequest | None = None
    ) -> ReplicaLoad:
        if not replicas:
            raise ValueError("pick() needs at least one replica")
        # Forget replicas that left (scaled down, ejected); newcomers start at 0.
        live = {r.replica_id for r in replicas}
        for gone in [rid for rid in self._current if rid not in live]:
            del self._current[gone]
        total = 0.0
        best: ReplicaLoad | None = None
        best_score = -math.inf
        for r in replicas:
            weight = r.weight if r.weight > 0 else 0.0
            score = self._current.get(r.replica_id, 0.0) + weight
            self._current[r.replica_id] = score
            total += weight
            if score > best_score:
                best, best_score = r, score
        assert best is not None
        if total <= 0:  # every weight is zero: plain round-robin by the same mechanism
            for r in replicas:
                self._current[r.replica_id] += 1.0
            total = float(len(replicas))
            best = max(replicas, key=lambda r: self._current[r.replica_id])
        self._current[best.replica_id] -= total
        return best
