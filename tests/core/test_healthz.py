"""`GET /healthz`: liveness, with the gateway's view of the store beside it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine


def test_healthz_stays_200_and_reports_a_store_outage(make_app: Any, tmp_path: Path) -> None:
    client = make_app()
    body = client.get("/healthz", headers={"Authorization": ""}).json()
    assert body["status"] == "ok" and body["store"] == {"ok": True, "staleForS": None}

    platform = client.app.state.platform
    directory = platform.gateway.directory
    real = directory._db
    # A store that cannot be opened (its directory does not exist): a real failed read.
    directory._db = create_engine(f"sqlite:///{tmp_path / 'gone' / 'a3s.db'}")
    try:
        # A read the scraper began before the swap may still land (and say ok) after ours:
        # read again until the failure is what was recorded last.
        deadline = time.monotonic() + 10
        while True:
            directory.invalidate()  # the next read must reach the store
            client.portal.call(_read_once, directory)
            r = client.get("/healthz", headers={"Authorization": ""})
            assert r.status_code == 200  # live: the gateway serves from its last snapshot
            store = r.json()["store"]
            if store["ok"] is False or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert store["ok"] is False and store["staleForS"] >= 0
    finally:
        directory._db = real
    deadline = time.monotonic() + 10
    while not client.get("/healthz").json()["store"]["ok"]:  # the scraper reads it again
        assert time.monotonic() < deadline, "the store was not read again within 10 s"
        time.sleep(0.05)
    assert client.get("/healthz").json()["store"]["staleForS"] is None


async def _read_once(directory: Any) -> None:
    await directory.snapshot()  # lenient: a failed read is recorded, not raised
