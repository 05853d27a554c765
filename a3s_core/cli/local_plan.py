"""`a3s plan --offline`: size a request in this process, without a running platform."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from a3s_core.catalog import load_catalog
from a3s_core.cli.client import CliError
from a3s_core.errors import A3SError
from a3s_core.planning import plan_model
from a3s_core.plugins import Plugins
from a3s_core.types import DeploymentRequest


def plan_offline(body: dict[str, Any]) -> dict[str, Any]:
    try:
        request = DeploymentRequest.model_validate(body)
    except ValidationError as exc:
        e = exc.errors()[0]
        raise CliError(f"{'.'.join(map(str, e['loc']))}: {e['msg']}") from exc
    plugins, catalog = Plugins(), load_catalog()
    models = []
    for spec in request.models:
        entry: dict[str, Any] = {"name": spec.name, "model": spec.model, "engine": spec.engine}
        try:
            _, plan = plan_model(plugins, catalog, spec)
            entry["plan"] = plan.model_dump(mode="json")
        except A3SError as exc:
            entry["error"] = {"code": exc.code, "message": exc.message}
        models.append(entry)
    return {"namespace": request.resolved_namespace(), "models": models}
