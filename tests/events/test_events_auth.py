"""Every socket needs the admin token; a wrong or missing one is refused before the
upgrade completes (checked with a real server and a real WebSocket client too)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from events_testkit import Server, refused
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from a3s_core.api.app import create_app
from a3s_core.testing import ADMIN_TOKEN

PATHS = ["/v1/events", "/v1/deployments/dep-x/events", "/v1/deployments/dep-x/logs"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("headers", "query", "status"),
    [
        ({}, "", 401),
        ({"Authorization": "Bearer wrong"}, "", 401),
        ({"Authorization": "Basic " + ADMIN_TOKEN}, "", 401),
        ({}, "?token=wrong", 401),
    ],
    ids=["missing", "wrong-header", "not-bearer", "wrong-query"],
)
def test_bad_token_is_refused_before_upgrade(
    make_app: Any, path: str, headers: dict[str, str], query: str, status: int
) -> None:
    client = make_app()
    client.headers.pop("Authorization")
    denied = refused(client, path + query, headers=headers)
    assert denied.status_code == status
    assert denied.json()["error"]["code"] == "unauthorized"


def test_token_in_header_or_query_is_accepted(make_app: Any) -> None:
    client = make_app()
    with (
        client.websocket_connect("/v1/events?since=0&follow=false") as ws,
        pytest.raises(WebSocketDisconnect) as closed,  # accepted, empty, caught up
    ):
        ws.receive_json()
    assert closed.value.code == 1000 and "caught up at seq 0" in closed.value.reason
    client.headers.pop("Authorization")
    with client.websocket_connect(f"/v1/events?token={ADMIN_TOKEN}&heartbeat=0.05") as ws:
        assert ws.receive_json()["type"] == "heartbeat"


@pytest.fixture
def server(a3s_settings: Any, a3s_plugins: Any) -> Iterator[Server]:
    with Server(create_app(a3s_settings, a3s_plugins)) as s:
        yield s


async def test_real_client_handshake_fails_without_the_token(server: Server) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(server.ws + "/v1/events", additional_headers=headers):
                pass
        response = refused.value.response
        assert response.status_code == 401
        assert json.loads(response.body or b"{}")["error"]["code"] == "unauthorized"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            server.ws + "/v1/deployments/dep-nope/events",
            additional_headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ):
            pass
    assert refused.value.response.status_code == 404
    async with connect(
        server.ws + "/v1/events?heartbeat=0.05",
        additional_headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "heartbeat"
    async with connect(server.ws + f"/v1/events?heartbeat=0.05&token={ADMIN_TOKEN}") as ws:
        assert json.loads(await ws.recv())["type"] == "heartbeat"
