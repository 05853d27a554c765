"""What a runtime plugin gives the platform (registered via `a3s_register_runtimes`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import ClassVar

from a3s_core.types import LogLine, Node, ReplicaObservation, ReplicaRequest


class Runtime(ABC):
    """Where replicas live. One instance per platform process, created from settings.

    Runtimes are stateless towards the platform: the store says what should exist, the
    runtime says what does. `observe` must find replicas started by an earlier process of
    the platform (adoption after restart), using labels/ids carried in `ReplicaRequest`.

    Several platform processes may share one store; one at a time leads (runs the
    controllers and calls `create_replica` / `delete_replica` / `observe`). When leadership
    moves, the new leader must see every replica the old one started before it judges any
    lost: `on_leadership(True)` is its cue to re-read the cluster.
    """

    name: ClassVar[str]
    runs_images: ClassVar[bool | None] = None
    """True when replicas run the engine's container image (kubernetes); False when the
    command runs as a process on this machine (local, sim). Engines see it as
    `LaunchContext.in_container`."""

    def __init__(self, options: dict[str, object] | None = None) -> None:
        self.options = dict(options or {})

    async def start(self) -> None:
        """Connect / load inventory. Called once before any other method."""

    async def close(self) -> None:
        """Release connections. Replicas keep running unless `stop_on_close` is asked for."""

    async def on_leadership(self, leading: bool) -> None:
        """This process became the leader (True: called before its first reconcile pass)
        or is a follower (False: at start-up when another process leads, or on stepping
        down; not at shutdown). On True, re-read the cluster so that `observe` reports
        every replica any platform process started, the previous leader's included. On
        False, stop work only the leader should do (e.g. tailing logs other processes
        share). Replicas keep running either way. Default: nothing, which is right for a
        runtime whose `observe` asks the cluster itself (kubernetes)."""

    def multi_process_note(self) -> str | None:
        """One or two sentences on what several platform processes on one store mean for
        this runtime (logged at start-up when the store is shared, i.e. PostgreSQL), or
        None when there is nothing to say."""
        return None

    async def reserve_port(self) -> int | None:
        """A port the next replica's engine should listen on, when the runtime shares one
        network namespace among replicas (sim, local); None when each replica has its own
        (kubernetes: the engine's default port)."""
        return None

    @abstractmethod
    async def list_nodes(self) -> list[Node]:
        """Nodes with their GPUs (utilisation where known) and GPUs held by others. The
        same on every platform process on one store, a follower's included (`GET
        /v1/cluster` may be served by any of them)."""

    @abstractmethod
    async def create_replica(self, request: ReplicaRequest) -> ReplicaObservation:
        """Start one replica on `request.placement` and return at once (state 'starting')."""

    @abstractmethod
    async def delete_replica(self, replica_id: str) -> None:
        """Stop and remove a replica. Idempotent: an unknown id is not an error."""

    @abstractmethod
    async def observe(self) -> list[ReplicaObservation]:
        """Every replica this runtime manages for the platform, with its current state.

        `unknown` takes a replica out of traffic without replacing it (it may come back);
        `lost` says it will not (its node is gone or NotReady past the runtime's grace): the
        controller deletes it (best effort), replaces it elsewhere without counting an engine
        failure, and puts `message` (which should name the node and why) in its event."""

    @abstractmethod
    def logs(
        self, replica_id: str, tail: int = 100, follow: bool = False
    ) -> AsyncIterator[LogLine]:
        """The replica's log lines: the last `tail`, then new ones while `follow`."""
