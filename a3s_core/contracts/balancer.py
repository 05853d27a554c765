"""Load-balancing policies (registered via `a3s_register_balancers`)."""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from a3s_core.types import ReplicaLoad, RouteRequest


class Balancer(ABC):
    """Picks one replica per request. One instance per deployment, so it may keep state
    (only the gateway's event loop calls it: no locks needed)."""

    name: ClassVar[str]

    @abstractmethod
    def pick(
        self, replicas: Sequence[ReplicaLoad], request: RouteRequest | None = None
    ) -> ReplicaLoad:
        """Choose one of `replicas` for `request`; return that very element.

        replicas: non-empty, the routable replicas (ready, not ejected, not already tried
                  for this request), each a snapshot of its load for this pick. Engine
                  figures may be up to a few scrape intervals old (`metrics_fresh`,
                  `metrics_age_s`) and may come from balancing data shared by several
                  gateway workers; `in_flight` is this worker's exact count, the rest of
                  the gateway's is `peer_in_flight` (see `ReplicaLoad`).
        request:  what is known of the request (`RouteRequest`: path, raw body, the
                  deployment's current members, the attempt, the worker). The gateway
                  always passes it; None means nothing is known (a caller outside the
                  gateway, or a test) and the policy must still pick.

        Must be fast and must not block or await: it runs on the request path of the
        event loop. Raise ValueError only for an empty list.

        Older policies that define `pick(self, replicas)` keep working: the base class
        adapts them, and the request is simply not passed to them.
        """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("pick")
        if own is None or getattr(own, "__isabstractmethod__", False):
            return
        if _positional_count(own) < 3:  # (self, replicas): written before `request` existed
            cls.pick = _without_request(own)  # type: ignore[method-assign]


def _positional_count(fn: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 3  # not introspectable: assume the current contract
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return 3
    return sum(1 for p in params if p.kind in kinds)


def _without_request(
    legacy: Callable[[Any, Sequence[ReplicaLoad]], ReplicaLoad],
) -> Callable[..., ReplicaLoad]:
    @functools.wraps(legacy)
    def pick(
        self: Any, replicas: Sequence[ReplicaLoad], request: RouteRequest | None = None
    ) -> ReplicaLoad:
        return legacy(self, replicas)

    return pick
