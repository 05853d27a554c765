"""The pydantic types shared by the core and its plugins (public surface)."""

from a3s_core.types.cluster import GpuDevice, Node, Placement
from a3s_core.types.events import Event, Level
from a3s_core.types.load import LoadFigures, ReplicaLoad
from a3s_core.types.plan import Candidate, GpuType, Rejection, SizingPlan
from a3s_core.types.profile import MLA, ExistingQuantization, ModelProfile, MoE
from a3s_core.types.replica import LogLine, ReplicaObservation, ReplicaRequest, ReplicaState
from a3s_core.types.routing import RouteRequest
from a3s_core.types.scaling import ScalingSignals, Vote
from a3s_core.types.spec import QUANTIZATIONS, AutoscalingSpec, DeploymentRequest, ModelSpec

__all__ = [
    "MLA",
    "QUANTIZATIONS",
    "AutoscalingSpec",
    "Candidate",
    "DeploymentRequest",
    "Event",
    "ExistingQuantization",
    "GpuDevice",
    "GpuType",
    "Level",
    "LoadFigures",
    "LogLine",
    "MoE",
    "ModelProfile",
    "ModelSpec",
    "Node",
    "Placement",
    "Rejection",
    "ReplicaLoad",
    "ReplicaObservation",
    "ReplicaRequest",
    "ReplicaState",
    "RouteRequest",
    "ScalingSignals",
    "SizingPlan",
    "Vote",
]
