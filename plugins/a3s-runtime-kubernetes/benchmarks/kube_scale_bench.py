"""One reconcile pass on a real control plane at scale: kwok GPU nodes and A3S replicas.

    tests/kube/build.sh
    python plugins/a3s-runtime-kubernetes/benchmarks/kube_scale_bench.py --nodes 1000 --replicas 500

Starts tests/kube's control plane (etcd, kube-apiserver, kube-scheduler, kwok), creates
`--nodes` kwok nodes with 8 A100s each and `--replicas` replicas through the runtime
(kube-scheduler binds them, kwok makes them Ready), then times what the controller does
each pass — `observe()` and `list_nodes()` — and counts the API calls, with the watch-fed
pod cache off and on. Prints one line per figure.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "kube"))

from a3s_kube_cluster import RealKube  # noqa: E402
from a3s_runtime_kubernetes import KubernetesRuntime  # noqa: E402
from controlplane import ControlPlane, missing_reason  # noqa: E402

from a3s_core.types import Placement, ReplicaRequest  # noqa: E402

A100 = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "nvidia.com/gpu.memory": "81920",
        "nvidia.com/gpu.count": "8"}
NS = "bench"


def request(i: int, nodes: int) -> ReplicaRequest:
    node = f"gpu-{i % nodes}"
    slot = (i // nodes) % 4
    placement = Placement(node=node, gpu="A100-80GB", gpu_indices=[2 * slot, 2 * slot + 1],
                          tensor_parallel_size=2)
    dep = f"m{i % 50}"
    return ReplicaRequest(
        replica_id=f"{dep}-{i:012d}", deployment_id=f"dep-{dep}", deployment_name=dep,
        namespace=NS, engine="vllm", image="vllm/vllm-openai:v0.6.3",
        command=["vllm", "serve", "m"], port=8000, health_path="/health",
        ready_path="/v1/models", placement=placement, model="m", served_model_name=dep,
        max_model_len=4096, tensor_parallel_size=2, gpu="A100-80GB", cpu_request=4.0,
        memory_request_bytes=8 * 2**30,
    )


def counting(rt: KubernetesRuntime) -> list[int]:
    """Count the runtime's API calls (every one goes through ApiClient.call_api)."""
    calls = [0]
    api = rt.core.api_client
    original = api.call_api

    def call_api(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    api.call_api = call_api  # type: ignore[method-assign]
    return calls


async def passes(rt: KubernetesRuntime, rounds: int) -> tuple[list[float], float]:
    calls = counting(rt)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        await asyncio.gather(rt.observe(), rt.list_nodes())
        times.append(time.perf_counter() - start)
    return times, calls[0] / rounds


async def main(nodes: int, replicas: int, rounds: int) -> None:
    if reason := missing_reason():
        sys.exit(reason)
    with tempfile.TemporaryDirectory() as tmp, ControlPlane(Path(tmp)) as cp:
        kube = RealKube(cp)
        t0 = time.perf_counter()
        for i in range(nodes):
            kube.add_node(f"gpu-{i}", A100, gpus=8, kwok=True)
        print(f"nodes: {nodes} kwok nodes created in {time.perf_counter() - t0:.1f}s")
        rt = KubernetesRuntime({**kube.options, "watch_pods": False})
        await rt.start()
        t0 = time.perf_counter()
        sem = asyncio.Semaphore(16)

        async def create(i: int) -> None:
            async with sem:
                await rt.create_replica(request(i, nodes))

        await asyncio.gather(*(create(i) for i in range(replicas)))
        print(f"replicas: {replicas} created in {time.perf_counter() - t0:.1f}s")
        while sum(o.state == "ready" for o in await rt.observe()) < replicas:
            await asyncio.sleep(1)
        print(f"replicas: all Ready (kube-scheduler + kwok) after "
              f"{time.perf_counter() - t0:.1f}s")
        times, calls = await passes(rt, rounds)
        print(f"watch off: one pass (observe + list_nodes) median "
              f"{statistics.median(times) * 1000:.0f} ms, {calls:g} API calls")
        await rt.close()

        rt = KubernetesRuntime({**kube.options, "watch_pods": True})
        await rt.start()
        assert rt.pod_cache is not None
        while not rt.pod_cache.synced:
            await asyncio.sleep(0.1)
        times, calls = await passes(rt, rounds)
        print(f"watch on:  one pass (observe + list_nodes) median "
              f"{statistics.median(times) * 1000:.0f} ms, {calls:g} API calls")
        await rt.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--replicas", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.nodes, args.replicas, args.rounds))
