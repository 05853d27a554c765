"""The balancer contract's request through the gateway: prefix-aware keeps each system
prompt on one replica; a policy written before the contract grew still works; the KV
capacity the policy ages its index by comes from the plan."""

from __future__ import annotations

from collections.abc import Sequence

from gateway_harness import Harness

from a3s_core.contracts import Balancer
from a3s_core.gateway.directory import kv_capacity_tokens
from a3s_core.types import ReplicaLoad, RouteRequest


async def test_prefix_aware_keeps_a_shared_prefix_on_one_replica(harness: Harness) -> None:
    replicas = [await harness.replica(model="px", tokens=2) for _ in range(3)]
    dep = harness.deploy("px", replicas, balancer="prefix-aware")
    client = harness.client(dep)
    homes: dict[int, set[str]] = {}
    for turn in range(4):
        for i in range(4):
            system = f"You are helper {i}. " + "Answer in the house style. " * 150
            raw = await client.chat.completions.with_raw_response.create(
                model=dep.name, max_tokens=2,
                messages=[{"role": "system", "content": system},
                          {"role": "user", "content": f"question {turn}"}])
            homes.setdefault(i, set()).add(raw.headers["x-a3s-replica"])
    assert all(len(h) == 1 for h in homes.values()), homes
    assert len(set().union(*homes.values())) >= 2  # new prefixes were spread


def test_a_policy_written_before_the_request_was_passed_still_works() -> None:
    class Last(Balancer):
        name = "last"

        def pick(self, replicas: Sequence[ReplicaLoad]) -> ReplicaLoad:  # type: ignore[override]
            return replicas[-1]

    class Echo(Balancer):
        name = "echo"
        seen: RouteRequest | None = None

        def pick(self, replicas: Sequence[ReplicaLoad],
                 request: RouteRequest | None = None) -> ReplicaLoad:
            self.seen = request
            return replicas[0]

    loads = [ReplicaLoad(replica_id=r, url=f"http://{r}") for r in "ab"]
    request = RouteRequest("dep", "/v1/chat/completions", b"{}", frozenset("ab"))
    assert Last().pick(loads, request).replica_id == "b"  # the request is not passed on
    assert Last().pick(loads).replica_id == "b"
    echo = Echo()
    assert echo.pick(loads, request).replica_id == "a" and echo.seen is request


def test_kv_capacity_comes_from_the_plan_candidate_of_the_replicas_gpu() -> None:
    plan = {"kv_bytes_per_token": 131072, "candidates": [
        {"gpu": "L4", "tensor_parallel_size": 1, "kv_budget_per_gpu_bytes": 4 * 2**30},
        {"gpu": "A100-80GB", "tensor_parallel_size": 2, "kv_budget_per_gpu_bytes": 50 * 2**30},
    ]}
    assert kv_capacity_tokens(plan, "L4", 1) == 32768
    assert kv_capacity_tokens(plan, "A100-80GB", 2) == 2 * 50 * 2**30 // 131072
    assert kv_capacity_tokens(plan, "H100", 1) is None
    assert kv_capacity_tokens(None, "L4", 1) is None
    assert kv_capacity_tokens({"kv_bytes_per_token": 0}, "L4", 1) is None  # an encoder
    assert kv_capacity_tokens({"kv_bytes_per_token": 1, "candidates": "junk"}, "L4", 1) is None
