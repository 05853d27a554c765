"""How long `list_nodes` takes on a big cluster (the fake API server, in this process).

    python plugins/a3s-runtime-kubernetes/benchmarks/inventory_bench.py --nodes 500 --pods 5000

Prints the time of the whole call and of the pure inventory build. The fake server runs
in the same process, so its JSON encoding competes for the GIL: a real API server makes
the call faster, not slower.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from a3s_runtime_kubernetes import KubernetesRuntime
from a3s_runtime_kubernetes.client import raw_json
from a3s_runtime_kubernetes.inventory import build_inventory
from a3s_runtime_kubernetes.testing import FakeKubeApi

from a3s_core.catalog import load_catalog

LABELS = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "nvidia.com/gpu.memory": "81920"}


async def main(nodes: int, pods: int, rounds: int) -> None:
    with FakeKubeApi(validate_version=None) as api:
        api.add_namespace("research")
        for i in range(nodes):
            api.add_node(f"gpu-{i}", LABELS, gpus=8)
        for i in range(pods):
            api.put("pods", {
                "metadata": {"name": f"job-{i}", "namespace": "research"},
                "spec": {"nodeName": f"gpu-{i % nodes}", "containers": [{
                    "name": "main", "image": "pytorch/pytorch",
                    "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
                "status": {"phase": "Running"},
            })
        rt = KubernetesRuntime({"host": api.url})
        await rt.start()
        try:
            calls = []
            for _ in range(rounds):
                t = time.perf_counter()
                await rt.list_nodes()
                calls.append(time.perf_counter() - t)
            node_json = raw_json(rt.core.list_node)()["items"]
            pod_json = raw_json(rt.core.list_pod_for_all_namespaces)()["items"]
            t = time.perf_counter()
            build_inventory(node_json, pod_json, load_catalog(), [])
            build = time.perf_counter() - t
        finally:
            await rt.close()
    print(f"list_nodes, {nodes} nodes / {pods} pods: median {statistics.median(calls):.3f} s "
          f"over {rounds} calls; inventory build alone {build:.3f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.nodes, args.pods, args.rounds))
