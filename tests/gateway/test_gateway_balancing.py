"""Policies through the gateway: least-queue avoids a slow replica, weighted follows GPU
compute, and the scraped figures the policies see."""

from __future__ import annotations

import asyncio

from gateway_fake_replica import FakeReplica
from gateway_harness import Deployed, Harness


async def drive(harness: Harness, dep: Deployed, workers: int, each: int) -> None:
    # A request that stalls is cut off and sent again rather than holding the test. Under
    # heavy load one request here was twice seen never to complete, when Starlette routes
    # stood in front of the same upstream client; not seen since the data plane became
    # raw ASGI, in 85 runs of the least-queue drive below with one or two cores kept busy
    # beside it. Adversarial tests of the upstream client since found two ways it could
    # wait forever (a new connection lost before the request made its future; a paused
    # connection pooled), both fixed (test_gateway_upstream_edges.py). The cut-off stays
    # so that a recurrence shows in the counts below instead of hanging the suite.
    client = harness.client(dep, timeout=15).with_options(max_retries=1)

    async def worker() -> None:
        for _ in range(each):
            await client.chat.completions.create(model=dep.name, messages=[])

    await asyncio.gather(*(worker() for _ in range(workers)))


async def slow_and_fast(harness: Harness, name: str) -> tuple[FakeReplica, FakeReplica]:
    # 10 ms against 250 ms per answer.
    fast = await harness.replica(model=name, tokens=5, token_s=0.002)
    slow = await harness.replica(model=name, tokens=5, token_s=0.05)
    return fast, slow


async def test_least_queue_sends_less_to_a_slow_replica_than_round_robin(
    harness: Harness,
) -> None:
    fast, slow = await slow_and_fast(harness, "rr")
    rr = harness.deploy("rr", [fast, slow], balancer="round-robin")
    await drive(harness, rr, workers=8, each=4)
    rr_share = slow.hits["chat"] / 32
    assert rr_share == 0.5  # round-robin: half, whatever the speed

    fast, slow = await slow_and_fast(harness, "lq")
    lq = harness.deploy("lq", [fast, slow])  # no balancer named: the default, least-queue
    await drive(harness, lq, workers=8, each=30)
    total = fast.hits["chat"] + slow.hits["chat"]
    assert 240 <= total <= 241  # one stalled request may have been sent twice
    # Least-queue evens out the queues, not the request counts: the slow replica holds
    # each request 25x longer, so with equal queues it completes (and is sent) a few
    # percent of them (~6-15% here, ramp-up included). Round-robin gave it half; the
    # bound is half of that, leaving room for a loaded CI machine.
    assert 0 < slow.hits["chat"] / total < 0.5 * rr_share, (fast.hits, slow.hits)
    stats = harness.gateway.stats(lq.id)
    assert sum(r["requests"] for r in stats["replicas"]) >= 240


async def test_weighted_splits_in_proportion_to_gpu_compute(harness: Harness) -> None:
    replicas = [await harness.replica(model="w") for _ in range(4)]
    # Memory bandwidth x TP from the catalog: A100 2039 GB/s (x4, x2, x1) and an unknown
    # GPU, which gets its peers' mean per-GPU figure (2039) rather than one that starves it.
    dep = harness.deploy("w", replicas, balancer="weighted",
                         gpus=[("A100-80GB", 4), ("A100-80GB", 2), ("A100-80GB", 1),
                               ("Mystery-GPU", 1)])
    await drive(harness, dep, workers=1, each=80)
    assert [r.hits["chat"] for r in replicas] == [40, 20, 10, 10]
    weights = [r["weight"] for r in harness.gateway.stats(dep.id)["replicas"]]
    assert weights == [8156, 4078, 2039, 2039]


async def test_weighted_favours_the_stronger_gpu(harness: Harness) -> None:
    h100 = await harness.replica(model="mix")
    l4 = await harness.replica(model="mix")
    dep = harness.deploy("mix", [h100, l4], balancer="weighted",
                         gpus=[("H100-80GB", 1), ("L4-24GB", 1)])
    await drive(harness, dep, workers=4, each=20)
    weights = [r["weight"] for r in harness.gateway.stats(dep.id)["replicas"]]
    assert weights[0] > weights[1]
    share = h100.hits["chat"] / 80
    assert abs(share - weights[0] / sum(weights)) <= 1 / 80


async def test_scraped_figures_signals_and_staleness(harness: Harness) -> None:
    # Each answer holds the one slot for 1.2 s: time enough for all four to be in (waited
    # for, not assumed) and scraped before the first one finishes, on a loaded machine too.
    busy = await harness.replica(model="q", max_running=1, tokens=1, token_s=0.0, ttft_s=1.2)
    dep = harness.deploy("q", [busy])
    client = harness.client(dep)
    calls = [asyncio.ensure_future(client.chat.completions.create(model="q", messages=[]))
             for _ in range(4)]
    deadline = asyncio.get_running_loop().time() + 0.9
    while busy.hits["chat"] < 4:
        assert asyncio.get_running_loop().time() < deadline, busy.hits
        await asyncio.sleep(0.01)
    await harness.gateway.scrape_once()
    replica = harness.gateway.stats(dep.id)["replicas"][0]
    assert replica["metricsFresh"] is True
    assert (replica["running"], replica["waiting"]) == (1, 3)
    assert replica["inFlight"] == 4
    signals = harness.gateway.signals(dep.id)
    assert signals.replicas == 1 and signals.queue_depth == 3
    await asyncio.gather(*calls)

    signals = harness.gateway.signals(dep.id)
    assert signals.requests_in_window == 4
    assert signals.p99_latency_s is not None and signals.p99_latency_s >= 1.2
    stats = harness.gateway.stats(dep.id)
    assert stats["total"]["count"] == 4 and stats["inFlight"] == 0
    assert stats["total"]["p50_s"] <= stats["total"]["p99_s"]

    # /metrics stops answering: after three intervals the figures no longer count.
    busy.metrics_status = 500
    await asyncio.sleep(harness.gateway.book.stale_after_s + 0.2)
    replica = harness.gateway.stats(dep.id)["replicas"][0]
    assert replica["metricsFresh"] is False and replica["waiting"] is None
    assert harness.gateway.signals(dep.id).queue_depth is None


async def test_streaming_records_time_to_first_token(harness: Harness) -> None:
    r = await harness.replica(model="s", tokens=3, ttft_s=0.2, token_s=0.1)
    dep = harness.deploy("s", [r])
    stream = await harness.client(dep).chat.completions.create(
        model="s", messages=[], stream=True)
    async for _ in stream:
        pass
    stats = harness.gateway.stats(dep.id)
    ttft, total = stats["ttft"]["p50_s"], stats["total"]["p50_s"]
    assert 0.2 <= ttft < total and total >= 0.4
    assert stats["replicas"][0]["ttft"]["count"] == 1
