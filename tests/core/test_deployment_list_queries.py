"""`GET /v1/deployments` reads the store a fixed number of times however many deployments
it lists: their replicas and every gateway's traffic in one query each, not one per
deployment (the per-deployment traffic read added an N+1 to the list)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from api_fuzz_kit import model
from sqlalchemy import event


def queries_for_list(client: Any) -> int:
    """Statements one GET /v1/deployments runs: the fewest of three (nothing else should
    run with the controllers off, but a background read would only add)."""
    engine = client.app.state.platform.store.engine
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine, "before_cursor_execute", count)
    try:
        counts = []
        for _ in range(3):
            seen.clear()
            r = client.get("/v1/deployments")
            assert r.status_code == 200, r.text
            counts.append(len(seen))
            time.sleep(0.05)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return min(counts)


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_listing_ten_deployments_costs_what_listing_one_does(
    make_app: Any, request: pytest.FixtureRequest, db: str
) -> None:
    extra = {"database_url": request.getfixturevalue("pg_url")} if db == "postgres" else {}
    client = make_app(controllers=False, **extra)
    r = client.post("/v1/deployments", json={"models": [model(name="m0")]})
    assert r.status_code == 202, r.text
    one = queries_for_list(client)
    for i in range(1, 10):
        r = client.post("/v1/deployments", json={"models": [model(name=f"m{i}")]})
        assert r.status_code == 202, r.text
    assert queries_for_list(client) == one
    listed = client.get("/v1/deployments").json()
    assert len(listed) == 10
    assert all(d["stats"] is not None for d in listed)  # the figures are still there
    # recent_events=0 meant every event (`events[-0:]`): the list carries none.
    assert all(d["recentEvents"] == [] for d in listed)
