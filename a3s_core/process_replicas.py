"""Replica bookkeeping on top of the process supervisor (`a3s_core.procs`), shared by the
runtimes that run each replica as a local process (`sim`, `local`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from a3s_core.errors import NotFound
from a3s_core.proc_record import ProcessRecord
from a3s_core.proc_recorded import recorded_lines
from a3s_core.procs import ManagedProcess, ProcessSupervisor, free_port
from a3s_core.types import LogLine, ReplicaObservation, ReplicaRequest

log = logging.getLogger(__name__)


class ProcessReplicas:
    """Replica bookkeeping for runtimes that run each replica as a local process (`sim`,
    `local`): start from a ReplicaRequest, observe (exit → failed, health → ready), logs,
    delete, ports, adoption. Restarting is the controller's job, never done here.

    A replica that was ready and then fails `unhealthy_after` health checks in a row is
    reported `unknown` (alive but not answering), so the gateway stops routing to it.
    """

    def __init__(
        self,
        state_dir: str | Path,
        health_timeout: float = 2.0,
        unhealthy_after: int = 3,
        stop_timeout: float = 10.0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.supervisor = ProcessSupervisor(state_dir)
        self.health_timeout = health_timeout
        self.unhealthy_after = unhealthy_after
        self.stop_timeout = stop_timeout
        self._reserved: dict[int, float] = {}

    def adopt(self) -> list[str]:
        """Replicas another platform process started (alive or not) and not yet known here;
        their ids. Cheap (one directory listing), so `observe` calls it every pass: with a
        state dir shared by several platform processes, a new leader sees every replica the
        old one started. A replica seen ready before (by any process) counts as ready from
        the start, so one slow health check after a take-over does not stop its traffic."""
        adopted = self.supervisor.adopt_all()
        for proc in adopted:
            seen = proc.meta.get("ready_at")
            if proc.ready_since is None and isinstance(seen, str):
                with contextlib.suppress(ValueError):
                    proc.ready_since = datetime.fromisoformat(seen)
        return [p.name for p in adopted]

    async def release(self) -> None:
        """Stop tailing and forget every process here (records, logs and processes stay):
        this platform process no longer leads, and another one tails the shared files."""
        await self.supervisor.close()
        self.supervisor = ProcessSupervisor(self.state_dir)

    def get(self, replica_id: str) -> ManagedProcess | None:
        return self.supervisor.get(replica_id)

    def reserve_port(self, host: str = "127.0.0.1") -> int:
        """A free port no replica of ours uses and none reserved in the last minute."""
        now = time.monotonic()
        self._reserved = {p: t for p, t in self._reserved.items() if now - t < 60.0}
        used = {int(p.meta.get("port", 0)) for p in self.supervisor.processes()}
        port = free_port(host, avoid=used | set(self._reserved))
        self._reserved[port] = now
        return port

    def start(
        self,
        request: ReplicaRequest,
        argv: list[str],
        env: Mapping[str, str],
        url: str,
        health_url: str,
        extra_meta: Mapping[str, Any] | None = None,
    ) -> ManagedProcess:
        meta = {
            "replica_id": request.replica_id,
            "deployment_id": request.deployment_id,
            "deployment_name": request.deployment_name,
            "namespace": request.namespace,
            "engine": request.engine,
            "node": request.placement.node,
            "gpu": request.placement.gpu,
            "gpu_indices": list(request.placement.gpu_indices),
            "port": request.port,
            "url": url,
            "health_url": health_url,
            "labels": dict(request.labels),
            **(extra_meta or {}),
        }
        # A finished run under the same id is replaced by the supervisor; a running one,
        # or one whose workers still live, is refused there (its record stays).
        proc = self.supervisor.start(request.replica_id, argv, env=env, meta=meta)
        self._reserved.pop(request.port, None)
        return proc

    async def observe(self) -> list[ReplicaObservation]:
        self.adopt()
        procs = self.supervisor.processes()
        return list(await asyncio.gather(*(self.observation(p) for p in procs)))

    async def observation(self, proc: ManagedProcess) -> ReplicaObservation:
        meta = proc.meta
        base = {
            "replica_id": proc.name,
            "deployment_id": str(meta.get("deployment_id", "")),
            "url": meta.get("url"),
            "node": meta.get("node"),
            "gpu_indices": list(meta.get("gpu_indices", [])),
        }
        status = proc.poll()
        if status is not None:
            message = f"{meta.get('engine', 'engine')} process {proc.exit_summary()}"
            return ReplicaObservation(**base, state="failed", message=message, since=status.at)
        health_url = str(meta.get("health_url", ""))
        ok = await proc.check_http(health_url, self.health_timeout) if health_url else True
        if proc.ready_since is None and ok:
            proc.ready_since = datetime.now(UTC)
        if ok and "ready_at" not in meta and proc.ready_since is not None:
            # Recorded once, so the next leader knows this replica has served.
            with contextlib.suppress(OSError, KeyError):
                self.supervisor.update_meta(proc.name, ready_at=proc.ready_since.isoformat())
        if ok:
            return ReplicaObservation(**base, state="ready", since=proc.ready_since)
        if proc.ready_since is None:
            message = f"waiting for {health_url}: {proc.last_health_error}"
            return ReplicaObservation(
                **base, state="starting", message=message, since=proc.record.started_at
            )
        if proc.health_failures < self.unhealthy_after:
            return ReplicaObservation(**base, state="ready", since=proc.ready_since)
        message = (
            f"process alive but {proc.health_failures} health checks of {health_url} "
            f"failed in a row: {proc.last_health_error}"
        )
        return ReplicaObservation(**base, state="unknown", message=message, since=proc.ready_since)

    async def delete(self, replica_id: str) -> None:
        await self.supervisor.stop(replica_id, self.stop_timeout)

    async def logs(
        self, replica_id: str, tail: int = 100, follow: bool = False
    ) -> AsyncIterator[LogLine]:
        proc = self.supervisor.get(replica_id)
        if proc is None:
            if not (self.state_dir / f"{replica_id}.json").is_file():
                raise NotFound(f"replica {replica_id!r} is not known to this runtime")
            # Another platform process (the leader) tails it: read what it recorded.
            async for line in recorded_lines(self.state_dir, replica_id, tail, follow):
                yield line
            return
        async for item in proc.follow(tail, follow):
            yield LogLine(replica_id=replica_id, ts=item.ts, line=item.line)

    def allocations(self) -> dict[tuple[str, int], str]:
        """(node, GPU index) → replica id, for every replica still on record: those this
        process supervises and, on a follower, those the leader does."""
        held: dict[tuple[str, int], str] = {}
        owners = [(p.name, p.meta) for p in self.supervisor.processes()]
        owners += [(r.name, r.meta) for r in self.recorded_elsewhere()]
        for name, meta in owners:
            for index in meta.get("gpu_indices", []):
                held[(str(meta.get("node")), int(index))] = name
        return held

    def recorded_elsewhere(self) -> list[ProcessRecord]:
        """Records in the state dir of processes this one does not supervise (a
        follower's view of what the leader runs): read, never adopted."""
        out: list[ProcessRecord] = []
        for path in sorted(self.state_dir.glob("*.json")):
            if self.supervisor.get(path.stem) is not None:
                continue
            with contextlib.suppress(OSError, ValueError):
                out.append(ProcessRecord.model_validate_json(path.read_bytes()))
        return out

    def has_ended(self, name: str) -> bool:
        """The process's exit is recorded (by the wrapper every process runs under)."""
        return (self.state_dir / "logs" / f"{name}.exit").is_file()

    async def close(self, stop: bool = False) -> None:
        await self.supervisor.close(stop_processes=stop, timeout=self.stop_timeout)
