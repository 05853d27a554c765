"""The platform's errors. Mapped to HTTP responses in one place (`api/errors.py`)."""

from __future__ import annotations

from typing import Any


class A3SError(Exception):
    """Base: a message for humans, a status for HTTP, optional structured detail."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class InvalidRequest(A3SError):
    """Input that cannot be accepted; `field` names where, `value` what."""

    status_code = 422
    code = "invalid_request"

    def __init__(self, message: str, field: str | None = None, value: Any = None) -> None:
        super().__init__(message, field=field, value=value)
        self.field = field
        self.value = value


class UnknownPlugin(InvalidRequest):
    """A request names an engine / strategy / policy / runtime nobody registered."""

    def __init__(self, kind: str, name: str, installed: list[str], field: str | None = None):
        listed = ", ".join(sorted(installed)) or "none"
        super().__init__(
            f"{kind} {name!r} is not available (plugin may not be installed); installed: {listed}",
            field=field,
            value=name,
        )
        self.kind = kind
        self.installed = sorted(installed)


class PluginError(A3SError):
    """A plugin failed to load or two plugins claim the same name. Fails start-up."""

    code = "plugin_error"


class NotFound(A3SError):
    status_code = 404
    code = "not_found"


class Conflict(A3SError):
    status_code = 409
    code = "conflict"


class Unauthorized(A3SError):
    status_code = 401
    code = "unauthorized"


class Forbidden(A3SError):
    status_code = 403
    code = "forbidden"


class ModelNotFound(A3SError):
    """The model id is not on the hub (or the path does not exist)."""

    status_code = 422
    code = "model_not_found"


class ModelUnavailable(A3SError):
    """The model exists but cannot be read now: gated, hub unreachable, offline."""

    status_code = 422
    code = "model_unavailable"


class HubUnreachable(ModelUnavailable):
    """The model hub cannot be reached (or timed out): nothing is wrong with the request,
    so a retry later may work."""

    status_code = 503


class SizingError(A3SError):
    """The model cannot be sized as asked (e.g. max_model_len larger than fits anywhere)."""

    status_code = 422
    code = "sizing_error"


class Unschedulable(A3SError):
    """No node can take the replica now. Carries the reason and computed suggestions."""

    status_code = 409
    code = "unschedulable"

    def __init__(self, message: str, suggestions: list[str] | None = None) -> None:
        super().__init__(message, suggestions=suggestions or [])
        self.suggestions = suggestions or []


class RuntimeUnavailable(A3SError):
    """The runtime cannot do what was asked (no GPU, no engine binary, API unreachable)."""

    status_code = 503
    code = "runtime_unavailable"
