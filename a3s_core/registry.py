"""Typed registries passed into the `a3s_register_*` hooks (tox style)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from a3s_core.contracts import Balancer, Engine, Runtime, ScalingRule, SchedulerStrategy
from a3s_core.errors import PluginError, UnknownPlugin

T = TypeVar("T")


class Registry(Generic[T]):
    """Name → class. A second registration of a name fails naming both plugins."""

    kind: str = "plugin"
    field: str | None = None

    def __init__(self) -> None:
        self._items: dict[str, type[T]] = {}
        self._owners: dict[str, str] = {}
        self.current_plugin = "<unknown>"  # set by the plugin manager around each hook call

    def register(self, cls: type[T]) -> None:
        name: str = getattr(cls, "name", "")
        if not name:
            raise PluginError(f"{self.kind} {cls!r} from plugin {self.current_plugin} has no name")
        if name in self._items:
            raise PluginError(
                f"{self.kind} {name!r} is registered twice: by plugin {self._owners[name]!r} "
                f"and by plugin {self.current_plugin!r}; uninstall or disable one "
                "(A3S_DISABLED_PLUGINS)"
            )
        self._items[name] = cls
        self._owners[name] = self.current_plugin

    def get(self, name: str) -> type[T]:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownPlugin(self.kind, name, list(self._items), field=self.field) from None

    def owner(self, name: str) -> str:
        return self._owners[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)


class EngineRegistry(Registry[Engine]):
    kind = "engine"
    field = "models[].engine"


class SchedulerRegistry(Registry[SchedulerStrategy]):
    kind = "scheduler"
    field = "models[].scheduler"


class BalancerRegistry(Registry[Balancer]):
    kind = "balancer"
    field = "models[].balancer"


class ScalingRuleRegistry(Registry[ScalingRule]):
    kind = "scaling rule"

    def replace(self, cls: type[ScalingRule]) -> None:
        """Swap a rule of the same name (a plugin may replace a built-in rule on purpose)."""
        self._items[cls.name] = cls
        self._owners[cls.name] = self.current_plugin

    def remove(self, name: str) -> None:
        self._items.pop(name, None)
        self._owners.pop(name, None)


class RuntimeRegistry(Registry[Runtime]):
    kind = "runtime"
    field = "runtime"
