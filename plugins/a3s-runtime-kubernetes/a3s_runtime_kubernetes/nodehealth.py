"""Replicas on NotReady nodes: out of traffic at once, lost (replaced) after a grace.

Kubernetes itself acts late or not at all: the node lifecycle controller taints a NotReady
node and evicts its pods only after `tolerationSeconds` (300 s by default), and a cluster
without kube-controller-manager never does. A GPU replica should not wait that long, so the
runtime reads the nodes' `Ready` condition itself. Pure functions and a small cache; the
listing is the runtime's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from a3s_core.types import ReplicaObservation
from a3s_runtime_kubernetes.objects import Json


@dataclass(frozen=True)
class NodeTrouble:
    """A node whose Ready condition is not True: what it says, and since when."""

    node: str
    status: str  # False or Unknown
    reason: str
    message: str
    since: float  # epoch seconds

    def describe(self) -> str:
        text = f"node {self.node} is NotReady (Ready={self.status}"
        if self.reason:
            text += f", {self.reason}"
        if self.message:
            text += f": {self.message}"
        return text + ")"


def _epoch(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def troubles(
    nodes: list[Json], seen: dict[str, NodeTrouble], now: float
) -> dict[str, NodeTrouble]:
    """The nodes that are not Ready now. The grace counts from the condition's
    lastTransitionTime (so a platform restart does not restart it), or from when this
    process first saw the node NotReady if the condition has none or it lies ahead."""
    out: dict[str, NodeTrouble] = {}
    for node in nodes:
        name = str((node.get("metadata") or {}).get("name") or "")
        conditions = (node.get("status") or {}).get("conditions") or []
        ready = next((c for c in conditions if c.get("type") == "Ready"), None)
        if ready is None or ready.get("status") == "True":
            continue  # no Ready condition: not reporting yet, as the inventory reads it
        earlier = seen.get(name)
        since = _epoch(ready.get("lastTransitionTime"))
        if since is None or since > now:
            since = earlier.since if earlier else now
        out[name] = NodeTrouble(
            node=name,
            status=str(ready.get("status") or "Unknown"),
            reason=str(ready.get("reason") or ""),
            message=str(ready.get("message") or ""),
            since=since,
        )
    return out


def apply(
    observations: list[ReplicaObservation], bad: dict[str, NodeTrouble], grace_s: float,
    now: float,
) -> list[ReplicaObservation]:
    """A replica on a NotReady node is `unknown` (no traffic; it may come back) until the
    node has been NotReady for `grace_s`, then `lost` (the controller replaces it)."""
    out = []
    for obs in observations:
        trouble = bad.get(obs.node or "")
        if trouble is None or obs.state in ("failed", "stopped", "lost"):
            out.append(obs)
            continue
        waited = now - trouble.since
        if waited >= grace_s:
            state, message = "lost", (
                f"{trouble.describe()} for {waited:.0f}s (runtime_options.node_lost_grace_s="
                f"{grace_s:g})"
            )
        else:
            state, message = "unknown", (
                f"{trouble.describe()}; out of traffic, replaced if still so after "
                f"{grace_s - waited:.0f}s"
            )
        out.append(obs.model_copy(update={"state": state, "message": message}))
    return out


class NodeHealth:
    """The latest view of not-Ready nodes, refreshed at most every `interval_s`."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.bad: dict[str, NodeTrouble] = {}
        self._checked = float("-inf")  # monotonic

    def due(self) -> bool:
        return time.monotonic() - self._checked >= self.interval_s

    def update(self, nodes: list[Json]) -> None:
        self.bad = troubles(nodes, self.bad, time.time())
        self._checked = time.monotonic()

    def is_bad(self, node: str | None) -> bool:
        return bool(node) and node in self.bad
