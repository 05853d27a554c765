"""The store becomes unreachable: fail static.

Known keys and deployments are served from the last good snapshot; what it cannot settle
is a 503 `store_unavailable` without the driver's text; the store is retried at most every
`ttl_s`; one warning per outage; this process's own invalidations are never undone.

The outage is real: the directory's engine is swapped for a SQLAlchemy engine on a real
driver whose connect fails (a PostgreSQL port with nothing listening, or a SQLite file in a
directory that does not exist), as happens when the database server is down or out of
reach. The harness's own engine keeps working: it stands for another process that still
reaches the store (or for a change committed just before this gateway lost it).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from gateway_harness import Deployed, Harness, make_plugins, serve
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from a3s_core.gateway import Gateway
from a3s_core.gateway.directory import Directory
from a3s_core.settings import Settings
from a3s_core.store.db import make_engine

CHAT: dict[str, Any] = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}]}
DIRECTORY_LOG = "a3s_core.gateway.directory"
PG_DOWN = "postgresql+psycopg://a3s_admin:hunter2@127.0.0.1:1/a3s"
# What the drivers say about these stores, none of which may reach an API client.
DRIVER_TEXT = ("OperationalError", "sqlite", "psycopg", "127.0.0.1", "a3s_admin", "hunter2",
               "unable to open", "refused", "sqlalche.me", "SELECT", "unreachable-dir")


class Outage:
    """Swaps the directory's engine for `dead` (and back), counting connect attempts."""

    def __init__(self, directory: Directory, dead: Engine) -> None:
        self.directory = directory
        self.real: Engine = directory._db
        self.dead = dead
        self.attempts = 0
        event.listen(dead, "do_connect", self._count)

    def _count(self, *_: Any) -> None:
        self.attempts += 1

    def start(self) -> None:
        self.directory._db = self.dead

    def end(self) -> None:
        self.directory._db = self.real


def sqlite_down(tmp_path: Path) -> Engine:
    return create_engine(f"sqlite:///{tmp_path / 'unreachable-dir' / 'a3s.db'}")


@pytest.fixture
def outage(harness: Harness, tmp_path: Path) -> Iterator[Outage]:
    o = Outage(harness.gateway.directory, sqlite_down(tmp_path))
    try:
        yield o
    finally:
        o.end()
        o.dead.dispose()


async def until(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_store_unavailable(resp: httpx.Response) -> None:
    assert resp.status_code == 503, resp.text
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["code"], error["type"]) == ("store_unavailable", "server_error")
    assert "store is unreachable" in error["message"]
    assert int(resp.headers["retry-after"]) >= 1
    assert_no_driver_text(resp.text)


def assert_no_driver_text(text: str) -> None:
    leaked = [t for t in DRIVER_TEXT if t.lower() in text.lower()]
    assert not leaked, f"driver text {leaked} in {text!r}"


def unretrieved(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The directory's tasks whose exception nobody retrieved (asyncio reports them when
    they are collected; other tests' leftovers, e.g. HTTP clients, are not ours)."""
    gc.collect()
    return [m for r in caplog.records
            if "never retrieved" in (m := r.getMessage()) and "Directory" in m]


async def warm(harness: Harness, *deps: Deployed) -> None:
    for dep in deps:
        assert [m.id async for m in harness.client(dep).models.list()] == [dep.name]


async def test_known_keys_are_served_from_the_last_snapshot(
    harness: Harness, outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    alpha = harness.deploy("alpha", [await harness.replica(model="alpha")])
    await warm(harness, alpha)
    directory = harness.gateway.directory
    assert directory.store_ok and directory.stale_for_s is None

    outage.start()
    await until(lambda: not directory.store_ok)  # a background refresh failed
    client = harness.client(alpha)
    for _ in range(3):
        answer = await client.chat.completions.create(**CHAT)
        assert answer.choices[0].message.content
        await asyncio.sleep(0.3)  # past the ttl: every request here notices the age
    stream = await client.chat.completions.create(**CHAT, stream=True)
    assert [c async for c in stream]
    assert outage.attempts >= 2  # the store was really tried, and failed, meanwhile
    stale = directory.stale_for_s
    assert stale is not None and stale >= 0.9
    assert not directory.store_ok
    assert unretrieved(caplog) == []


@pytest.mark.parametrize("store", ["postgresql", "sqlite"])
async def test_what_the_snapshot_cannot_settle_is_503_without_driver_text(
    harness: Harness, tmp_path: Path, store: str
) -> None:
    alpha = harness.deploy("alpha", [await harness.replica(model="alpha")])
    beta = harness.deploy("beta", [await harness.replica(model="beta")])
    harness.revoke(beta)
    await warm(harness, alpha)
    outage = Outage(harness.gateway.directory,
                    create_engine(PG_DOWN) if store == "postgresql" else sqlite_down(tmp_path))
    outage.start()
    try:
        await until(lambda: not harness.gateway.directory.store_ok)
        await asyncio.sleep(0.5)  # the ttl since that failure: the next miss tries the store
        base = f"/d/{alpha.namespace}/alpha/v1"
        async with httpx.AsyncClient(base_url=harness.base_url) as http:
            # An unknown key may be a deployment created elsewhere meanwhile: not a 401.
            assert_store_unavailable(
                await http.post(base + "/chat/completions", json=CHAT, headers=auth("sk-a3s-x"))
            )
            # A name the snapshot does not have, with a known key, by path and by model.
            assert_store_unavailable(await http.post(
                "/d/team-a/gamma/v1/chat/completions", json=CHAT, headers=auth(alpha.key)
            ))
            assert_store_unavailable(await http.post(
                "/v1/chat/completions", json={**CHAT, "model": "gamma"}, headers=auth(alpha.key)
            ))
            # A key the snapshot knows as revoked stays refused (revocation is final).
            revoked = await http.post("/v1/chat/completions", json={**CHAT, "model": "beta"},
                                      headers=auth(beta.key))
            assert revoked.status_code == 401 and "revoked" in revoked.text
            ok = await http.post(base + "/chat/completions", json=CHAT, headers=auth(alpha.key))
            assert ok.status_code == 200, ok.text
        with pytest.raises(openai.InternalServerError) as raised:
            await harness.client(alpha, key="sk-a3s-unknown").chat.completions.create(**CHAT)
        assert raised.value.status_code == 503 and raised.value.code == "store_unavailable"
        assert_no_driver_text(raised.value.message)
        assert outage.attempts >= 1
    finally:
        outage.end()
        outage.dead.dispose()


async def test_unknown_keys_cost_the_store_one_read_per_ttl(
    harness: Harness, outage: Outage
) -> None:
    alpha = harness.deploy("alpha", [await harness.replica(model="alpha")])
    await warm(harness, alpha)
    directory = harness.gateway.directory
    outage.start()
    await until(lambda: not directory.store_ok)
    before, started = outage.attempts, time.monotonic()
    n = 60
    async with httpx.AsyncClient(base_url=harness.base_url) as http:
        for i in range(n):
            resp = await http.post(f"/d/{alpha.namespace}/alpha/v1/chat/completions", json=CHAT,
                                   headers=auth(f"sk-a3s-random-{uuid.uuid4().hex}"))
            assert_store_unavailable(resp)
            if i % 10 == 9:
                await asyncio.sleep(0.2)  # let the ttl pass a few times
    elapsed = time.monotonic() - started
    reads = outage.attempts - before
    # One attempt per ttl at most (requests and the scraper's refreshes together), not n.
    assert 1 <= reads <= elapsed / directory.ttl_s + 2, (reads, elapsed)


async def test_one_warning_per_outage_and_one_line_when_the_store_is_back(
    harness: Harness, outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=DIRECTORY_LOG)
    alpha = harness.deploy("alpha", [await harness.replica(model="alpha")])
    await warm(harness, alpha)
    directory = harness.gateway.directory
    directory.ttl_s = 0.05  # many retries in little time
    async with httpx.AsyncClient(base_url=harness.base_url) as http:
        for _ in range(2):
            outage.start()
            goal = outage.attempts + 5
            while outage.attempts < goal:  # retries from requests (misses) and the scraper
                resp = await http.post("/v1/chat/completions", json=CHAT,
                                       headers=auth("sk-a3s-unknown"))
                assert resp.status_code in (401, 503)
                await asyncio.sleep(0.02)
            outage.end()
            await until(lambda: directory.store_ok)
    records = [r for r in caplog.records if r.name == DIRECTORY_LOG]
    assert [r.levelname for r in records] == ["WARNING", "INFO"] * 2
    # The operator's log has what the driver said; the clients never did.
    assert "unable to open database file" in records[0].getMessage()
    assert "reachable again" in records[1].getMessage()
    assert unretrieved(caplog) == []


async def test_a_revocation_in_this_process_is_not_undone_by_falling_back(
    harness: Harness, outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    """The key is revoked and invalidate() called, then the store cannot be read back: the
    last snapshot still has the key live, so nothing is served from it until the store is
    back (503 for every request, the revoked key's and the others')."""
    alpha = harness.deploy("alpha", [await harness.replica(model="alpha")])
    beta = harness.deploy("beta", [await harness.replica(model="beta")], namespace="team-b")
    await warm(harness, alpha, beta)
    directory = harness.gateway.directory
    outage.start()
    harness.revoke(alpha)  # committed (the harness's engine) and invalidate() called
    async with httpx.AsyncClient(base_url=harness.base_url) as http:
        for _ in range(3):
            for dep in (alpha, beta):
                resp = await http.post(
                    f"/d/{dep.namespace}/{dep.name}/v1/chat/completions",
                    json={**CHAT, "model": dep.name}, headers=auth(dep.key),
                )
                assert_store_unavailable(resp)
            await asyncio.sleep(0.2)
        assert not directory.store_ok
        assert alpha.replicas[0].hits["chat"] == 0
        # The scraper keeps its own view: the last snapshot, without failing its rounds.
        assert not [r for r in caplog.records if "scrape round failed" in r.getMessage()]

        outage.end()
        await until(lambda: directory.store_ok)
        refused = await http.post(f"/d/{alpha.namespace}/alpha/v1/chat/completions", json=CHAT,
                                  headers=auth(alpha.key))
        assert refused.status_code == 401 and "revoked" in refused.text
    answer = await harness.client(beta).chat.completions.create(**{**CHAT, "model": "beta"})
    assert answer.choices[0].message.content


async def test_changes_elsewhere_during_the_outage_wait_for_the_store(
    harness: Harness, outage: Outage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process revokes a key and creates a deployment while this gateway cannot read
    the store: the revoked key stays valid here until the store is back (then within the
    ttl); the new key is a 503, not a 401, until then. Back: both settle, and changes made
    here work at once."""
    alpha = harness.deploy("alpha", [await harness.replica(model="alpha")])
    await warm(harness, alpha)
    directory = harness.gateway.directory
    outage.start()
    await until(lambda: not directory.store_ok)
    monkeypatch.setattr(harness.gateway, "invalidate", lambda: None)  # no word reaches us
    harness.revoke(alpha)
    late = harness.deploy("late", [await harness.replica(model="late")])
    monkeypatch.undo()

    await asyncio.sleep(0.2)
    answer = await harness.client(alpha).chat.completions.create(**CHAT)
    assert answer.choices[0].message.content  # fail static: the last snapshot says live
    with pytest.raises(openai.InternalServerError) as raised:
        await harness.client(late).models.list()
    assert raised.value.code == "store_unavailable"

    outage.end()
    await until(lambda: directory.store_ok)
    assert [m.id async for m in harness.client(late).models.list()] == ["late"]
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        await harness.client(alpha).chat.completions.create(**CHAT)

    # Changes made in this process after the outage take effect at once.
    fresh = harness.deploy("fresh", [await harness.replica(model="fresh")])
    answer = await harness.client(fresh).chat.completions.create(**{**CHAT, "model": "fresh"})
    assert answer.choices[0].message.content
    harness.revoke(fresh)
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        await harness.client(fresh).chat.completions.create(**{**CHAT, "model": "fresh"})


async def test_a_store_that_does_not_answer_holds_a_request_at_most_wait_s(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A PostgreSQL server that accepts connections and never answers (hung, or its host
    behind a full backlog): the read hangs in the driver, which has no deadline of its own.
    Known keys do not wait for it; a request that needs the store waits `wait_s`, then 503."""
    alpha = harness.deploy("alpha", [await harness.replica(model="alpha")])
    await warm(harness, alpha)
    directory = harness.gateway.directory
    directory.wait_s = 1.0
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # connections complete in the kernel; nobody ever accepts them
    port = listener.getsockname()[1]
    outage = Outage(directory, create_engine(f"postgresql+psycopg://a3s:pw@127.0.0.1:{port}/a3s"))
    outage.start()
    try:
        await until(lambda: outage.attempts == 1)  # a background refresh, hanging now
        url = f"/d/{alpha.namespace}/alpha/v1/chat/completions"
        async with httpx.AsyncClient(base_url=harness.base_url) as http:
            started = time.monotonic()
            ok = await http.post(url, json=CHAT, headers=auth(alpha.key))
            assert ok.status_code == 200 and time.monotonic() - started < 0.5
            started = time.monotonic()
            assert_store_unavailable(await http.post(url, json=CHAT, headers=auth("sk-a3s-x")))
            assert 0.9 < time.monotonic() - started < 3.0
            assert not directory.store_ok
            started = time.monotonic()  # within the ttl of that: answered at once
            assert_store_unavailable(await http.post(url, json=CHAT, headers=auth("sk-a3s-y")))
            assert time.monotonic() - started < 0.5
        assert outage.attempts == 1  # still the one hanging read: no pile-up
        warnings = [r.getMessage() for r in caplog.records if r.name == DIRECTORY_LOG]
        assert len(warnings) == 1 and "no answer from the store in 1.0 s" in warnings[0]
    finally:
        listener.close()  # the queued connection is reset: the hung read fails now
        outage.end()
        await until(lambda: directory._refreshing is None)
        outage.dead.dispose()


@pytest.fixture
async def cold_gateway(tmp_path: Path) -> AsyncIterator[tuple[Gateway, str, Engine]]:
    """A gateway whose store is unreachable from the start (it never read a snapshot),
    with its scraper running; and the real store, for when it comes back."""
    real = make_engine(f"sqlite:///{tmp_path / 'a3s.db'}")
    SQLModel.metadata.create_all(real)
    dead = sqlite_down(tmp_path)
    gateway = Gateway(Settings(data_dir=tmp_path, scrape_interval_s=0.05, domain=None), dead,
                      make_plugins())
    await gateway.start()
    server, task = await serve(gateway.asgi())
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield gateway, f"http://127.0.0.1:{port}", real
    finally:
        server.should_exit = True
        await task
        await gateway.stop()
        real.dispose()
        dead.dispose()


async def test_no_snapshot_yet_is_503_until_the_store_answers(
    cold_gateway: tuple[Gateway, str, Engine], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gateway, base_url, real = cold_gateway
    caplog.set_level(logging.INFO, logger=DIRECTORY_LOG)
    h = Harness(gateway, real, base_url, gateway.settings)
    dep = h.deploy("alpha", ["http://127.0.0.1:9"])  # rows in the real store (not read yet)
    async with httpx.AsyncClient(base_url=base_url) as http:
        models = f"/d/{dep.namespace}/alpha/v1/models"
        for _ in range(5):
            assert_store_unavailable(await http.get(models, headers=auth(dep.key)))
            await asyncio.sleep(0.1)
        directory = gateway.directory
        stale = directory.stale_for_s
        assert directory.current is None and not directory.store_ok
        assert stale is not None and stale >= 0.3
        # The scraper ran meanwhile (an empty view), without a failed round each time.
        assert not [r for r in caplog.records if "scrape round failed" in r.getMessage()]

        directory._db = real  # the store is back
        await until(lambda: directory.store_ok)
        ok = await http.get(models, headers=auth(dep.key))
        assert ok.status_code == 200, ok.text
        assert ok.json()["data"][0]["id"] == "alpha"
    records = caplog.get_records("setup") + caplog.records  # the scraper read first
    assert [r.levelname for r in records if r.name == DIRECTORY_LOG] == ["WARNING", "INFO"]
    assert unretrieved(caplog) == []
