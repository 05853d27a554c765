"""Retries before the first byte, ejection and probing, all-down, kills, disconnects."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from typing import Any

import httpx
import openai
import pytest
from gateway_harness import Harness

from a3s_core.contracts import Balancer
from a3s_core.types import ReplicaLoad


def dead_url() -> str:
    """A loopback port with nothing listening (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


async def test_5xx_and_429_are_retried_once_on_another_replica(harness: Harness) -> None:
    bad = await harness.replica(model="m", fail_next=[500, 503, 429])
    good = await harness.replica(model="m")
    dep = harness.deploy("m", [bad, good], balancer="round-robin")
    client = harness.client(dep)
    for _ in range(6):
        answer = await client.chat.completions.create(model="m", messages=[])
        assert answer.choices[0].message.content
    # All three failures were served to the gateway, and every one was answered by the
    # good replica instead: 6 answers in all.
    assert bad.fail_next == []
    assert good.hits["chat"] + (bad.hits["chat"] - 3) == 6
    replicas = harness.gateway.stats(dep.id)["replicas"]
    assert replicas[0]["ejected"] is False  # two 5xx; a 429 is overload, not ill health


async def test_connect_errors_retry_then_eject_then_probe_back(harness: Harness) -> None:
    harness.gateway.book.backoff_start_s = 0.3
    good = await harness.replica(model="m")
    flaky = await harness.replica(model="m", fail_next=[500, 500, 500])
    dep = harness.deploy("m", [good, flaky], balancer="round-robin")
    client = harness.client(dep)
    for _ in range(6):
        await client.chat.completions.create(model="m", messages=[])
    assert flaky.hits["chat"] == 3  # three failures in a row: ejected
    flaky_stats = harness.gateway.stats(dep.id)["replicas"][1]
    assert flaky_stats["ejected"] is True and "HTTP 500" in flaky_stats["lastError"]
    before = flaky.hits["chat"]
    for _ in range(4):
        await client.chat.completions.create(model="m", messages=[])
    assert flaky.hits["chat"] == before  # sits out its back-off

    # After the back-off a scrape of /metrics probes it; it answers, so it is back.
    await asyncio.sleep(0.35)
    await harness.gateway.scrape_once()
    assert harness.gateway.stats(dep.id)["replicas"][1]["ejected"] is False
    for _ in range(4):
        await client.chat.completions.create(model="m", messages=[])
    assert flaky.hits["chat"] > before


async def test_refused_connections_are_retried_and_all_down_is_a_503(harness: Harness) -> None:
    live = await harness.replica(model="m")
    dep = harness.deploy("m", [dead_url(), live.url], balancer="round-robin")
    client = harness.client(dep)
    for _ in range(4):
        await client.chat.completions.create(model="m", messages=[])
    assert live.hits["chat"] == 4

    down = harness.deploy("down", [dead_url(), dead_url()])
    async with httpx.AsyncClient(base_url=harness.base_url) as http:
        url = f"/d/{down.namespace}/down/v1/chat/completions"
        auth = {"Authorization": f"Bearer {down.key}"}
        first = await http.post(url, json={"model": "down"}, headers=auth)
        assert first.status_code == 503
        message = first.json()["error"]["message"]
        assert "no replica of deployment team-a/down could be reached (2 tried" in message
        for _ in range(3):
            resp = await http.post(url, json={"model": "down"}, headers=auth)
        assert resp.status_code == 503
        assert "all 2 replicas of deployment team-a/down are down" in resp.json()["error"][
            "message"]
        assert "Retry-After" in resp.headers

        empty = harness.deploy("empty", [], status="deploying")
        resp = await http.post(f"/d/{empty.namespace}/empty/v1/chat/completions",
                               json={"model": "empty"},
                               headers={"Authorization": f"Bearer {empty.key}"})
        assert resp.status_code == 503
        assert "has no ready replica (status: deploying)" in resp.json()["error"]["message"]


async def test_a_replica_killed_mid_load_costs_no_request_that_had_not_streamed(
    harness: Harness,
) -> None:
    # Non-streaming answers take 1 s, streams send their first token after 1 s: the kill
    # comes once all 30 requests are in flight, before any of them has sent a byte.
    replicas = [await harness.replica(model="k", ttft_s=1.0, tokens=3, token_s=0.01)
                for _ in range(3)]
    dep = harness.deploy("k", replicas)
    client = harness.client(dep)

    async def plain() -> str:
        answer = await client.chat.completions.create(model="k", messages=[])
        return answer.choices[0].message.content or ""

    async def streamed() -> str:
        stream = await client.chat.completions.create(model="k", messages=[], stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    calls = [asyncio.ensure_future(plain() if i % 2 else streamed()) for i in range(30)]
    # Every request has reached its replica (the victim is generating some of them).
    await _until(lambda: sum(r.running for r in replicas) == 30, timeout=10)
    assert replicas[0].running > 0
    await replicas[0].crash()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert [r for r in results if not isinstance(r, str)] == []
    assert all(r == "tok0 tok1 tok2 " for r in results)
    victim = harness.gateway.stats(dep.id)["replicas"][0]
    assert victim["failures"] >= 1 or victim["ejected"], harness.gateway.stats(dep.id)


async def test_nothing_is_retried_after_bytes_were_sent(harness: Harness) -> None:
    victim = await harness.replica(model="s", tokens=50, token_s=0.05)
    spare = await harness.replica(model="s")
    dep = harness.deploy("s", [victim, spare])
    await harness.client(dep).models.list()  # the gateway has seen it: the pin below stays
    harness.gateway._balancers[dep.id] = ("least-queue", _Always(dep.replica_ids[0]))
    stream = await harness.client(dep).chat.completions.create(
        model="s", messages=[], stream=True)
    first = await stream.__anext__()
    assert first.choices[0].delta.content == "tok0 "
    await victim.crash()
    with pytest.raises(openai.APIError, match="failed mid-stream"):
        async for _ in stream:
            pass
    assert spare.hits["chat"] == 0


class _Always(Balancer):
    """Pins the choice, so the test knows which replica it is about to kill."""

    name = "always"

    def __init__(self, replica_id: str) -> None:
        self.replica_id = replica_id

    def pick(self, replicas: Sequence[ReplicaLoad]) -> ReplicaLoad:
        return next(r for r in replicas if r.replica_id == self.replica_id)


async def test_client_disconnect_cancels_the_upstream_request(harness: Harness) -> None:
    r = await harness.replica(model="c", tokens=100, token_s=0.05, ttft_s=0.0)
    dep = harness.deploy("c", [r])
    client = harness.client(dep)
    stream = await client.chat.completions.create(model="c", messages=[], stream=True)
    await stream.__anext__()
    await stream.close()
    await _until(lambda: r.cancelled == 1)
    await _until(lambda: harness.gateway.stats(dep.id)["inFlight"] == 0)

    # Not streaming: the client gives up while the replica is still working on it.
    slow = await harness.replica(model="c2", ttft_s=5.0)
    dep2 = harness.deploy("c2", [slow])
    with pytest.raises(openai.APITimeoutError):
        await harness.client(dep2, timeout=0.3).chat.completions.create(
            model="c2", messages=[])
    await _until(lambda: slow.cancelled == 1)
    await _until(lambda: harness.gateway.stats(dep2.id)["inFlight"] == 0)


async def _until(check: Any, timeout: float = 3.0) -> None:
    """Wait for a condition the system reaches on its own (bounded, never a timing claim)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)

