"""Taking replicas away: failures (with back-off), draining on scale-down, deletion."""

from __future__ import annotations

from datetime import timedelta

from starlette.concurrency import run_in_threadpool

from a3s_core.controller.common import ControllerBase, aware, now
from a3s_core.store import DeploymentRow, ReplicaRow

DRAIN_TIMEOUT = timedelta(seconds=60)


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
            if await run_in_threadpool(
                self.store.transition, dep.id, status="failed", reason=reason, failures=failures
            ):
                self.emit(dep, "deployment.failed", f"{dep.name} failed: {reason}", level="error")
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
        in_flight = self.p.gateway.in_flight(r.id) if self.p.gateway else 0
        started = aware(r.updated_at) or now()
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
