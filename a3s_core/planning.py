"""From a model spec to a sizing plan (profile → size → engine check), and dry runs."""

from __future__ import annotations

import asyncio
from typing import Any

from a3s_core.catalog import GpuCatalog
from a3s_core.errors import A3SError, SizingError
from a3s_core.platform import Platform
from a3s_core.plugins import Plugins
from a3s_core.types import DeploymentRequest, ModelProfile, ModelSpec, SizingPlan


def resolve_plan(platform: Platform, spec: ModelSpec) -> tuple[ModelProfile, SizingPlan]:
    """Profile the model, size it, and let the engine refuse what it cannot serve.
    Blocking (may read a checkpoint or ask the hub): call from a thread."""
    return plan_model(platform.plugins, platform.catalog, spec)


def plan_model(
    plugins: Plugins, catalog: GpuCatalog, spec: ModelSpec
) -> tuple[ModelProfile, SizingPlan]:
    """`resolve_plan` without a running platform (the CLI's offline plan uses it too)."""
    revision = spec.extra_args.get("revision") if isinstance(spec.extra_args, dict) else None
    profile = plugins.model_profile(spec.model, revision)
    plan = plugins.size(profile, spec, catalog.gpus)
    engine = plugins.engines.get(spec.engine)()
    reason = engine.check(profile, plan)
    if reason:
        raise SizingError(f"engine {spec.engine!r} cannot serve {spec.model!r}: {reason}")
    if not engine.needs_gpu_for(spec.extra_args):
        plan = plan.model_copy(update={"cpu_only": True})
    return profile, plan


async def plan_request(platform: Platform, request: DeploymentRequest) -> dict[str, Any]:
    """The dry-run answer: per model, the plan (with its arithmetic) and where it would
    land now — or the error, per model, so one bad model does not hide the others."""
    from a3s_core.deployments import check_names

    check_names(platform, request)
    out: list[dict[str, Any]] = []
    for spec in request.models:
        entry: dict[str, Any] = {"name": spec.name, "model": spec.model, "engine": spec.engine}
        try:
            _, plan = await asyncio.to_thread(resolve_plan, platform, spec)
            entry["plan"] = plan.model_dump(mode="json")
            if platform.controller is not None:
                entry["placement"] = await platform.controller.preview(spec, plan, request)
        except A3SError as exc:
            entry["error"] = {"code": exc.code, "message": exc.message}
        out.append(entry)
    return {"namespace": request.resolved_namespace(), "models": out}
