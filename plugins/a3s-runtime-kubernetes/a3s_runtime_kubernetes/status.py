"""A pod's status (JSON) → the platform's ReplicaObservation (pure, no I/O)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

from a3s_core.types import ReplicaObservation, ReplicaState
from a3s_runtime_kubernetes import naming as n
from a3s_runtime_kubernetes.objects import Json, annotations_of, labels_of, meta

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


def _termination(t: Json | None) -> str:
    """`OOMKilled (exit code 137)` / `Error (exit code 1): <last message>`."""
    if not t:
        return ""
    text = f"{t.get('reason') or 'terminated'} (exit code {t.get('exitCode')})"
    if t.get("message"):
        text += f": {str(t['message']).strip()[-500:]}"
    return text


def _url(pod: Json) -> str | None:
    ip = (pod.get("status") or {}).get("podIP")
    port = annotations_of(pod).get(n.PORT)
    if not ip or not port:
        return None
    host = f"[{ip}]" if ipaddress.ip_address(ip).version == 6 else ip
    return f"http://{host}:{port}"


def _engine_status(status: Json) -> Json | None:
    statuses = status.get("containerStatuses") or []
    first = statuses[0] if statuses else None
    return next((s for s in statuses if s.get("name") == n.CONTAINER), first)


def _condition(status: Json, kind: str) -> Json | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), None)


def observe_pod(pod: Json, warning: str | None = None) -> ReplicaObservation:
    """Map one A3S pod. `warning` is the latest Warning event about it, if any (FailedMount,
    FailedScheduling…), appended to the message of a replica that is still starting."""
    md = meta(pod)
    labels = labels_of(pod)
    annotations = annotations_of(pod)
    status: Json = pod.get("status") or {}
    phase = status.get("phase")
    cs = _engine_status(status)
    restarts = sum(s.get("restartCount") or 0 for s in status.get("containerStatuses") or [])

    state: ReplicaState = "starting"
    message = ""
    since: str | None = md.get("creationTimestamp")
    if md.get("deletionTimestamp"):
        state, message, since = "stopped", "pod is being deleted", md["deletionTimestamp"]
    elif phase == "Failed":
        state = "failed"
        message = f"pod failed: {status.get('reason') or 'Failed'}"
        if status.get("message"):
            message += f": {status['message']}"
        terminated = ((cs or {}).get("state") or {}).get("terminated")
        if terminated:
            message += f"; engine {_termination(terminated)}"
            since = terminated.get("finishedAt") or since
    elif phase == "Unknown":
        state, message = "unknown", "pod status Unknown: its node stopped reporting"
    elif phase == "Succeeded":
        state, message = "stopped", "engine exited with code 0"
    elif cs is not None and cs.get("state"):
        current: Json = cs["state"]
        waiting, terminated, running = (
            current.get("waiting"), current.get("terminated"), current.get("running")
        )
        last = (cs.get("lastState") or {}).get("terminated")
        if waiting is not None and waiting.get("reason") in FAILED_WAITING:
            state = "failed"
            message = str(waiting["reason"])
            if waiting.get("message"):
                message += f": {waiting['message']}"
            if last:
                message += f"; last termination: {_termination(last)}"
                since = last.get("finishedAt") or since
        elif terminated is not None and (
            terminated.get("exitCode") or terminated.get("reason") == "OOMKilled"
        ):
            state, message = "failed", f"engine {_termination(terminated)}"
            since = terminated.get("finishedAt") or since
        elif running is not None and cs.get("ready"):
            state = "ready"
            ready = _condition(status, "Ready") or {}
            since = ready.get("lastTransitionTime") or running.get("startedAt") or since
        elif running is not None and cs.get("started"):
            # Passed its startup probe, so the model is loaded: not "starting" again (that
            # would run into the start timeout), but not serving either.
            state = "unknown"
            message = ("engine is up but failing its readiness probe (overloaded or unwell); "
                       "its liveness probe decides whether the kubelet restarts it")
        elif running is not None:
            message = "engine is running; waiting for it to answer (loading the model)"
        elif waiting is not None:
            message = waiting.get("reason") or "waiting"
            if waiting.get("message"):
                message += f": {waiting['message']}"
    else:
        scheduled = _condition(status, "PodScheduled")
        if scheduled is not None and scheduled.get("status") == "False":
            message = f"not scheduled yet: {scheduled.get('reason')}: {scheduled.get('message')}"
        else:
            message = "pod is pending"
    if state == "starting" and warning:
        message = f"{message}; {warning}" if message else warning
    return ReplicaObservation(
        replica_id=labels.get(n.REPLICA) or str(md.get("name")),
        deployment_id=labels.get(n.DEPLOYMENT, ""),
        state=state,
        url=_url(pod) if state in ("starting", "ready", "unknown") else None,
        node=(pod.get("spec") or {}).get("nodeName") or annotations.get(n.NODE),
        gpu_indices=n.parse_indices(annotations.get(n.GPU_INDICES)),
        message=message,
        restarts=restarts,
        since=_when(since),
    )


def _when(stamp: str | None) -> datetime:
    """RFC 3339 from the API; `now` when the pod has none yet."""
    if stamp:
        try:
            return datetime.fromisoformat(stamp)
        except ValueError:
            pass
    return datetime.now(UTC)
