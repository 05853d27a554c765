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


async def plan_request(
    platform: Platform, request: DeploymentRequest
) -> tuple[dict[str, Any], int]:
    """The dry-run answer and its HTTP status: per model, the plan (with its arithmetic) and
    where it would land now — or the error, per model, so one bad model does not hide the
    others. When any model cannot be sized the answer is that model's error status (422
    for a model that cannot be served as asked, 503 when its hub cannot be reached), with a
    top-level `error` naming every model that failed; otherwise 200."""
    from a3s_core.deployments import check_names

    check_names(platform, request)
    out: list[dict[str, Any]] = []
    failed: list[tuple[int, ModelSpec, A3SError]] = []
    for i, spec in enumerate(request.models):
        entry: dict[str, Any] = {"name": spec.name, "model": spec.model, "engine": spec.engine}
        try:
            _, plan = await asyncio.to_thread(resolve_plan, platform, spec)
            entry["plan"] = plan.model_dump(mode="json")
            if platform.controller is not None:
                entry["placement"] = await platform.controller.preview(spec, plan, request)
        except A3SError as exc:
            entry["error"] = {"code": exc.code, "message": exc.message}
            failed.append((i, spec, exc))
        out.append(entry)
    body: dict[str, Any] = {"namespace": request.resolved_namespace(), "models": out}
    if not failed:
        return body, 200
    i, spec, first = failed[0]
    where = f"models[{i}] ({spec.name})"
    if spec.model not in first.message:
        where += f" model {spec.model!r}"
    message = f"{where}: {first.message}"
    if len(failed) > 1:
        message += f"; {len(failed) - 1} more model(s) cannot be planned either: " + ", ".join(
            s.name for _, s, _ in failed[1:])
    body["error"] = {"code": first.code, "message": message,
                     "models": [s.name for _, s, _ in failed]}
    return body, first.status_code
