"""Errors → HTTP responses, in one place."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from a3s_core.errors import A3SError, InvalidRequest


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    """('body', 'models', 0, 'name') → 'models[0].name'."""
    out = ""
    for part in loc:
        if part in ("body",) and not out:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def _value(v: Any) -> Any:
    try:
        json.dumps(v)
        return v
    except TypeError:
        return repr(v)


def validation_payload(errors: list[dict[str, Any]]) -> dict[str, Any]:
    details = []
    for err in errors:
        field = _loc(err.get("loc", ()))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        details.append({"field": field, "value": _value(err.get("input")), "message": msg})
    first = details[0] if details else {"field": "body", "message": "invalid request"}
    summary = f"{first['field']}: {first['message']}"
    if "value" in first and not isinstance(first["value"], dict | list):
        summary += f" (got {first['value']!r})"
    if len(details) > 1:
        summary += f"; and {len(details) - 1} more problem(s)"
    return {"error": {"code": "invalid_request", "message": summary, "details": details}}


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_payload(list(exc.errors())), status_code=422)

    @app.exception_handler(A3SError)
    async def _a3s(_: Request, exc: A3SError) -> JSONResponse:
        body: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if isinstance(exc, InvalidRequest):
            body["details"] = [
                {"field": exc.field, "value": _value(exc.value), "message": exc.message}
            ]
        extra = {k: _value(v) for k, v in exc.detail.items() if k not in ("field", "value")}
        body.update(extra)
        return JSONResponse({"error": body}, status_code=exc.status_code)
