"""The disconnect watchers of requests waiting on a replica (proxy.py): started once a
request has waited WATCH_AFTER_S, on one timer for all requests; closed ones never start
and keep nothing of their request alive."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from typing import Any

from a3s_core.gateway.proxy import WATCH_AFTER_S, DisconnectWatch, Watches


class Client:
    """An ASGI receive() whose client leaves when told."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()
        self.waiting_since: float | None = None

    async def __call__(self) -> dict[str, Any]:
        self.waiting_since = time.monotonic()
        await self.gone.wait()
        return {"type": "http.disconnect"}


async def test_a_request_that_waits_is_watched_and_cancelled_when_its_client_leaves() -> None:
    watches = Watches()
    client = Client()
    watch: list[DisconnectWatch] = []

    async def request() -> str:
        w = DisconnectWatch(client)
        watch.append(w)
        watches.add(w)
        try:
            await asyncio.sleep(30)  # waiting on a replica
            return "answered"
        except asyncio.CancelledError:
            return "client left" if w.left else "cancelled"
        finally:
            w.close()

    started = time.monotonic()
    task = asyncio.ensure_future(request())
    await asyncio.sleep(WATCH_AFTER_S / 2)
    assert client.waiting_since is None  # not watched yet: most answers come sooner
    while client.waiting_since is None:
        await asyncio.sleep(0.01)
    assert WATCH_AFTER_S <= client.waiting_since - started <= WATCH_AFTER_S + 0.5
    client.gone.set()
    assert await asyncio.wait_for(task, 5) == "client left"


async def test_many_requests_share_one_timer_and_each_is_watched_in_time() -> None:
    watches = Watches()
    clients = [Client() for _ in range(20)]
    ws = []
    for c in clients:
        w = DisconnectWatch(c)
        watches.add(w)
        ws.append(w)
        await asyncio.sleep(0.01)
    deadline = time.monotonic() + 5
    while any(c.waiting_since is None for c in clients):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    for w in ws:
        w.close()
    await asyncio.sleep(0)
    assert len(watches) == 0


async def test_closed_watches_never_start_and_hold_nothing() -> None:
    watches = Watches()
    client = Client()
    ref = weakref.ref(client)
    w = DisconnectWatch(client)
    watches.add(w)
    assert len(watches) == 1
    w.close()  # answered quickly
    # It leaves at once: a finished request's objects are not held until the next sweep
    # (where the garbage collector's older generations would walk them again).
    assert len(watches) == 0
    del client
    gc.collect()
    assert ref() is None  # the request's receive() is not kept for the sweep
    await asyncio.sleep(WATCH_AFTER_S + 0.2)
    assert len(watches) == 0 and not w.left


async def test_nothing_to_watch_without_receive() -> None:
    watches = Watches()
    watches.add(DisconnectWatch(None))
    assert len(watches) == 0
