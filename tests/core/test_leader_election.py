"""Leader election: several platform processes on one store, exactly one runs the controllers.

Two platforms in one test stand for two `a3s serve` processes: each has its own event loop
(TestClient), engine and identity, and they share one database (a SQLite file, or a
PostgreSQL schema). Lease settings are short; every wait polls up to a generous deadline.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from a3s_core.controller.leader import LEASE_NAME, LeaderElection
from a3s_core.platform import Platform
from a3s_core.store import Store
from a3s_core.store.leases import Leases

LEASE = {"lease_duration_s": 3.0, "lease_renew_interval_s": 0.25}
DEADLINE_S = 20.0
SMALL = {"models": [{"name": "q7", "model": "Qwen/Qwen2.5-7B-Instruct"}]}


def eventually(check: Callable[[], Any], what: str, timeout: float = DEADLINE_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


def platform_of(client: Any) -> Platform:
    p: Platform = client.app.state.platform
    return p


def elector(client: Any) -> LeaderElection:
    leader = platform_of(client).leader
    assert leader is not None
    return leader


def leading(*clients: Any) -> list[Any]:
    return [c for c in clients if elector(c).leading]


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings overrides putting both platforms on one database. SQLite: the default file
    in the shared data dir."""
    if request.param == "sqlite":
        return {}
    return {"database_url": request.getfixturevalue("pg_url")}


@pytest.fixture(params=["sqlite", "postgres"])
def two_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    url = (
        f"sqlite:///{tmp_path / 'a3s.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    a, b = Store.open(url), Store.open(url)
    yield a, b
    a.close()
    b.close()


# ---------------------------------------------------------------------- the lease in the store


def test_lease_is_taken_renewed_released_and_taken_over(two_stores: tuple[Store, Store]) -> None:
    a, b = Leases(two_stores[0]), Leases(two_stores[1])
    assert a.get(LEASE_NAME) is None
    first = a.acquire(LEASE_NAME, "a", 30)
    assert first.live_holder == "a" and first.transitions == 1
    assert b.acquire(LEASE_NAME, "b", 30).live_holder == "a"  # held: b loses
    renewed = a.acquire(LEASE_NAME, "a", 30)
    assert renewed.live_holder == "a" and renewed.transitions == 1
    assert renewed.acquired_at == first.acquired_at and renewed.renewed_at >= first.renewed_at
    assert not b.release(LEASE_NAME, "b")  # not b's to give up
    assert a.release(LEASE_NAME, "a")
    assert b.get(LEASE_NAME).live_holder is None  # type: ignore[union-attr]
    took = b.acquire(LEASE_NAME, "b", 30)
    assert took.live_holder == "b" and took.transitions == 2
    b.expire(LEASE_NAME)  # b vanished without releasing; its lease ran out
    assert a.get(LEASE_NAME).live_holder is None  # type: ignore[union-attr]
    again = a.acquire(LEASE_NAME, "a", 30)
    assert again.live_holder == "a" and again.transitions == 3


def test_racing_candidates_elect_exactly_one(two_stores: tuple[Store, Store]) -> None:
    stores = [Leases(two_stores[i % 2]) for i in range(8)]
    start = threading.Barrier(len(stores))

    def campaign(i: int) -> str | None:
        start.wait()
        return stores[i].acquire(LEASE_NAME, f"p{i}", 30).live_holder

    with ThreadPoolExecutor(len(stores)) as pool:
        seen = list(pool.map(campaign, range(len(stores))))
    assert len(set(seen)) == 1 and seen[0] is not None
    lease = stores[0].get(LEASE_NAME)
    assert lease is not None and lease.live_holder == seen[0] and lease.transitions == 1


# ---------------------------------------------------------------------- platforms


def test_two_platforms_exactly_one_leads_and_the_other_takes_over(
    make_app: Any, db: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="a3s.leader")
    a = make_app(**db, **LEASE)
    b = make_app(**db, **LEASE)
    assert leading(a, b) == [a]  # the first to start leads from its first moment
    assert len(platform_of(a)._tasks) == 2 and platform_of(b)._tasks == []
    for c in (a, b):
        system = c.get("/v1/system").json()["controllers"]
        assert system["leader"] == elector(a).identity
        assert system["leading"] is (c is a) and system["enabled"] is True
        assert system["term"] == 1 and system["expiresAt"]

    # The follower serves the API; the leader's loops do the work.
    dep = b.post("/v1/deployments", json=SMALL).json()["deployments"][0]
    eventually(
        lambda: b.get(f"/v1/deployments/{dep['id']}").json()["status"] == "running",
        "the leader runs a deployment posted to the follower",
    )
    assert leading(a, b) == [a] and platform_of(b)._tasks == []

    # A leader that shuts down releases the lease: the other takes over on its next try,
    # without waiting for the lease to expire.
    a_id = elector(a).identity
    a.__exit__(None, None, None)
    eventually(lambda: elector(b).leading, "the follower takes over")
    assert len(platform_of(b)._tasks) == 2
    system = b.get("/v1/system").json()["controllers"]
    assert system["leader"] == elector(b).identity and system["leading"] is True
    assert system["term"] == 2
    lines = [r.getMessage() for r in caplog.records if r.name == "a3s.leader"]
    assert any(f"{a_id} released" in line for line in lines), lines
    assert any(f"{elector(b).identity} now leads" in line for line in lines), lines


def test_expired_lease_of_a_vanished_leader_is_taken_over(
    make_app: Any, db: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="a3s.leader")
    # A process that was killed holds the lease and never renews or releases it.
    store = platform_of(make_app(controllers=False, **db)).store
    Leases(store).acquire(LEASE_NAME, "killed-process", 5.0)
    b = make_app(**db, **LEASE)
    assert not elector(b).leading and platform_of(b)._tasks == []
    assert b.get("/v1/system").json()["controllers"]["leader"] == "killed-process"
    eventually(lambda: elector(b).leading, "the expired lease is taken over")
    system = b.get("/v1/system").json()["controllers"]
    assert system["leader"] == elector(b).identity and system["term"] == 2
    lines = [r.getMessage() for r in caplog.records if r.name == "a3s.leader"]
    assert any("taking over from killed-process" in line for line in lines), lines


class Recorder:
    """Wraps an elector's callbacks, recording the order of loop starts and stops."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.lock = threading.Lock()

    def wrap(self, leader: LeaderElection, tag: str) -> None:
        def record(fn: Callable[[], Awaitable[None]], what: str) -> Callable[[], Awaitable[None]]:
            async def wrapped() -> None:
                await fn()
                with self.lock:
                    self.order.append(f"{tag} {what}")

            return wrapped

        leader._on_elected = record(leader._on_elected, "started")
        leader._on_deposed = record(leader._on_deposed, "stopped")


@pytest.mark.parametrize("failure", ["error", "hang"])
def test_leader_that_cannot_renew_steps_down_before_another_takes_over(
    make_app: Any, db: dict[str, Any], failure: str
) -> None:
    a = make_app(**db, **LEASE)
    b = make_app(**db, **LEASE)
    assert leading(a, b) == [a]
    rec = Recorder()
    rec.wrap(elector(a), "a")
    rec.wrap(elector(b), "b")
    unblock = threading.Event()

    def broken(*_: Any) -> Any:
        if failure == "hang":  # the database stopped answering this process
            unblock.wait(DEADLINE_S)
        raise OperationalError("UPDATE leases", {}, Exception("connection refused"))

    elector(a).leases.acquire = broken  # type: ignore[method-assign]
    try:
        eventually(lambda: not elector(a).leading, "the leader steps down")
        eventually(lambda: elector(b).leading, "the other takes over once the lease expires")
        assert platform_of(a)._tasks == [] and platform_of(a).autoscaler is None
        assert rec.order == ["a stopped", "b started"]  # never two leaders at once
        assert leading(a, b) == [b]
        assert a.get("/v1/system").json()["controllers"]["leader"] == elector(b).identity
    finally:
        unblock.set()


def test_controllers_false_never_campaigns(make_app: Any, db: dict[str, Any]) -> None:
    quiet = make_app(controllers=False, **db, **LEASE)
    assert platform_of(quiet).leader is None and platform_of(quiet)._tasks == []
    system = quiet.get("/v1/system").json()["controllers"]
    assert system == {
        **system,
        "enabled": False,
        "identity": None,
        "leading": False,
        "leader": None,
    }
    lead = make_app(**db, **LEASE)
    assert elector(lead).leading  # the quiet one never took the lease
    assert quiet.get("/v1/system").json()["controllers"]["leader"] == elector(lead).identity
    metrics = quiet.get("/metrics").text
    assert "a3s_controller_leader 0.0" in metrics
    assert "a3s_controller_leader 1.0" in lead.get("/metrics").text


def test_lease_settings_must_leave_time_to_step_down() -> None:
    from pydantic import ValidationError

    from a3s_core.settings import Settings

    with pytest.raises(ValidationError, match="at most half"):
        Settings(lease_duration_s=10, lease_renew_interval_s=6)
    s = Settings(lease_duration_s=10, lease_renew_interval_s=5)
    assert (s.lease_duration_s, s.lease_renew_interval_s) == (10, 5)
