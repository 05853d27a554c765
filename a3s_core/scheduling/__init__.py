"""GPU scheduling: filter → score → choose (pure), then book in the store.

Public surface (plugins and the controller import from here):
- `node_views(nodes, taken, catalog)`: runtime Nodes + the store's bookings → NodeViews
- `ClusterSnapshot(views)`: the views, indexed for fast placement; `apply` / `release`
- `Scheduler(strategy, catalog).place(nodes, demand)` → Placement or Unschedulable
- `demand_for(plan, deployment, namespace, metadata)`: a replica's Demand from a plan
- `suggest(...)` / `place_or_suggest(...)`: alternatives checked against the cluster now
- `place_and_book(...)`, `MemoryBook`: booking with retry on conflict
- `WaitQueue`: unschedulable replicas retried in arrival order
"""

from a3s_core.scheduling.binding import MemoryBook, place_and_book
from a3s_core.scheduling.explain import explain
from a3s_core.scheduling.framework import Scheduler, demand_for, pick_indices
from a3s_core.scheduling.queue import Waiting, WaitQueue
from a3s_core.scheduling.snapshot import ClusterSnapshot
from a3s_core.scheduling.suggest import place_or_suggest, suggest
from a3s_core.scheduling.views import SchedulableNodeView, is_schedulable, node_view, node_views

__all__ = [
    "ClusterSnapshot", "MemoryBook", "SchedulableNodeView", "Scheduler", "WaitQueue", "Waiting",
    "demand_for", "explain", "is_schedulable", "node_view", "node_views", "pick_indices",
    "place_and_book", "place_or_suggest", "suggest",
]
