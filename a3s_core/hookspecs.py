"""THE contract between the core and its plugins. Each docstring is the hook's spec.

Hooks that produce one answer are `firstresult` (the core's default is a `trylast`
implementation a plugin pre-empts by returning a value). Things chosen by name are
registered into a typed registry object passed to the hook.
"""

from __future__ import annotations

import pluggy

from a3s_core.registry import (
    BalancerRegistry,
    EngineRegistry,
    RuntimeRegistry,
    ScalingRuleRegistry,
    SchedulerRegistry,
)
from a3s_core.types import Event, GpuType, ModelProfile, ModelSpec, SizingPlan

hookspec = pluggy.HookspecMarker("a3s")

# ---------------------------------------------------------------- sizing (one answer)


@hookspec(firstresult=True)
def a3s_model_profile(model: str, revision: str | None) -> ModelProfile | None:
    """Architecture facts for `model` (a Hugging Face id or a local path) at `revision`.

    Return a ModelProfile, or None when this source does not know the model. Stops at the
    first non-None result. Built-in order: knowledge base, local directory / GGUF file,
    Hugging Face Hub. Raise ModelNotFound / ModelUnavailable to stop the search with a
    one-sentence error naming the model and what to do."""


@hookspec(firstresult=True)
def a3s_size(profile: ModelProfile, spec: ModelSpec, catalog: list[GpuType]) -> SizingPlan | None:
    """A sizing plan for serving `profile` as `spec` asks on any GPU type of `catalog`.

    Return a SizingPlan whose candidates are ranked best first, with the arithmetic in
    `explanation`, or None to leave it to the next implementation. Stops at the first
    non-None result. Raise SizingError when the request cannot be met as asked."""


# ---------------------------------------------------------------- things chosen by name


@hookspec
def a3s_register_engines(registry: EngineRegistry) -> None:
    """Register Engine subclasses with `registry.register(cls)`; `cls.name` is what a
    request's `engine` field says."""


@hookspec
def a3s_register_schedulers(registry: SchedulerRegistry) -> None:
    """Register SchedulerStrategy subclasses (filter → score); chosen by the platform
    setting `scheduler` or a model's `scheduler` field."""


@hookspec
def a3s_register_balancers(registry: BalancerRegistry) -> None:
    """Register Balancer subclasses (pick a replica from live load); chosen by the setting
    `balancer` or a model's `balancer` field. One instance is made per deployment."""


@hookspec
def a3s_register_scaling_rules(registry: ScalingRuleRegistry) -> None:
    """Register ScalingRule subclasses. Every registered rule votes; any 'up' scales up,
    'down' needs all. Use `registry.replace` / `registry.remove` to change built-ins."""


@hookspec
def a3s_register_runtimes(registry: RuntimeRegistry) -> None:
    """Register Runtime subclasses (list nodes, create / delete / observe replicas, logs);
    the platform setting `runtime` picks one."""


# ---------------------------------------------------------------- observers


@hookspec
def a3s_on_event(event: Event) -> None:
    """Called for every event after it is persisted (it has its `seq`). Observers must be
    quick and must not raise; an exception is logged and the event stream goes on."""
