"""Leader election: of the platform processes sharing one store, one runs the controllers.

Every process with controllers on campaigns for the `controllers` lease in the store
(`a3s_core.store.leases`). The holder renews it every `renew_s`; the others try to take it
at the same pace, or as soon as the lease they saw expires. While this process holds the
lease, `on_elected` has started its loops; when it loses the lease, or cannot renew it in
time, `on_deposed` stops them; `stop()` stops them and releases the lease, so another
process takes over on its next try instead of waiting for the lease to expire.

Safety margin: a renewal that *starts* at local time t keeps the lease until at least
t + duration in the database's time, so the leader counts from the start of its last
successful renewal and steps down at t + ¾ duration, a quarter of the lease before any
other process can see it expired. A renewal that hangs (an unreachable database) is not
waited for past that point. With the defaults (15 s, renewed every 5 s) a leader gets two
more tries after a failed renewal and stops at 11.25 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from a3s_core.store import Store
from a3s_core.store.leases import Lease, Leases

log = logging.getLogger("a3s.leader")

LEASE_NAME = "controllers"
MIN_DELAY_S = 0.02
STEP_DOWN_AT = 0.75  # of the lease duration after the last renewal began


def default_identity() -> str:
    """host-pid-random: readable in `GET /v1/system`, unique even for two platforms in one
    process (tests)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class LeaderElection:
    def __init__(
        self,
        store: Store,
        *,
        on_elected: Callable[[], Awaitable[None]],
        on_deposed: Callable[[], Awaitable[None]],
        duration_s: float = 15.0,
        renew_s: float = 5.0,
        identity: str | None = None,
        name: str = LEASE_NAME,
    ) -> None:
        self.leases = Leases(store)
        self.identity = identity or default_identity()
        self.name = name
        self.duration_s = duration_s
        self.renew_s = min(renew_s, duration_s / 2)
        self.leading = False
        self.lease: Lease | None = None  # the last one read
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self._valid_until = 0.0  # monotonic: step down at this point without a renewal
        self._inflight: asyncio.Future[Lease] | None = None
        self._inflight_started = 0.0
        self._task: asyncio.Task[None] | None = None
        self._seen_leader: str | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """One try now (a lone process leads from its first moment), then campaign. The
        first try may take as long as a lease stays safe to rely on: at start-up the store
        connection is new (PostgreSQL: connect and pre-ping), often slower than `renew_s`."""
        await self.attempt(timeout_s=self.duration_s * STEP_DOWN_AT)
        self._task = asyncio.create_task(self._campaign(), name="a3s-leader-election")

    async def stop(self) -> None:
        """Stop campaigning; stop the loops and release the lease if this process leads."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._inflight is not None:  # a renewal landing after the release would re-take it
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._inflight), self.renew_s)
        was_leading = self.leading
        if self.leading:
            await self._step_down("shutting down", level=logging.INFO)
        try:
            released = await asyncio.wait_for(
                asyncio.to_thread(self.leases.release, self.name, self.identity), self.renew_s
            )
        except Exception as exc:
            log.warning(
                "leader: %s could not release the lease (%s); it expires on its own",
                self.identity,
                exc,
            )
            return
        if released or was_leading:
            log.info("leader: %s released the %s lease", self.identity, self.name)

    async def _campaign(self) -> None:
        while True:
            await asyncio.sleep(self._next_delay())
            try:
                await self.attempt()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the campaign die: it is what stops a stale leader
                log.exception("leader: election step failed")

    def _next_delay(self) -> float:
        due = self._inflight_started + self.renew_s
        if self.leading:  # wake up to step down in time even if renewals fail fast
            due = min(due, self._valid_until)
        lease = self.lease
        if not self.leading and lease is not None and lease.live_holder is not None:
            # the lease we saw ends before our next regular try: try just after it ends
            ends = self._inflight_started + (lease.expires_at - lease.now).total_seconds()
            due = min(due, ends + MIN_DELAY_S)
        return max(MIN_DELAY_S, due - time.monotonic())

    # ------------------------------------------------------------------ one try

    async def attempt(self, timeout_s: float | None = None) -> None:
        """Take or renew the lease once, and start or stop the loops to match. Waits at
        most `timeout_s` (default `renew_s`) for the store's answer."""
        if self._inflight is None or self._inflight.done():
            self._inflight_started = time.monotonic()
            self._inflight = asyncio.ensure_future(
                asyncio.to_thread(self.leases.acquire, self.name, self.identity, self.duration_s)
            )
        started = self._inflight_started
        timeout = self.renew_s if timeout_s is None else timeout_s
        if self.leading:
            timeout = min(timeout, self._valid_until - time.monotonic())
        try:
            if timeout <= 0:
                raise TimeoutError
            lease = await asyncio.wait_for(asyncio.shield(self._inflight), timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            why = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            if self.leading and time.monotonic() >= self._valid_until:
                await self._step_down(f"could not renew the lease in time ({why})")
            elif self.leading:
                log.warning(
                    "leader: %s could not renew the lease (%s); retrying", self.identity, why
                )
            else:
                log.debug("leader: %s could not read the lease: %s", self.identity, why)
            return
        self.lease = lease
        holder = lease.live_holder
        if holder == self.identity:
            self._valid_until = started + self.duration_s * STEP_DOWN_AT
            if time.monotonic() >= self._valid_until:  # answered too late to lead on
                if self.leading:
                    await self._step_down("the lease was renewed too late to rely on")
                return
            if not self.leading:
                await self._elected(lease)
        elif self.leading:
            await self._step_down(f"the lease is held by {holder or 'nobody'}")
        if holder != self._seen_leader:
            if holder not in (None, self.identity):
                log.info(
                    "leader: the controllers are led by %s (term %d)", holder, lease.transitions
                )
            self._seen_leader = holder

    async def _elected(self, lease: Lease) -> None:
        before = self._seen_leader
        took = f", taking over from {before}" if before and before != self.identity else ""
        log.info(
            "leader: %s now leads the controllers (term %d%s)",
            self.identity,
            lease.transitions,
            took,
        )
        self.leading = True
        await self._on_elected()

    async def _step_down(self, reason: str, level: int = logging.WARNING) -> None:
        log.log(level, "leader: %s stops leading the controllers: %s", self.identity, reason)
        self.leading = False
        self._seen_leader = None
        await self._on_deposed()


def lease_view(lease: Lease | None) -> dict[str, Any]:
    """The lease for the API: who holds it now (None once released or expired) and since
    when; `term` counts the times it changed hands."""
    live = lease is not None and lease.live_holder is not None
    return {
        "leader": lease.live_holder if lease else None,
        "term": lease.transitions if lease else 0,
        "acquiredAt": lease.acquired_at.isoformat() if lease and live else None,
        "renewedAt": lease.renewed_at.isoformat() if lease and live else None,
        "expiresAt": lease.expires_at.isoformat() if lease and live else None,
    }
