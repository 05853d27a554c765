"""The autoscaler's state in the store: `DeploymentRow.autoscaling_state["autoscaler"]`.

The controller writes `autoscaling_state["unschedulable"]` for its own use, so every write
here is a read-modify-write of the fresh row in one transaction (row-locked on
PostgreSQL) that keeps the other keys. A new replica count is written only if the count is
still the one the decision started from: a manual scale in between wins, and the next tick
sees it.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlmodel import select

from a3s_core.scaling.decide import ScalingState
from a3s_core.store import DeploymentRow, Store
from a3s_core.store.tables import utcnow

STATE_KEY = "autoscaler"
UNSCHEDULABLE_KEY = "unschedulable"
TERMINAL = ("deleting", "deleted")


def read_state(row: DeploymentRow) -> ScalingState:
    raw = (row.autoscaling_state or {}).get(STATE_KEY)
    if not isinstance(raw, dict):
        return ScalingState()
    try:
        return ScalingState.model_validate(raw)
    except ValidationError:  # written by an older version: start afresh, never crash
        return ScalingState()


def unschedulable_of(row: DeploymentRow) -> str | None:
    value = (row.autoscaling_state or {}).get(UNSCHEDULABLE_KEY)
    return str(value) if value else None


def save(
    store: Store,
    deployment_id: str,
    state: ScalingState,
    *,
    expect_desired: int,
    desired: int | None = None,
    clear_unschedulable: bool = False,
) -> bool:
    """Write the state (and the new count, if any). False when the deployment is gone or
    being deleted, or when `desired` is given and the count changed meanwhile."""
    with store.session() as s:
        q = select(DeploymentRow).where(DeploymentRow.id == deployment_id)
        row = s.exec(q.with_for_update() if store.is_postgres else q).first()
        if row is None or row.status in TERMINAL:
            return False
        if desired is not None and row.desired_replicas != expect_desired:
            return False
        merged: dict[str, Any] = dict(row.autoscaling_state or {})
        merged[STATE_KEY] = state.model_dump(mode="json")
        if clear_unschedulable:
            merged.pop(UNSCHEDULABLE_KEY, None)
        row.autoscaling_state = merged  # a new dict, so the JSON column is seen as changed
        if desired is not None:
            row.desired_replicas = desired
        row.updated_at = utcnow()
        s.add(row)
        s.commit()
    return True
