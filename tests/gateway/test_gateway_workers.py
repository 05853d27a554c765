"""`a3s serve --workers N`: real worker processes on one socket (workers_kit.py).

The openai-client suite of test_gateway_openai.py runs again here against two gateway
workers; then a key revoked through the API is refused by every worker at once, least-queue
still spares a slow replica when its requests arrive through two workers, and a killed
worker costs nothing to requests it had not accepted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_harness import Harness
from sqlmodel import Session, select
from test_gateway_openai import (  # noqa: F401  # collected again, with `harness` below
    test_bare_v1_routes_by_model_field,
    test_chat_non_streaming_through_path_endpoint,
    test_chat_streaming_arrives_chunk_by_chunk,
    test_embeddings_for_an_embedding_engine,
    test_host_based_routing_with_a_domain,
    test_models_lists_the_deployment,
    test_stream_is_not_buffered,
    test_text_completions_streaming_and_not,
)
from workers_kit import Workers, clients_per_worker, pinned_clients, start_workers

from a3s_core.settings import Settings
from a3s_core.store import Store
from a3s_core.store.db import make_engine
from a3s_core.store.tables import DeploymentRow

N = 2




@pytest.fixture(scope="module")
def gateway_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    data_dir = tmp_path_factory.mktemp("workers")
    Store.open(f"sqlite:///{data_dir / 'a3s.db'}").close()  # the control plane's job
    workers = start_workers(data_dir, N, role="gateway", domain="a3s.internal")
    try:
        yield workers
    finally:
        workers.stop()


async def _harness(workers: Workers, **settings: Any) -> AsyncIterator[Harness]:
    db = make_engine(f"sqlite:///{workers.data_dir / 'a3s.db'}")
    # `workers` stands in for the Gateway: its invalidate() bumps the shared generation.
    h = Harness(workers, db, workers.base_url,  # type: ignore[arg-type]
                Settings(data_dir=workers.data_dir, **settings))
    try:
        yield h
    finally:
        with Session(db) as s:  # the next test reuses names: these are gone for it
            for row in s.exec(select(DeploymentRow)).all():
                row.status = "deleted"
                s.add(row)
            s.commit()
        for r in h.replicas:
            await r.stop()
        db.dispose()


@pytest.fixture
async def harness(gateway_workers: Workers) -> AsyncIterator[Harness]:
    async for h in _harness(gateway_workers, domain="a3s.internal"):
        yield h


async def test_requests_spread_over_the_workers(harness: Harness) -> None:
    r = await harness.replica(model="chat", tokens=2)
    dep = harness.deploy("chat", [r])
    clients = await pinned_clients(harness.base_url, N)
    try:
        for client in clients.values():
            resp = await client.post(f"/d/{dep.namespace}/{dep.name}/v1/chat/completions",
                                     json={"model": "chat", "messages": []},
                                     headers={"Authorization": f"Bearer {dep.key}"})
            assert resp.status_code == 200, resp.text
    finally:
        for client in clients.values():
            await client.aclose()
    assert r.hits["chat"] == N


async def test_least_queue_across_workers_spares_a_slow_replica(harness: Harness) -> None:
    """The balancing test of test_gateway_balancing.py, with requests arriving through
    both workers: each worker's policy sees the replica's in-flight over all workers."""
    fast = await harness.replica(model="rr", tokens=5, token_s=0.002)
    slow = await harness.replica(model="rr", tokens=5, token_s=0.05)
    rr = harness.deploy("rr", [fast, slow], balancer="round-robin")
    await _drive(harness, rr, clients=8, each=4)
    rr_share = slow.hits["chat"] / 32
    # Round-robin in each worker: about half (each worker keeps its own turn).
    assert 0.3 <= rr_share <= 0.7, (fast.hits, slow.hits)

    fast = await harness.replica(model="lq", tokens=5, token_s=0.002)
    slow = await harness.replica(model="lq", tokens=5, token_s=0.05)
    lq = harness.deploy("lq", [fast, slow], balancer="least-queue")
    await _drive(harness, lq, clients=8, each=30)
    total = fast.hits["chat"] + slow.hits["chat"]
    assert total >= 240
    assert 0 < slow.hits["chat"] / total < 0.5 * rr_share, (fast.hits, slow.hits)


async def _drive(harness: Harness, dep: Any, clients: int, each: int) -> None:
    """`clients` callers, each on its own connection, half of them on each worker."""
    per_worker = await clients_per_worker(harness.base_url, N, clients // N)

    async def caller(http: httpx.AsyncClient) -> None:
        try:
            for _ in range(each):
                resp = await http.post(f"/d/{dep.namespace}/{dep.name}/v1/chat/completions",
                                       json={"model": dep.name, "messages": []},
                                       headers={"Authorization": f"Bearer {dep.key}"})
                assert resp.status_code == 200, resp.text
        finally:
            await http.aclose()

    await asyncio.gather(*(caller(c) for group in per_worker.values() for c in group))


async def _chat(base_url: str, dep: Any) -> int:
    """One chat request on a new connection; its status."""
    async with httpx.AsyncClient(base_url=base_url, timeout=15) as http:
        resp = await http.post(f"/d/{dep.namespace}/{dep.name}/v1/chat/completions",
                               json={"model": dep.name, "messages": []},
                               headers={"Authorization": f"Bearer {dep.key}"})
        return resp.status_code


async def _keep_calling(base_url: str, dep: Any, killed_at: list[float],
                        outcomes: list[tuple[float, int | str]]) -> None:
    """Chat requests, one after another on new connections, until 2 s after the kill."""
    loop = asyncio.get_running_loop()
    while not killed_at or loop.time() < killed_at[0] + 2.0:
        sent = loop.time()
        try:
            status: int | str = await _chat(base_url, dep)
        except httpx.TransportError as exc:
            status = type(exc).__name__
        outcomes.append((sent, status))


async def test_a_killed_worker_costs_only_what_it_held(tmp_path: Path) -> None:
    Store.open(f"sqlite:///{tmp_path / 'a3s.db'}").close()
    workers = start_workers(tmp_path, N, role="gateway")
    try:
        async for h in _harness(workers):
            # 100 ms an answer: some requests are in flight at worker 1 when it dies.
            r = await h.replica(model="chat", tokens=2, token_s=0.05)
            dep = h.deploy("chat", [r])
            pids = workers.pids()
            # Callers keep sending, each request on a new connection, while worker 1 is
            # killed. A request may fail only if it was sent before the kill (worker 1
            # may have accepted it); every one sent after it must be answered.
            loop = asyncio.get_running_loop()
            outcomes: list[tuple[float, int | str]] = []
            killed_at: list[float] = []

            callers = [asyncio.create_task(_keep_calling(workers.base_url, dep, killed_at,
                                                         outcomes)) for _ in range(6)]
            await asyncio.sleep(1.0)
            os.kill(pids[1], signal.SIGKILL)
            killed_at.append(loop.time())
            await asyncio.gather(*callers)
            after = [status for sent, status in outcomes if sent > killed_at[0]]
            before = [status for sent, status in outcomes if sent <= killed_at[0]]
            assert after and set(after) == {200}, after
            assert len([s for s in before if s != 200]) <= 6  # at most those in flight
            assert before.count(200) > 0
            statuses = await asyncio.gather(*(_chat(workers.base_url, dep) for _ in range(20)))
            assert statuses == [200] * 20
            # The supervisor started the worker again, with a new pid.
            again = await asyncio.to_thread(workers.pids)
            assert again[1] != pids[1] and again[0] == pids[0]
    finally:
        workers.stop()


def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    """A supervisor killed with SIGKILL cannot stop its workers itself: they must not go
    on serving (and leading) alone."""
    Store.open(f"sqlite:///{tmp_path / 'a3s.db'}").close()
    workers = start_workers(tmp_path, N, role="gateway")
    pids = workers.pids()
    workers.proc.kill()
    workers.proc.wait()
    deadline = time.monotonic() + 40
    while any(Path(f"/proc/{pid}").exists() for pid in pids.values()):
        assert time.monotonic() < deadline, f"workers {pids} outlived their supervisor"
        time.sleep(0.1)


async def test_a_key_revoked_through_the_api_is_refused_by_every_worker(
    tmp_path: Path,
) -> None:
    workers = start_workers(tmp_path, N, role="all")  # API in every worker; controllers off
    try:
        token = (tmp_path / "admin-token").read_text().strip()
        async for h in _harness(workers):
            r = await h.replica(model="chat", tokens=2)
            dep = h.deploy("chat", [r])
            clients = await pinned_clients(workers.base_url, N)
            path = f"/d/{dep.namespace}/{dep.name}/v1/chat/completions"
            auth = {"Authorization": f"Bearer {dep.key}"}
            chat = {"model": "chat", "messages": []}
            try:
                for client in clients.values():  # every worker has the key in its snapshot
                    assert (await client.post(path, json=chat, headers=auth)).status_code == 200
                rotated = await clients[0].post(
                    f"/v1/deployments/{dep.id}/keys:rotate",
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert rotated.status_code == 200, rotated.text
                new = {"Authorization": f"Bearer {rotated.json()['apiKey']}"}
                # At once, on both workers: no wait for the other worker's snapshot to age.
                for index, client in clients.items():
                    resp = await client.post(path, json=chat, headers=auth)
                    assert resp.status_code == 401, (index, resp.text)
                    assert resp.json()["error"]["code"] == "invalid_api_key"
                    assert (await client.post(path, json=chat, headers=new)).status_code == 200
            finally:
                for client in clients.values():
                    await client.aclose()
    finally:
        workers.stop()


def test_a_worker_that_cannot_be_built_stops_the_supervisor_at_once(tmp_path: Path) -> None:
    """A wrong setting fails every worker alike: one plain error, exit 1, no restart loop."""
    with pytest.raises(RuntimeError) as err:
        start_workers(tmp_path, N, role="all", runtime="nope")
    log = str(err.value)
    assert "runtime 'nope' is not available" in log
    assert "Traceback" not in log and "starting it again" not in log
