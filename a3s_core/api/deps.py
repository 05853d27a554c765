"""FastAPI dependencies: the platform container and admin authentication."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, WebSocket

from a3s_core.errors import Unauthorized
from a3s_core.platform import Platform


def get_platform(request: Request) -> Platform:
    return request.app.state.platform  # type: ignore[no-any-return]


PlatformDep = Annotated[Platform, Depends(get_platform)]


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def check_admin(platform: Platform, token: str | None) -> None:
    if token is None:
        raise Unauthorized("missing admin token: send 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(token.encode(), platform.admin_token.encode()):
        raise Unauthorized("wrong admin token")


def require_admin(request: Request, platform: PlatformDep) -> None:
    check_admin(platform, bearer(request.headers.get("authorization")))


def admin_token_of_socket(ws: WebSocket) -> str | None:
    """Header, or `?token=` for browsers (which cannot set headers on a WebSocket)."""
    return bearer(ws.headers.get("authorization")) or ws.query_params.get("token")


Admin = Depends(require_admin)
