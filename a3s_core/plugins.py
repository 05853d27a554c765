"""The only module that touches pluggy: builds the plugin manager and wraps `pm.hook`.

Built-in defaults are registered exactly as a third party's plugin would be; then the
`a3s` entry-point group is loaded, once, when the manager is first built (never at import).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from importlib import metadata
from typing import Any, TypeVar

import pluggy

from a3s_core import hookspecs
from a3s_core.errors import ModelNotFound, PluginError, SizingError
from a3s_core.registry import (
    BalancerRegistry,
    EngineRegistry,
    Registry,
    RuntimeRegistry,
    ScalingRuleRegistry,
    SchedulerRegistry,
)
from a3s_core.types import Event, GpuType, ModelProfile, ModelSpec, SizingPlan

ENTRY_POINT_GROUP = "a3s"

# Behaviour that must always exist, written as ordinary plugins (datasette's default_*.py).
DEFAULT_PLUGINS: tuple[str, ...] = (
    "a3s_core.sizing.default_profiles",
    "a3s_core.sizing.default_sizer",
    "a3s_core.scaling.default_rules",
)

R = TypeVar("R", bound=Registry[Any])


def _names_from_env(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def build_plugin_manager(load_entry_points: bool = True) -> pluggy.PluginManager:
    """Defaults, then the `a3s` entry points (filtered by A3S_LOAD_PLUGINS /
    A3S_DISABLED_PLUGINS). An entry point that fails to import raises PluginError naming
    its distribution."""
    pm = pluggy.PluginManager("a3s")
    pm.add_hookspecs(hookspecs)
    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
    if not load_entry_points:
        return pm
    allow = _names_from_env("A3S_LOAD_PLUGINS")
    block = _names_from_env("A3S_DISABLED_PLUGINS") or set()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if (allow is not None and ep.name not in allow) or ep.name in block:
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        dist = ep.dist.name if ep.dist else "<unknown distribution>"
        try:
            plugin = ep.load()
        except Exception as exc:  # report, never swallow
            raise PluginError(
                f"plugin {ep.name!r} from distribution {dist!r} failed to import: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        pm.register(plugin, name=ep.name)
        pm._a3s_dists = {**getattr(pm, "_a3s_dists", {}), ep.name: ep.dist}  # type: ignore[attr-defined]
    return pm


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str | None
    distribution: str | None
    hooks: list[str]


class Plugins:
    """Typed facade over the plugin manager; the rest of the code never touches pluggy."""

    def __init__(self, pm: pluggy.PluginManager | None = None) -> None:
        self._pm = pm

    @property
    def pm(self) -> pluggy.PluginManager:
        if self._pm is None:
            self._pm = build_plugin_manager()
        return self._pm

    # -- registration (tests and embedding) -------------------------------------------

    def register(self, plugin: object, name: str | None = None) -> str:
        registered = self.pm.register(plugin, name=name)
        self._invalidate()
        return registered or ""

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._invalidate()

    def _invalidate(self) -> None:
        for attr in ("engines", "schedulers", "balancers", "scaling_rules", "runtimes"):
            self.__dict__.pop(attr, None)

    def check(self) -> None:
        """Build every registry now, so duplicates fail at start-up, not on first use."""
        for attr in ("engines", "schedulers", "balancers", "scaling_rules", "runtimes"):
            getattr(self, attr)

    # -- registries ---------------------------------------------------------------------

    def _collect(self, hook_name: str, registry: R) -> R:
        caller = getattr(self.pm.hook, hook_name)
        # Call implementations one by one, in pluggy's call order (tryfirst, then newest
        # first), so each registration knows its owner.
        for impl in reversed(caller.get_hookimpls()):
            registry.current_plugin = impl.plugin_name
            impl.function(registry=registry)
        registry.current_plugin = "<unknown>"
        return registry

    @cached_property
    def engines(self) -> EngineRegistry:
        return self._collect("a3s_register_engines", EngineRegistry())

    @cached_property
    def schedulers(self) -> SchedulerRegistry:
        return self._collect("a3s_register_schedulers", SchedulerRegistry())

    @cached_property
    def balancers(self) -> BalancerRegistry:
        return self._collect("a3s_register_balancers", BalancerRegistry())

    @cached_property
    def scaling_rules(self) -> ScalingRuleRegistry:
        return self._collect("a3s_register_scaling_rules", ScalingRuleRegistry())

    @cached_property
    def runtimes(self) -> RuntimeRegistry:
        return self._collect("a3s_register_runtimes", RuntimeRegistry())

    # -- one-answer hooks -----------------------------------------------------------------

    def model_profile(self, model: str, revision: str | None = None) -> ModelProfile:
        profile = self.pm.hook.a3s_model_profile(model=model, revision=revision)
        if profile is None:
            raise ModelNotFound(
                f"model {model!r} is not in the knowledge base, not a local path, and could "
                "not be looked up; give a Hugging Face id or a directory with config.json"
            )
        return profile  # type: ignore[no-any-return]

    def size(self, profile: ModelProfile, spec: ModelSpec, catalog: list[GpuType]) -> SizingPlan:
        plan = self.pm.hook.a3s_size(profile=profile, spec=spec, catalog=catalog)
        if plan is None:
            raise SizingError(f"no sizing plugin could size model {spec.model!r}")
        return plan  # type: ignore[no-any-return]

    # -- broadcast ------------------------------------------------------------------------

    def on_event(
        self, event: Event, on_error: Callable[[str, Exception], None] | None = None
    ) -> None:
        for impl in self.pm.hook.a3s_on_event.get_hookimpls():
            try:
                impl.function(event=event)
            except Exception as exc:  # an observer never breaks the stream
                if on_error:
                    on_error(impl.plugin_name, exc)

    # -- introspection ----------------------------------------------------------------------

    def describe(self) -> list[PluginInfo]:
        dists: dict[str, Any] = getattr(self.pm, "_a3s_dists", {})
        core_version = _version("a3s-core")
        out = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            dist = dists.get(name)
            out.append(
                PluginInfo(
                    name=name,
                    version=dist.version if dist else core_version,
                    distribution=dist.name if dist else ("a3s-core (built-in)"),
                    hooks=hooks,
                )
            )
        return sorted(out, key=lambda p: (p.distribution != "a3s-core (built-in)", p.name))


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
