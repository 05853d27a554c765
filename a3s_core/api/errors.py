"""Errors → HTTP responses, in one place."""

from __future__ import annotations

import math
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from a3s_core.errors import A3SError, InvalidRequest
from a3s_core.types.spec import short

MAX_TEXT = 200  # characters of a value sent back in an error
MAX_ITEMS = 20  # entries of a list or object sent back in an error
MAX_MESSAGE = 2000  # characters of an error message
REDACTED = "<redacted>"
# Field names whose values are credentials: never sent back (api_key, apiKey, hf_token,
# x-api-key, password, …; not max_num_batched_tokens).
_SECRET = re.compile(
    r"(^|_)(api_?key|token|access_?key|secret(_?key)?|password|passwd|authorization|"
    r"credentials?|private_?key)$"
)


def is_secret(name: str) -> bool:
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).replace("-", "_").lower()
    return bool(_SECRET.search(snake))


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


def _text(s: str, limit: int = MAX_TEXT) -> str:
    """Sendable (a lone surrogate escaped, not a failed response) and at most `limit`."""
    try:
        s.encode()
    except UnicodeEncodeError:
        s = s.encode("utf-8", "backslashreplace").decode()
    return s if len(s) <= limit else f"{s[:limit]}… ({len(s)} characters)"


def _value(v: Any, depth: int = 0) -> Any:
    """What was sent, safe to send back: JSON-encodable (NaN / Infinity as text), long
    strings and containers cut, credentials redacted."""
    if v is None or isinstance(v, bool | int):
        return v if not isinstance(v, int) or abs(v) < 10**30 else _text(str(v), 40)
    if isinstance(v, float) and not math.isfinite(v):  # JSON has no NaN: its JS spelling
        return "NaN" if math.isnan(v) else "Infinity" if v > 0 else "-Infinity"
    if isinstance(v, float):
        return v
    if isinstance(v, str):
        return _text(v)
    if depth >= 3:
        return "…"
    if isinstance(v, dict):
        out = {
            _text(str(k), 80): REDACTED if is_secret(str(k)) else _value(x, depth + 1)
            for k, x in list(v.items())[:MAX_ITEMS]
        }
        if len(v) > MAX_ITEMS:
            out["…"] = f"{len(v) - MAX_ITEMS} more"
        return out
    if isinstance(v, list | tuple):
        items = [_value(x, depth + 1) for x in list(v)[:MAX_ITEMS]]
        if len(v) > MAX_ITEMS:
            items.append(f"… {len(v) - MAX_ITEMS} more")
        return items
    return _text(repr(v))


def _detail_value(field: str, v: Any) -> Any:
    last = re.split(r"[.\[\]]", field.rstrip("]"))[-1]
    return REDACTED if is_secret(last.strip("'\"")) else _value(v)


def validation_payload(errors: list[dict[str, Any]]) -> dict[str, Any]:
    details = []
    quote_first = True
    for i, err in enumerate(errors):
        loc = err.get("loc") or ()
        field = _loc(loc)
        value = err.get("input")
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        ctx = err.get("ctx") or {}
        if err.get("type") == "json_invalid":  # loc is ('body', <offset>)
            field, value = "body", None
            where = f" at offset {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
            msg = f"not valid JSON: {ctx.get('error', 'decode error')}{where}"
            quote_first = quote_first and i > 0
        elif err.get("type") == "json_value":  # a3s_core.types.spec: inside extra_args…
            field, value = field + str(ctx["at"]), ctx.get("got")
        details.append(
            {"field": field, "value": _detail_value(field, value), "message": _text(msg, 500)}
        )
    first = details[0] if details else {"field": "body", "message": "invalid request"}
    summary = f"{first['field']}: {first['message']}"
    if quote_first and "value" in first and not isinstance(first["value"], dict | list):
        summary += f" (got {first['value']!r})"
    if len(details) > 1:
        others = ", ".join(dict.fromkeys(d["field"] for d in details[1:6]))
        summary += f"; and {len(details) - 1} more problem(s): {others}"
    return {"error": {"code": "invalid_request", "message": summary, "details": details}}


def _unparsable(exc: BaseException | None) -> str:
    """Why FastAPI could not read a body it only reports as 'error parsing the body'."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 (byte {exc.object[exc.start:exc.start + 1]!r} at offset {exc.start})"
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    if isinstance(exc, ValueError) and "integer string conversion" in str(exc):
        return "not readable JSON: an integer has more than 4300 digits"
    if isinstance(exc, ValueError):
        return f"not readable JSON: {_text(str(exc), 120)}"
    return "could not be read"


def a3s_error_body(exc: A3SError) -> dict[str, Any]:
    """The `error` object for a platform error (HTTP answers and WebSocket refusals alike):
    the value quoted short and safe, credentials redacted, the field named."""
    message = exc.message
    if isinstance(exc, InvalidRequest) and isinstance(exc.value, str):
        # Messages quote the value with repr (UnknownPlugin, extra_args): cut it there.
        message = message.replace(repr(exc.value), short(exc.value))
    message = _text(message, MAX_MESSAGE)
    if isinstance(exc, InvalidRequest) and exc.field and exc.field not in message:
        message = f"{exc.field}: {message}"  # e.g. UnknownPlugin: "engine 'x' is not …"
    body: dict[str, Any] = {"code": exc.code, "message": message}
    if isinstance(exc, InvalidRequest):
        body["details"] = [
            {"field": exc.field, "value": _detail_value(exc.field or "", exc.value),
             "message": message}
        ]
    body.update({k: _value(v) for k, v in exc.detail.items() if k not in ("field", "value")})
    return body


def _not_json(err: dict[str, Any]) -> bool:
    """FastAPI hands a body whose Content-Type is not JSON to validation as raw bytes."""
    return tuple(err.get("loc") or ()) == ("body",) and isinstance(err.get("input"), bytes)


def _unsupported_media_type(content_type: str) -> JSONResponse:
    """415 naming the header (`curl -d` sends form-urlencoded unless told otherwise),
    rather than a 422 quoting the body back as Python bytes."""
    got = _text(content_type, 100)
    message = (
        f"Content-Type {got!r} is not JSON; send the body as JSON with "
        "'Content-Type: application/json'"
        if content_type
        else "Content-Type is missing; send the body as JSON with "
        "'Content-Type: application/json'"
    )
    detail = {"field": "Content-Type", "value": got, "message": message}
    error = {"code": "unsupported_media_type", "message": message, "details": [detail]}
    return JSONResponse({"error": error}, status_code=415)


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(_not_json(e) for e in errors):
            return _unsupported_media_type(request.headers.get("content-type", ""))
        return JSONResponse(validation_payload(errors), status_code=422)

    @app.exception_handler(A3SError)
    async def _a3s(_: Request, exc: A3SError) -> JSONResponse:
        return JSONResponse({"error": a3s_error_body(exc)}, status_code=exc.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        """FastAPI's own refusals, in the API's error shape. A body it could not parse
        (not UTF-8, nested too deeply, a number too long) is bad input like any other."""
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            why = _unparsable(exc.__cause__)
            detail = {"field": "body", "value": None, "message": why}
            error = {"code": "invalid_request", "message": f"body: {why}", "details": [detail]}
            return JSONResponse({"error": error}, status_code=422)
        codes = {401: "unauthorized", 403: "forbidden", 404: "not_found", 409: "conflict"}
        code = codes.get(exc.status_code, "invalid_request" if exc.status_code < 500 else "error")
        error = {"code": code, "message": _text(str(exc.detail), MAX_MESSAGE)}
        return JSONResponse({"error": error}, status_code=exc.status_code, headers=exc.headers)
