"""The deployment controller: a level-triggered loop that makes the runtime match the store.

Every tick reads desired state (deployments, replicas, GPU bookings) from the store and
what the runtime observes, then acts on the difference. Nothing lives only in memory, so a
restarted platform adopts running replicas and carries on where the last one stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool

from a3s_core.controller import launch
from a3s_core.controller.common import aware, now
from a3s_core.controller.placement import place, preview
from a3s_core.controller.retire import Retiring
from a3s_core.errors import A3SError, ModelUnavailable, RuntimeUnavailable, Unschedulable
from a3s_core.events.tracing import step
from a3s_core.platform import Platform
from a3s_core.store import DeploymentRow, ReplicaRow, new_id
from a3s_core.types import DeploymentRequest, ModelSpec, Node, ReplicaObservation, SizingPlan

log = logging.getLogger("a3s.controller")

LIVE = ("starting", "ready")
FAST_INTERVAL_S = 0.1
STABLE_AFTER = timedelta(seconds=120)  # ready this long → earlier failures are forgiven


@dataclass
class Tick:
    """What one reconcile pass knows about the cluster; bookings made in the pass update it."""

    observed: dict[str, ReplicaObservation]
    nodes: list[Node] | None = None
    allocations: dict[str, dict[int, str]] = field(default_factory=dict)


class Controller(Retiring):
    def __init__(self, platform: Platform) -> None:
        super().__init__(platform)
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()
        self._busy = False
        self.term_started = now()  # one Controller per term of leadership

    # ------------------------------------------------------------------ loop

    def _interval(self) -> float:
        """Look again soon while replicas are starting (readiness is only seen by
        observing), at the configured pace otherwise."""
        base = self.p.settings.reconcile_interval_s
        return min(base, FAST_INTERVAL_S) if self._busy else base

    def wake(self) -> None:
        """Ask for a pass now (safe from any thread)."""
        if self._wake is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        while True:
            try:
                await self.reconcile_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconcile pass failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval())
            self._wake.clear()

    async def reconcile_once(self) -> None:
        async with self._lock:
            observed = {o.replica_id: o for o in await self.p.runtime.observe()}
            tick = Tick(observed=observed)
            deployments = await run_in_threadpool(self.store.list_deployments)
            rows = await run_in_threadpool(self.store.replicas)
            self._busy = any(r.state == "starting" for r in rows) or any(
                d.status in ("pending", "deleting") for d in deployments
            )
            by_dep: dict[str, list[ReplicaRow]] = defaultdict(list)
            for r in rows:
                by_dep[r.deployment_id].append(r)
            known = {r.id for r in rows}
            for rid, obs in observed.items():  # started by us, but the store forgot it
                if rid not in known:
                    log.warning("removing orphan replica %s (%s)", rid, obs.deployment_id)
                    await self.p.runtime.delete_replica(rid)
            for dep in deployments:  # arrival order: earlier deployments choose first
                try:
                    await self._reconcile(dep, by_dep.get(dep.id, []), tick)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.exception("reconciling %s failed", dep.id)
                    self.emit(
                        dep,
                        "deployment.error",
                        f"{dep.name}: controller error: {exc}",
                        level="error",
                    )

    # ------------------------------------------------------------------ one deployment

    async def _reconcile(self, dep: DeploymentRow, replicas: list[ReplicaRow], tick: Tick) -> None:
        if dep.status == "deleting":
            await self._teardown(dep, replicas)
            return
        if dep.status == "deleted":
            return
        if dep.status == "failed":
            retry_at = aware(dep.retry_at)
            if retry_at is None or now() < retry_at:
                return
            retried = await self._retry_failed(dep)
            if retried is None:
                return
            dep = retried
        plan = await self._ensure_plan(dep)
        if plan is None:
            return
        replicas = await self._sync(dep, replicas, tick)
        dep = await run_in_threadpool(self.store.get_deployment, dep.id)
        if dep.status in ("failed", "deleting", "deleted"):
            return
        live = [r for r in replicas if r.state in LIVE]
        retry_at = aware(dep.retry_at)
        if len(live) < dep.desired_replicas and (retry_at is None or now() >= retry_at):
            for _ in range(dep.desired_replicas - len(live)):
                placed = await self._add_replica(dep, plan, tick, first=not live)
                if placed is None:
                    break
                live.append(placed)
        elif len(live) > dep.desired_replicas:
            await self._start_drain(dep, live, len(live) - dep.desired_replicas)
        await self._update_status(dep, live)

    async def _ensure_plan(self, dep: DeploymentRow) -> SizingPlan | None:
        if dep.plan:
            return SizingPlan.model_validate(dep.plan)
        from a3s_core.planning import resolve_plan

        spec = ModelSpec.model_validate(dep.spec)
        await run_in_threadpool(self.store.transition, dep.id, status="sizing")
        try:
            with step(
                self.p.tracer,
                "sizing",
                **self._ids(dep),
                start_message=f"sizing {dep.model} ({spec.quantization})",
            ) as s:
                _, plan = await asyncio.to_thread(resolve_plan, self.p, spec)
                fits = ", ".join(f"{c.gpu_count}× {c.gpu}" for c in plan.candidates[:4])
                s.done(
                    f"{dep.name}: {plan.parameters / 1e9:.1f}B parameters, "
                    f"{plan.weight_bytes / 2**30:.1f} GiB weights ({plan.quantization}), "
                    f"max_model_len {plan.max_model_len}; "
                    + (
                        f"fits on {fits}"
                        if fits
                        else f"runs on CPU in {plan.memory_bytes / 2**30:.2f} GiB"
                    ),
                    parameters=plan.parameters,
                    weightBytes=plan.weight_bytes,
                    kvBytesPerToken=plan.kv_bytes_per_token,
                    candidates=[f"{c.gpu_count}x {c.gpu}" for c in plan.candidates],
                    maxModelLen=plan.max_model_len,
                )
        except A3SError as exc:
            # A model that does not exist or does not fit stays so; a hub or runtime that
            # cannot be reached now may answer later.
            retry = isinstance(exc, ModelUnavailable | RuntimeUnavailable)
            await self._fail(dep, exc.message, retry=retry, step="sizing")
            return None
        await run_in_threadpool(
            self.store.transition, dep.id, plan=plan.model_dump(mode="json"), status="scheduling"
        )
        return plan

    # ------------------------------------------------------------------ observation

    async def _sync(
        self, dep: DeploymentRow, rows: list[ReplicaRow], tick: Tick
    ) -> list[ReplicaRow]:
        """Fold what the runtime sees into the store; replace what died."""
        kept: list[ReplicaRow] = []
        for r in rows:
            obs = tick.observed.get(r.id)
            created = aware(r.created_at) or now()
            if r.state == "draining":
                if await self._finish_drain(dep, r):
                    continue
                kept.append(r)
                continue
            if obs is None:
                # Counted from this term's start too: a new leader first gives the runtime
                # the grace to report replicas the old leader started.
                grace = timedelta(seconds=self.p.settings.replica_lost_grace_s)
                if now() - max(created, self.term_started) > grace:
                    await self._replica_lost(dep, r)
                    continue
            elif obs.state == "ready" and r.state != "ready":
                r = await self._set(
                    r,
                    state="ready",
                    url=obs.url,
                    ready_at=now(),
                    message="",
                    restarts=obs.restarts,
                )
                secs = (now() - created).total_seconds()
                self.emit(
                    dep,
                    "replica.ready",
                    f"{dep.name}: replica {r.id} is ready on {r.node} after {secs:.1f}s",
                    data={
                        "replica": r.id,
                        "node": r.node,
                        "url": obs.url,
                        "startSeconds": round(secs, 3),
                    },
                )
                self._invalidate()
            elif (
                obs.state == "ready"
                and dep.failures
                and r.ready_at
                and (now() - (aware(r.ready_at) or now()) > STABLE_AFTER)
            ):
                # Like a kubelet's crash-loop back-off: forgiven after a stable stretch.
                await run_in_threadpool(self.store.transition, dep.id, failures=0, retry_at=None)
            elif obs.state == "lost":
                await self._replica_lost(dep, r, obs.message)
                continue
            elif obs.state in ("failed", "stopped"):
                await self._replica_failed(dep, r, obs.message or f"replica {obs.state}")
                continue
            elif obs.state in ("starting", "unknown"):
                if r.state == "ready":  # was serving, is not now: stop routing to it
                    r = await self._set(r, state="starting", message=obs.message)
                    self._invalidate()
                if obs.url and obs.url != r.url:
                    r = await self._set(r, url=obs.url)
                timeout = timedelta(seconds=self.p.settings.replica_start_timeout_s)
                # Only a replica that never came up is timed out; a restarting one is the
                # runtime's to restart (kubelet) or report failed.
                if r.ready_at is None and now() - created > timeout:
                    await self._replica_failed(
                        dep, r, f"not ready after {timeout.total_seconds():.0f}s"
                    )
                    continue
            kept.append(r)
        return kept

    async def _add_replica(
        self, dep: DeploymentRow, plan: SizingPlan, tick: Tick, first: bool
    ) -> ReplicaRow | None:
        if tick.nodes is None:
            tick.nodes = await self.p.runtime.list_nodes()
            tick.allocations = await run_in_threadpool(self.store.allocations)
        try:
            placement = await run_in_threadpool(
                place, self.p, dep, plan, tick.nodes, tick.allocations, False
            )
        except Unschedulable as exc:
            await self._unschedulable(dep, plan, tick, exc, first)
            return None
        with step(self.p.tracer, "scheduling", **self._ids(dep), emit_start=False) as s:
            row = ReplicaRow(
                id=new_id(f"{dep.name[:40]}"),
                deployment_id=dep.id,
                node=placement.node,
                gpu=placement.gpu,
                gpu_indices=placement.gpu_indices,
                tensor_parallel_size=placement.tensor_parallel_size or 1,
                max_model_len=placement.max_model_len,
                state="starting",
            )
            if not await run_in_threadpool(self.store.book, row, dep.id):
                # Another platform process booked one of these GPUs first: re-read next pass.
                tick.nodes = None
                s.fail(f"{dep.name}: GPUs on {placement.node} were taken meanwhile; retrying")
                return None
            for idx in placement.gpu_indices:
                tick.allocations.setdefault(placement.node, {})[idx] = row.id
            gpus = (
                f"{len(placement.gpu_indices)}× {placement.gpu} "
                f"(GPU {','.join(map(str, placement.gpu_indices))})"
                if placement.gpu
                else "CPU"
            )
            s.done(
                f"{dep.name}: replica {row.id} placed on {placement.node}, {gpus}",
                replica=row.id,
                node=placement.node,
                gpu=placement.gpu,
                gpuIndices=placement.gpu_indices,
                tensorParallelSize=placement.tensor_parallel_size,
            )
        if (dep.autoscaling_state or {}).get("unschedulable"):
            await run_in_threadpool(self.store.merge_autoscaling_state, dep.id, unschedulable=None)
        return await self._launch(dep, plan, row)

    async def _unschedulable(
        self, dep: DeploymentRow, plan: SizingPlan, tick: Tick, exc: Unschedulable, first: bool
    ) -> None:
        """Say so once per distinct reason (with suggestions computed by re-sizing), not
        every pass; the deployment waits and is placed when capacity frees."""
        said = dep.reason if first else (dep.autoscaling_state or {}).get("unschedulable")
        if said == exc.message and (not first or dep.status == "unschedulable"):
            return
        try:
            await run_in_threadpool(
                place, self.p, dep, plan, tick.nodes or [], tick.allocations, True
            )
            full = exc
        except Unschedulable as with_tips:
            full = with_tips
        with step(self.p.tracer, "scheduling", **self._ids(dep), emit_start=False) as s:
            s.fail(
                f"{dep.name}: cannot place {'a' if first else 'another'} replica: {full.message}",
                reason=full.message,
                suggestions=full.suggestions,
                status="unschedulable" if first else dep.status,
                first=first,
            )
        if first:
            await run_in_threadpool(
                self.store.transition,
                dep.id,
                status="unschedulable",
                reason=exc.message,
                suggestions=full.suggestions,
            )
        else:
            await run_in_threadpool(
                self.store.merge_autoscaling_state, dep.id, unschedulable=exc.message
            )

    async def _launch(
        self, dep: DeploymentRow, plan: SizingPlan, row: ReplicaRow
    ) -> ReplicaRow | None:
        from a3s_core.types import Placement

        placement = Placement(
            node=row.node or "",
            gpu=row.gpu,
            gpu_indices=row.gpu_indices,
            tensor_parallel_size=row.tensor_parallel_size,
            max_model_len=row.max_model_len,
        )
        # A replica added to a deployment that already serves (scale-up, a replacement)
        # leaves it `running`; `deploying` is for one that has no ready replica yet.
        current = await run_in_threadpool(self.store.get_deployment, dep.id)
        if current.status != "running":
            await run_in_threadpool(
                self.store.transition, dep.id, status="deploying", reason="", suggestions=[]
            )
        try:
            request = await launch.build_request(self.p, dep, plan, placement, row.id)
            self.emit(
                dep,
                "replica.starting",
                f"{dep.name}: starting replica {row.id} ({dep.engine}) on {row.node}",
                data={
                    "replica": row.id,
                    "node": row.node,
                    "image": request.image,
                    "command": request.command,
                },
            )
            obs = await self.p.runtime.create_replica(request)
        except RuntimeUnavailable as exc:
            await run_in_threadpool(self.store.remove_replica, row.id)
            await self._fail(dep, exc.message, retry=True)
            return None
        except Exception as exc:
            await self._replica_failed(dep, row, f"could not start: {exc}")
            return None
        if obs.url:
            row = await self._set(row, url=obs.url)
        return row

    async def _update_status(self, dep: DeploymentRow, live: list[ReplicaRow]) -> None:
        fresh = await run_in_threadpool(self.store.get_deployment, dep.id)
        ready = sum(1 for r in live if r.state == "ready")
        if ready:
            status = "running"
        elif live:
            status = "deploying"
        else:
            status = fresh.status if fresh.status in ("unschedulable", "failed") else "scheduling"
        if status != fresh.status:
            await run_in_threadpool(
                self.store.transition,
                dep.id,
                status=status,
                **({"reason": "", "suggestions": []} if ready else {}),
            )
        if status == "running" and fresh.status != "running":
            self.emit(
                dep,
                "deployment.running",
                f"{dep.name} is running: {ready} of {fresh.desired_replicas} replica(s) "
                f"ready at {self.p.settings.endpoint_for(dep.namespace, dep.name)}",
                data={
                    "ready": ready,
                    "desired": fresh.desired_replicas,
                    "endpoint": self.p.settings.endpoint_for(dep.namespace, dep.name),
                },
            )

    async def preview(
        self, spec: ModelSpec, plan: SizingPlan, request: DeploymentRequest
    ) -> dict[str, Any]:
        dep = DeploymentRow(
            id="preview",
            name=spec.name,
            namespace=request.resolved_namespace(),
            model=spec.model,
            engine=spec.engine,
            spec=spec.model_dump(mode="json", exclude_none=True),
            metadata_=request.metadata,
        )
        return await preview(self.p, dep, plan)
