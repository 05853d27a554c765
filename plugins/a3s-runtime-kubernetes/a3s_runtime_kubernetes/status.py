"""A pod's status → the platform's ReplicaObservation (pure, no I/O)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s

from a3s_core.types import ReplicaObservation, ReplicaState
from a3s_runtime_kubernetes import naming as n
from a3s_runtime_kubernetes.objects import annotations_of, labels_of, meta

# Waiting reasons the kubelet will not get out of by itself (or only by retrying forever).
FAILED_WAITING = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


def _termination(t: Any | None) -> str:
    """`OOMKilled (exit code 137)` / `Error (exit code 1): <last message>`."""
    if t is None:
        return ""
    text = f"{t.reason or 'terminated'} (exit code {t.exit_code})"
    if t.message:
        text += f": {t.message.strip()[-500:]}"
    return text


def _url(pod: k8s.V1Pod) -> str | None:
    ip = pod.status.pod_ip if pod.status else None
    port = annotations_of(pod).get(n.PORT)
    if not ip or not port:
        return None
    host = f"[{ip}]" if ipaddress.ip_address(ip).version == 6 else ip
    return f"http://{host}:{port}"


def _engine_status(pod: k8s.V1Pod) -> Any | None:
    statuses = (pod.status.container_statuses if pod.status else None) or []
    return next((s for s in statuses if s.name == n.CONTAINER), statuses[0] if statuses else None)


def _condition(pod: k8s.V1Pod, kind: str) -> Any | None:
    conditions = (pod.status.conditions if pod.status else None) or []
    return next((c for c in conditions if c.type == kind), None)


def observe_pod(pod: k8s.V1Pod, warning: str | None = None) -> ReplicaObservation:
    """Map one A3S pod. `warning` is the latest Warning event about it, if any (FailedMount,
    FailedScheduling…), appended to the message of a replica that is still starting."""
    md = meta(pod)
    labels = labels_of(pod)
    annotations = annotations_of(pod)
    status = pod.status or k8s.V1PodStatus()
    phase = status.phase
    cs = _engine_status(pod)
    restarts = sum(s.restart_count or 0 for s in status.container_statuses or [])

    state: ReplicaState = "starting"
    message = ""
    since: datetime | None = md.creation_timestamp
    if md.deletion_timestamp is not None:
        state, message, since = "stopped", "pod is being deleted", md.deletion_timestamp
    elif phase == "Failed":
        state = "failed"
        message = f"pod failed: {status.reason or 'Failed'}"
        if status.message:
            message += f": {status.message}"
        terminated = cs.state.terminated if cs is not None and cs.state else None
        if terminated is not None:
            message += f"; engine {_termination(terminated)}"
            since = terminated.finished_at or since
    elif phase == "Unknown":
        state, message = "unknown", "pod status Unknown: its node stopped reporting"
    elif phase == "Succeeded":
        state, message = "stopped", "engine exited with code 0"
    elif cs is not None and cs.state is not None:
        waiting, terminated, running = cs.state.waiting, cs.state.terminated, cs.state.running
        last = cs.last_state.terminated if cs.last_state else None
        if waiting is not None and waiting.reason in FAILED_WAITING:
            state = "failed"
            message = waiting.reason + (f": {waiting.message}" if waiting.message else "")
            if last is not None:
                message += f"; last termination: {_termination(last)}"
                since = last.finished_at or since
        elif terminated is not None and (terminated.exit_code or terminated.reason == "OOMKilled"):
            state, message = "failed", f"engine {_termination(terminated)}"
            since = terminated.finished_at or since
        elif running is not None and cs.ready:
            state = "ready"
            ready = _condition(pod, "Ready")
            since = (ready.last_transition_time if ready else None) or running.started_at or since
        elif running is not None and cs.started:
            # Passed its startup probe, so the model is loaded: not "starting" again (that
            # would run into the start timeout), but not serving either.
            state = "unknown"
            message = ("engine is up but failing its readiness probe (overloaded or unwell); "
                       "its liveness probe decides whether the kubelet restarts it")
        elif running is not None:
            message = "engine is running; waiting for it to answer (loading the model)"
        elif waiting is not None:
            message = waiting.reason or "waiting"
            if waiting.message:
                message += f": {waiting.message}"
    else:
        scheduled = _condition(pod, "PodScheduled")
        if scheduled is not None and scheduled.status == "False":
            message = f"not scheduled yet: {scheduled.reason}: {scheduled.message}"
        else:
            message = "pod is pending"
    if state == "starting" and warning:
        message = f"{message}; {warning}" if message else warning
    return ReplicaObservation(
        replica_id=labels.get(n.REPLICA) or str(md.name),
        deployment_id=labels.get(n.DEPLOYMENT, ""),
        state=state,
        url=_url(pod) if state in ("starting", "ready", "unknown") else None,
        node=(pod.spec.node_name if pod.spec else None) or annotations.get(n.NODE),
        gpu_indices=n.parse_indices(annotations.get(n.GPU_INDICES)),
        message=message,
        restarts=restarts,
        since=since or datetime.now(UTC),
    )
