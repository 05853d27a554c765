"""The autoscaling loop: every `autoscale_interval_s`, for each running deployment, read
the signals, let the registered rules vote (`decide`), write the new desired count and
wake the controller, which places every new replica through the scheduler.

    autoscaler = Autoscaler(platform, clock=FakeClock())   # the clock is injectable
    await autoscaler.tick()                                # one pass (tests)
    asyncio.create_task(autoscaler.run())                  # what Platform.start() does

State (timers, queue-empty streak, last decision) lives in the store, so a restarted
platform keeps its cool-downs; an in-memory copy keeps it safe from a concurrent writer
of the same JSON column.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from a3s_core.contracts import ScalingRule
from a3s_core.registry import ScalingRuleRegistry
from a3s_core.scaling import persist
from a3s_core.scaling import signals as signal_source
from a3s_core.scaling.clock import Clock, SystemClock
from a3s_core.scaling.decide import Decision, ScalingState, Situation, decide
from a3s_core.store import DeploymentRow, ReplicaRow
from a3s_core.types import AutoscalingSpec, ModelSpec, Node, ScalingSignals

if TYPE_CHECKING:
    from a3s_core.platform import Platform

log = logging.getLogger("a3s.autoscaler")

LIVE = ("starting", "ready")
SignalsFn = Callable[[DeploymentRow, Sequence[ReplicaRow]], Awaitable[ScalingSignals]]


def policy_of(dep: DeploymentRow) -> AutoscalingSpec:
    """The deployment's `autoscaling` block, or the seed's defaults when it has none."""
    spec = ModelSpec.model_validate(dep.spec)
    return spec.autoscaling or AutoscalingSpec()


class Autoscaler:
    def __init__(
        self,
        platform: Platform,
        clock: Clock | None = None,
        signals: SignalsFn | None = None,
    ) -> None:
        self.p = platform
        self.clock: Clock = clock or SystemClock()
        self._signals = signals  # tests inject figures; otherwise gateway + runtime
        self._states: dict[str, ScalingState] = {}
        self._rules: tuple[ScalingRuleRegistry, list[ScalingRule]] | None = None

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("autoscaling pass failed; retrying")
            await self.clock.sleep(self.p.settings.autoscale_interval_s)

    async def tick(self) -> dict[str, Decision]:
        """One pass over every deployment; returns the decisions taken, by deployment id."""
        deployments = await run_in_threadpool(self.p.store.list_deployments)
        replicas = await run_in_threadpool(self.p.store.replicas)
        by_dep: dict[str, list[ReplicaRow]] = defaultdict(list)
        for r in replicas:
            by_dep[r.deployment_id].append(r)
        nodes = _NodesOnce(self.p)
        out: dict[str, Decision] = {}
        for dep in deployments:
            try:
                decision = await self._step(dep, by_dep.get(dep.id, []), nodes)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("autoscaling %s (%s) failed", dep.name, dep.id)
                continue
            if decision is not None:
                out[dep.id] = decision
        live_ids = {d.id for d in deployments}
        for gone in [k for k in self._states if k not in live_ids]:
            del self._states[gone]
        return out

    # ------------------------------------------------------------------ one deployment

    def rules(self) -> list[ScalingRule]:
        """One instance of every registered rule (rebuilt when plugins change)."""
        registry = self.p.plugins.scaling_rules
        if self._rules is None or self._rules[0] is not registry:
            self._rules = (registry, [registry.get(name)() for name in registry])
        return self._rules[1]

    def state_of(self, dep: DeploymentRow) -> ScalingState:
        return self._states.get(dep.id) or persist.read_state(dep)

    def situation(
        self, dep: DeploymentRow, replicas: Sequence[ReplicaRow], policy: AutoscalingSpec
    ) -> Situation:
        ceiling = min(policy.max_replicas, self.p.settings.max_replicas)
        return Situation(
            desired=dep.desired_replicas,
            live=sum(1 for r in replicas if r.state in LIVE),
            floor=max(1, min(policy.min_replicas, ceiling)),
            ceiling=ceiling,
            unschedulable=persist.unschedulable_of(dep),
        )

    async def evaluate(
        self,
        dep: DeploymentRow,
        replicas: Sequence[ReplicaRow],
        nodes: Callable[[], Awaitable[list[Node]]] | None = None,
        preview: bool = False,
    ) -> Decision:
        """What the autoscaler would decide now, without acting. `preview` (the API) does
        not take a count it has not seen yet for a manual scale: the row it read may be
        older or newer than this process's state."""
        policy = policy_of(dep)
        state = self.state_of(dep)
        if self._signals is not None:
            sig = await self._signals(dep, replicas)
        else:
            changed = last_change(state)
            since = None if changed is None else max(0.0, self.clock.now() - changed)
            sig = await signal_source.collect(
                self.p, dep, replicas, nodes or _NodesOnce(self.p), since
            )
        if preview:
            state = state.model_copy(update={"seen_desired": dep.desired_replicas})
        return decide(
            sig,
            policy,
            state,
            self.clock.now(),
            self.rules(),
            self.situation(dep, replicas, policy),
        )

    async def _step(
        self, dep: DeploymentRow, replicas: Sequence[ReplicaRow], nodes: _NodesOnce
    ) -> Decision | None:
        if dep.status != "running":  # only running deployments are scaled
            return None
        policy = policy_of(dep)
        if not policy.enabled:
            return None
        d = await self.evaluate(dep, replicas, nodes)
        if d.changes:
            saved = await run_in_threadpool(
                persist.save,
                self.p.store,
                dep.id,
                d.state,
                expect_desired=d.from_replicas,
                desired=d.to_replicas,
                clear_unschedulable=d.clear_unschedulable,
            )
            if not saved:  # deleted, or scaled by hand meanwhile: the next pass re-decides
                return None
            self._states[dep.id] = d.state
            if self.p.controller is not None:
                self.p.controller.wake()
        else:
            if d.state != persist.read_state(dep) or d.clear_unschedulable:
                await run_in_threadpool(
                    persist.save,
                    self.p.store,
                    dep.id,
                    d.state,
                    expect_desired=d.from_replicas,
                    clear_unschedulable=d.clear_unschedulable,
                )
            self._states[dep.id] = d.state
        if d.event is not None:
            await run_in_threadpool(self._emit, dep, d, policy)
        return d

    def _emit(self, dep: DeploymentRow, d: Decision, policy: AutoscalingSpec) -> None:
        if d.event is None:
            return
        if d.action == "hold":
            message = f"{dep.name}: holding at {d.from_replicas} replica(s): {d.reason}"
        else:
            verb = "scaling up" if d.action == "up" else "scaling down"
            message = f"{dep.name}: {verb} {d.from_replicas} → {d.to_replicas}: {d.reason}"
        self.p.bus.emit(
            d.event,
            message,
            deployment_id=dep.id,
            name=dep.name,
            namespace=dep.namespace,
            level="warning" if d.code == "unschedulable" else "info",
            data=event_data(d, policy),
            trace_id=dep.trace_id,
            span_id=dep.span_id,
        )


def last_change(state: ScalingState) -> float | None:
    """When the replica count last changed (by us or by hand), in clock seconds."""
    known = [t for t in (state.last_up_at, state.last_down_at, state.manual_at) if t is not None]
    return max(known) if known else None


def event_data(d: Decision, policy: AutoscalingSpec) -> dict[str, Any]:
    """The figures that drove a decision, as carried by scaling.* events."""
    s = d.signals
    return {
        "from": d.from_replicas,
        "to": d.to_replicas,
        "code": d.code,
        "reason": d.reason,
        "signals": {
            "replicas": s.replicas,
            "gpuUtilization": s.gpu_utilization,
            "queueDepth": s.queue_depth,
            "p99LatencyS": s.p99_latency_s,
            "queueZeroForS": round(s.queue_zero_for_s, 3),
            "requestsInWindow": s.requests_in_window,
            "inFlight": s.in_flight,
            "recentP99LatencyS": s.recent_p99_latency_s,
            "recentRequests": s.recent_requests,
        },
        "thresholds": policy.model_dump(mode="json"),
        "votes": [v.model_dump(mode="json") for v in d.votes],
        "cooldownRemainingS": {
            "up": round(d.up_cooldown_remaining_s, 3),
            "down": round(d.down_cooldown_remaining_s, 3),
        },
    }


class _NodesOnce:
    """The runtime's node list, fetched at most once per pass and only if needed."""

    def __init__(self, platform: Platform) -> None:
        self.p = platform
        self._nodes: list[Node] | None = None

    async def __call__(self) -> list[Node]:
        if self._nodes is None:
            try:
                self._nodes = await self.p.runtime.list_nodes()
            except Exception as exc:  # a fallback figure; its absence must not stop scaling
                log.warning("listing nodes for GPU utilisation failed: %s", exc)
                self._nodes = []
        return self._nodes
