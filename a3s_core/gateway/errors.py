"""Data-plane errors in OpenAI's shape, so the `openai` client raises its own exceptions
(AuthenticationError, PermissionDeniedError, NotFoundError, …) with our message."""

from __future__ import annotations

import json
import math

from a3s_core.gateway.asgi import Reply, encode_headers
from a3s_core.keys import PREFIX as KEY_PREFIX
from a3s_core.settings import ADMIN_TOKEN_PREFIX as ADMIN_PREFIX


class GatewayError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, dict[str, str | None]]:
        return {
            "error": {"message": self.message, "type": self.type, "param": self.param,
                      "code": self.code}
        }

    async def send(self, reply: Reply) -> None:
        headers = encode_headers({"content-type": "application/json", **self.headers})
        await reply.whole(self.status, headers, json.dumps(self.body()).encode())


def missing_key() -> GatewayError:
    return GatewayError(
        401,
        "You didn't provide an API key. Send it as 'Authorization: Bearer sk-a3s-…' "
        "(or in an 'api-key' or 'x-api-key' header): the key returned when the deployment "
        "was created.",
        code="missing_api_key", headers={"WWW-Authenticate": "Bearer"},
    )


def invalid_key(key: str, revoked: bool) -> GatewayError:
    """A refused credential, named by its kind only: no part of it is ever echoed (an
    error ends up in client logs, screenshots and bug reports)."""
    if revoked:
        message = ("The API key you sent has been revoked; use the deployment's current key "
                   "(`a3s rotate-key` issues a new one).")
    elif key.startswith(KEY_PREFIX):
        message = "The API key you sent is not valid: it is no deployment's key."
    elif key.startswith(ADMIN_PREFIX):
        message = ("The credential you sent looks like the platform's admin token, which does "
                   f"not call models; send the deployment's API key ({KEY_PREFIX}…).")
    else:
        message = (f"The credential you sent is not an A3S API key (those start with "
                   f"'{KEY_PREFIX}'); send the key returned when the deployment was created.")
    return GatewayError(401, message, code="invalid_api_key",
                        headers={"WWW-Authenticate": "Bearer"})


def foreign_key(target: str) -> GatewayError:
    return GatewayError(
        403, f"This API key does not open deployment {target}; use that deployment's own key.",
        type_="permission_error", code="forbidden",
    )


def unknown_model(what: str) -> GatewayError:
    return GatewayError(
        404, f"The model {what} does not exist.", code="model_not_found", param="model",
    )


def bad_request(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param)


def unavailable(message: str, retry_after_s: float | None = None) -> GatewayError:
    headers = {"Retry-After": str(max(1, round(retry_after_s)))} if retry_after_s else {}
    return GatewayError(503, message, type_="server_error", code="service_unavailable",
                        headers=headers)


class StoreUnavailable(GatewayError):
    """The platform's store cannot be read, and the gateway's last copy of it does not
    settle this request (no copy yet, a name or key it has not seen, or rows older than a
    change made in this process). The driver's error is logged, never shown: it can name
    hosts, users and SQL."""

    def __init__(self, retry_after_s: float = 1.0) -> None:
        super().__init__(
            503,
            "The platform's store is unreachable, and the gateway cannot settle this request "
            "without it; try again shortly.",
            type_="server_error", code="store_unavailable",
            headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))},
        )
