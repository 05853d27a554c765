"""Team affinity: a small scheduling strategy for platform teams to copy.

Nodes a team owns carry the label `a3s.io/team=<team id>`; a deployment says who it is
in its request's `metadata.teamId` (seed §2.1). This strategy

- keeps every team off nodes labelled for another team (a filter: the explanation then
  says "gpu-a100-3 has 8 of 8 free but is reserved for team team-002");
- prefers the deploying team's own nodes over shared (unlabelled) ones (a score bonus);
- otherwise behaves exactly like the standard `binpack` strategy, which it extends.

Choose it with the platform setting `A3S_SCHEDULER=team-affinity`, or per model with
`"scheduler": "team-affinity"` in the deployment request.
"""

from __future__ import annotations

from typing import ClassVar

from a3s_scheduler_standard import BinPack

from a3s_core import hookimpl
from a3s_core.contracts import Demand, NodeView
from a3s_core.registry import SchedulerRegistry
from a3s_core.types import Candidate

__all__ = ["TeamAffinity"]

# Larger than any binpack score difference, so an own node always wins over a shared one.
OWN_NODE_BONUS = 1e14


class TeamAffinity(BinPack):
    name: ClassVar[str] = "team-affinity"

    label: ClassVar[str] = "a3s.io/team"
    """The node label naming the team that owns the node."""
    metadata_key: ClassVar[str] = "teamId"
    """The request metadata field naming the deploying team."""
    exclusive: ClassVar[bool] = True
    """Keep other teams off labelled nodes. Subclass with False for a soft preference."""

    def team(self, demand: Demand) -> str | None:
        value = demand.metadata.get(self.metadata_key)
        return str(value) if value not in (None, "") else None

    def filter(self, node: NodeView, demand: Demand, candidate: Candidate) -> str | None:
        owner = node.labels.get(self.label)
        if self.exclusive and owner and owner != self.team(demand):
            return f"is reserved for team {owner}"
        return None

    def score(self, node: NodeView, demand: Demand, candidate: Candidate) -> float:
        base = super().score(node, demand, candidate)
        team = self.team(demand)
        own = team is not None and node.labels.get(self.label) == team
        return base + (OWN_NODE_BONUS if own else 0.0)

    def equivalence_key(self, node: NodeView) -> object | None:
        # Nodes that bin-pack alike AND belong to the same team (or none) are
        # interchangeable; the framework then evaluates one node per such class.
        return (super().equivalence_key(node), node.labels.get(self.label))


@hookimpl
def a3s_register_schedulers(registry: SchedulerRegistry) -> None:
    registry.register(TeamAffinity)
