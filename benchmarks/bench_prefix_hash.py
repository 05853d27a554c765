"""What prefix-aware costs on the hot path: one `pick` (find the prompt in the raw body,
hash its head in chunks, look the chain up in each replica's index, record it) for prompts
of 1 KB to 256 KB, with the head capped at 4, 16 (the default) and 64 KB, against
least-queue's pick on the same replicas.

    .venv/bin/python benchmarks/bench_prefix_hash.py

Each figure is the fastest of 7 rounds of 100 picks (other processes share the CPUs).
The index is warm (the prompt's system part already indexed on one of 4 replicas), so the
lookup walks the whole matched chain: the worst case per pick for a given head.
"""

from __future__ import annotations

import json
import random
import time

from a3s_balancer_standard import LeastQueue, PrefixAware

from a3s_core.types import ReplicaLoad, RouteRequest

REPLICAS = [ReplicaLoad(replica_id=f"r{i}", url=f"http://r{i}", running=i % 2,
                        metrics_fresh=True) for i in range(4)]
MEMBERS = frozenset(r.replica_id for r in REPLICAS)


def body(size: int, rng: random.Random, salt: int) -> bytes:
    system = "".join(rng.choice("abcdefghij ") for _ in range(size))
    return json.dumps({"model": "m", "max_tokens": 64, "stream": True, "messages": [
        {"role": "system", "content": system},
        {"role": "user", "content": f"question {salt}"}]}).encode()


def per_pick_us(policy: LeastQueue | PrefixAware, requests: list[RouteRequest]) -> float:
    for r in requests[:50]:  # warm the index
        policy.pick(REPLICAS, r)
    best = float("inf")
    for _ in range(7):  # the machine is shared: the fastest of 7 rounds is the cost
        start = time.perf_counter()
        for r in requests:
            policy.pick(REPLICAS, r)
        best = min(best, (time.perf_counter() - start) / len(requests))
    return best * 1e6


def main() -> None:
    rng = random.Random(1)
    print(f"{'prompt':>8}  {'least-queue':>12}  " + "  ".join(
        f"{'head ' + str(h // 1024) + ' KB':>12}" for h in (4096, 16384, 65536)))
    for size in (1024, 4096, 16384, 65536, 262144):
        base = body(size, rng, 0)
        # Same system prompt, different questions: the head is shared, the tail is not.
        reqs = [RouteRequest("d", "/v1/chat/completions",
                             base.replace(b"question 0", f"question {i}".encode()), MEMBERS)
                for i in range(100)]
        cells = [per_pick_us(LeastQueue(), reqs)]
        for head in (4096, 16384, 65536):
            cells.append(per_pick_us(PrefixAware(head_bytes=head), reqs))
        print(f"{size // 1024:>5} KB  " + "  ".join(f"{c:>10.1f}µs" for c in cells))


if __name__ == "__main__":
    main()
