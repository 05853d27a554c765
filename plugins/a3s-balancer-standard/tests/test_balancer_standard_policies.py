"""The three policies on hand-made load figures."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from a3s_balancer_standard import LeastLoad, LeastQueue, Weighted, a3s_register_balancers
from a3s_balancer_standard.policies import queue_of

from a3s_core.plugins import Plugins, build_plugin_manager
from a3s_core.types import ReplicaLoad


def rep(rid: str, **kw: object) -> ReplicaLoad:
    return ReplicaLoad(replica_id=rid, url=f"http://{rid}", **kw)  # type: ignore[arg-type]


def test_registered_through_the_hook() -> None:
    import a3s_balancer_standard

    plugins = Plugins(build_plugin_manager(load_entry_points=False))
    plugins.register(a3s_balancer_standard, name="balancer-standard")
    assert {"least-queue", "least-load", "weighted"} <= set(plugins.balancers.names())
    assert plugins.balancers.get("weighted") is Weighted
    assert a3s_register_balancers is not None


def test_least_queue_prefers_the_shortest_engine_queue() -> None:
    replicas = [
        rep("a", waiting=3, running=8, metrics_fresh=True),
        rep("b", waiting=0, running=5, metrics_fresh=True),
        rep("c", waiting=1, running=7, metrics_fresh=True),
    ]
    assert LeastQueue().pick(replicas).replica_id == "b"


def test_least_queue_breaks_ties_by_in_flight_then_in_turn() -> None:
    lq = LeastQueue()
    tied = [rep("a", running=2, in_flight=1, metrics_fresh=True),
            rep("b", running=2, in_flight=0, metrics_fresh=True)]
    assert lq.pick(tied).replica_id == "b"
    equal = [rep("a"), rep("b"), rep("c")]
    assert Counter(lq.pick(equal).replica_id for _ in range(30)) == {"a": 10, "b": 10, "c": 10}


def test_least_queue_trusts_in_flight_over_stale_or_lagging_figures() -> None:
    # Stale metrics are ignored: only the gateway's own count is left.
    stale = [rep("a", waiting=0, running=0, in_flight=4, metrics_fresh=False),
             rep("b", waiting=9, running=9, in_flight=1, metrics_fresh=False)]
    assert LeastQueue().pick(stale).replica_id == "b"
    # Fresh but lagging (a burst since the last scrape): in-flight is the larger, so it counts.
    assert queue_of(rep("a", running=1, in_flight=6, metrics_fresh=True)) == 6
    assert queue_of(rep("a", running=9, waiting=2, in_flight=6, metrics_fresh=True)) == 11


def test_least_load_by_gpu_utilisation_then_kv_cache() -> None:
    ll = LeastLoad()
    by_util = [rep("a", gpu_utilization=90, metrics_fresh=True),
               rep("b", gpu_utilization=35, running=9, metrics_fresh=True),
               rep("c", gpu_utilization=60, metrics_fresh=True)]
    assert ll.pick(by_util).replica_id == "b"
    by_kv = [rep("a", kv_cache_usage=0.7, metrics_fresh=True),
             rep("b", kv_cache_usage=0.2, metrics_fresh=True)]
    assert ll.pick(by_kv).replica_id == "b"
    # Unknown load ranks last; among the unknown the queue decides.
    mixed = [rep("a", in_flight=0), rep("b", kv_cache_usage=0.95, metrics_fresh=True)]
    assert ll.pick(mixed).replica_id == "b"
    unknown = [rep("a", in_flight=3), rep("b", in_flight=1)]
    assert ll.pick(unknown).replica_id == "b"


def test_weighted_is_smooth_like_nginx() -> None:
    w = Weighted()
    replicas = [rep("a", weight=5), rep("b", weight=1), rep("c", weight=1)]
    # nginx's documented sequence for weights 5, 1, 1.
    assert [w.pick(replicas).replica_id for _ in range(7)] == list("aabacaa")


@pytest.mark.parametrize("weights", [(312, 362), (624, 312, 989), (1, 1, 1, 1)])
def test_weighted_splits_in_proportion(weights: tuple[int, ...]) -> None:
    w = Weighted()
    replicas = [rep(f"r{i}", weight=wt) for i, wt in enumerate(weights)]
    rounds = sum(weights) * 3
    counts = Counter(w.pick(replicas).replica_id for _ in range(rounds))
    assert [counts[f"r{i}"] for i in range(len(weights))] == [3 * wt for wt in weights]


def test_weighted_forgets_replicas_that_left_and_survives_zero_weights() -> None:
    w = Weighted()
    three = [rep("a", weight=2), rep("b", weight=1), rep("c", weight=1)]
    for _ in range(5):
        w.pick(three)
    two = [rep("a", weight=2), rep("b", weight=1)]
    counts = Counter(w.pick(two).replica_id for _ in range(30))
    assert counts == {"a": 20, "b": 10}
    zeros = [rep("a", weight=0), rep("b", weight=0)]
    wz = Weighted()
    assert Counter(wz.pick(zeros).replica_id for _ in range(10)) == {"a": 5, "b": 5}


def test_every_policy_refuses_an_empty_list() -> None:
    for policy in (LeastQueue(), LeastLoad(), Weighted()):
        with pytest.raises(ValueError, match="at least one replica"):
            policy.pick([])


def reference_queue(r: ReplicaLoad) -> float:
    if r.metrics_fresh:
        return max(r.waiting + r.running, float(r.gateway_in_flight))
    return float(r.gateway_in_flight)


class ReferenceLeastQueue:
    """LeastQueue as first written: sort by ((queue, in-flight), index), rotate the ties."""

    def __init__(self) -> None:
        self.turn = 0

    def pick(self, replicas: list[ReplicaLoad]) -> ReplicaLoad:
        ranked = sorted(((reference_queue(r), float(r.in_flight)), i)
                        for i, r in enumerate(replicas))
        ties = [i for key, i in ranked if key == ranked[0][0]]
        self.turn += 1
        return replicas[ties[self.turn % len(ties)]]


def test_least_queue_picks_as_the_sort_it_replaced() -> None:
    """The one-pass pick against the sort, pick after pick (the turn carries on), on
    small figures so that ties of queue, of in-flight and of both are common, with
    -0.0, infinities and NaN among the engine figures."""
    rng = random.Random(11)
    odd = [0.0, -0.0, 1.0, 2.5, math.inf, math.nan]
    for _ in range(300):
        fast, slow = LeastQueue(), ReferenceLeastQueue()
        for _ in range(8):
            replicas = [
                rep(f"r{i}", waiting=rng.choice(odd) if rng.random() < 0.1 else rng.randint(0, 2),
                    running=float(rng.randint(0, 2)), in_flight=rng.randint(0, 2),
                    peer_in_flight=rng.randint(0, 1), metrics_fresh=rng.random() < 0.7)
                for i in range(rng.randint(1, 6))
            ]
            for r in replicas:
                q = queue_of(r)
                assert q == reference_queue(r) or (math.isnan(q) and math.isnan(reference_queue(r)))
            assert fast.pick(replicas) is slow.pick(replicas)
