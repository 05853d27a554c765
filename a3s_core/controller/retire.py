"""Taking replicas away: failures (with back-off), draining on scale-down, deletion."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool

from a3s_core.controller.common import ControllerBase, aware, now
from a3s_core.store import DeploymentRow, ReplicaRow

DRAIN_TIMEOUT = timedelta(seconds=60)
FAILED_RETRY_MAX_S = 3600.0


def failed_backoff(first_s: float | None, past_limit: int) -> float | None:
    """Seconds before a failed deployment is tried again: `first_s`, doubling for each
    failure past the limit, at most an hour. None: failed deployments are not retried."""
    if first_s is None:
        return None
    return min(FAILED_RETRY_MAX_S, first_s * 2.0 ** max(0, past_limit))


class Retiring(ControllerBase):
    async def _replica_failed(self, dep: DeploymentRow, r: ReplicaRow, why: str) -> None:
        tail = await self._log_tail(r.id)
        await self.p.runtime.delete_replica(r.id)
        await run_in_threadpool(self.store.remove_replica, r.id)
        self._invalidate()
        fresh = await run_in_threadpool(self.store.get_deployment, dep.id)
        failures = fresh.failures + 1
        self.emit(
            dep,
            "replica.failed",
            f"{dep.name}: replica {r.id} on {r.node} failed: {why}",
            level="error",
            data={"replica": r.id, "node": r.node, "failures": failures, "logTail": tail},
        )
        if failures >= self.p.settings.max_restarts:
            reason = f"replica failed {failures} times in a row; last: {why}" + (
                f"; last log lines: {' | '.join(tail[-5:])}" if tail else ""
            )
            await self._fail(dep, reason, failures=failures, retry=True)
            return
        backoff = min(60.0, 2.0 ** (failures - 1))
        await run_in_threadpool(
            self.store.transition,
            dep.id,
            failures=failures,
            retry_at=now() + timedelta(seconds=backoff),
        )
        self.emit(
            dep,
            "replica.restarting",
            f"{dep.name}: replacing replica {r.id} in {backoff:.0f}s "
            f"(failure {failures} of {self.p.settings.max_restarts})",
            level="warning",
            data={"backoffSeconds": backoff},
        )

    async def _replica_lost(
        self, dep: DeploymentRow, r: ReplicaRow, why: str | None = None
    ) -> None:
        """The runtime no longer reports the replica at all, or (`why`) reports it lost: its
        node is gone or NotReady. Not an engine failure: that is what a platform restart or
        failover, a dead node, or someone removing it outside A3S looks like. It is deleted
        (best effort, so it does not return as a duplicate), replaced at once and not
        counted toward max_restarts."""
        await self.p.runtime.delete_replica(r.id)  # in case it is only hidden from us
        await run_in_threadpool(self.store.remove_replica, r.id)
        self._invalidate()
        cause = why or f"is no longer reported by the runtime ({self.p.runtime.name})"
        data: dict[str, Any] = {"replica": r.id, "node": r.node}
        if why:
            data["reason"] = why
        self.emit(
            dep,
            "replica.lost",
            f"{dep.name}: replica {r.id} on {r.node} {'is lost: ' if why else ''}{cause}; "
            "replacing it (not counted as an engine failure)",
            level="warning",
            data=data,
        )

    async def _fail(
        self,
        dep: DeploymentRow,
        reason: str,
        *,
        retry: bool,
        failures: int | None = None,
        step: str | None = None,
    ) -> None:
        """Mark the deployment `failed`. With `retry` (the cause may clear: crashing
        engines, an unreachable runtime or hub), it is tried again after a back-off that
        doubles with each failure past `max_restarts`, and says when."""
        fresh = await run_in_threadpool(self.store.get_deployment, dep.id)
        limit = self.p.settings.max_restarts
        count = failures if failures is not None else max(fresh.failures + 1, limit)
        fields: dict[str, Any] = {"status": "failed", "failures": count, "retry_at": None}
        data: dict[str, Any] = {"reason": reason, "retryAt": None, "retryInSeconds": None}
        if step:
            data["step"] = step
        message = f"{dep.name} failed: {reason}"
        wait = failed_backoff(self.p.settings.failed_retry_s, count - limit)
        if retry and wait is not None:
            at = now() + timedelta(seconds=wait)
            fields["retry_at"] = at
            data |= {"retryAt": at.isoformat(), "retryInSeconds": wait}
            message += f"; trying again at {at:%H:%M:%S} UTC (in {wait:.0f}s)"
        if await run_in_threadpool(self.store.transition, dep.id, reason=reason, **fields):
            self.emit(dep, "deployment.failed", message, level="error", data=data)

    async def _retry_failed(self, dep: DeploymentRow) -> DeploymentRow | None:
        """A failed deployment whose retry time has come starts over from where it
        failed (sizing if it never got a plan). The failure count is kept, so failing
        again fails at once with a longer wait, until it runs stably (then it is 0)."""
        row = await run_in_threadpool(
            self.store.transition, dep.id, status="scheduling", retry_at=None
        )
        if row is None:
            return None
        self.emit(
            dep,
            "deployment.retrying",
            f"{dep.name}: trying again after failing ({dep.reason})",
            level="warning",
            data={"failures": row.failures, "lastReason": dep.reason},
        )
        return row

    async def _log_tail(self, replica_id: str, n: int = 20) -> list[str]:
        lines: list[str] = []
        try:
            async for line in self.p.runtime.logs(replica_id, tail=n, follow=False):
                lines.append(line.line)
        except Exception:  # logs are a courtesy; the failure itself is what matters
            pass
        return lines[-n:]

    # ------------------------------------------------------------------ scale up

    async def _start_drain(self, dep: DeploymentRow, live: list[ReplicaRow], n: int) -> None:
        # Not-ready replicas go first (they serve nothing), then the newest.
        victims = sorted(
            live,
            key=lambda r: (r.state == "ready", -(aware(r.created_at) or now()).timestamp()),
        )
        for r in victims[:n]:
            await self._set(r, state="draining")
            live.remove(r)
            self._invalidate()
            self.emit(
                dep,
                "replica.draining",
                f"{dep.name}: draining replica {r.id}; in-flight requests finish first",
                data={"replica": r.id},
            )

    async def _finish_drain(self, dep: DeploymentRow, r: ReplicaRow) -> bool:
        """Stop a draining replica once no gateway has a request in flight on it: this
        process's own (all its workers), and every other gateway's as last published
        (fleet.py), once each live one has published since the drain reached it."""
        in_flight = self.p.gateway.in_flight(r.id) if self.p.gateway else 0
        started = aware(r.updated_at) or now()
        fleet = self.p.fleet
        if not in_flight and fleet is not None:
            seen = await run_in_threadpool(fleet.read, dep.id)
            draining_for = (now() - started).total_seconds()
            in_flight = seen.in_flight.get(r.id, 0) or int(seen.settling(draining_for))
        if in_flight and now() - started < DRAIN_TIMEOUT:
            return False
        await self._stop(dep, r, "scaled down")
        return True

    async def _stop(self, dep: DeploymentRow, r: ReplicaRow, why: str) -> None:
        await self.p.runtime.delete_replica(r.id)
        await run_in_threadpool(self.store.remove_replica, r.id)
        self._invalidate()
        self.emit(
            dep,
            "replica.stopped",
            f"{dep.name}: replica {r.id} stopped ({why}); GPUs {r.gpu_indices} on {r.node} freed",
            data={"replica": r.id},
        )

    async def _teardown(self, dep: DeploymentRow, replicas: list[ReplicaRow]) -> None:
        for r in replicas:
            await self._stop(dep, r, "deployment deleted")
        await run_in_threadpool(self.store.update_deployment, dep.id, status="deleted")
        self.emit(
            dep,
            "deployment.deleted",
            f"{dep.name} deleted: {len(replicas)} replica(s) stopped, keys revoked",
        )

    # ------------------------------------------------------------------ status
