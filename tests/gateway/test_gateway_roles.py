"""`--role gateway` answers the data plane only; `--role control` has no data plane."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlmodel import SQLModel

from a3s_core.api.app import create_app
from a3s_core.gateway.workers import GatewayRoleApp, build_app, default_workers
from a3s_core.settings import Settings
from a3s_core.store.db import make_engine


async def test_a_gateway_role_process_has_no_api(tmp_path: Path) -> None:
    db = make_engine(f"sqlite:///{tmp_path / 'a3s.db'}")
    SQLModel.metadata.create_all(db)
    db.dispose()
    app = build_app(Settings(data_dir=tmp_path, role="gateway"))
    assert isinstance(app, GatewayRoleApp)
    await app.gateway.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://gw") as http:
            health = await http.get("/healthz")
            assert health.status_code == 200
            assert health.json()["role"] == "gateway" and "store" in health.json()
            api = await http.get("/v1/deployments", headers={"Authorization": "Bearer x"})
            assert api.status_code == 404
            assert "--role gateway" in api.json()["error"]["message"]
            data = await http.post("/d/team-a/chat/v1/chat/completions", json={},
                                   headers={"Authorization": "Bearer sk-a3s-nope"})
            assert data.status_code == 401  # the gateway itself answered, in OpenAI's shape
            assert data.json()["error"]["code"] == "invalid_api_key"
    finally:
        await app.gateway.stop()
    assert not (tmp_path / "admin-token").exists()  # no control plane: no admin token


def test_a_control_role_process_has_no_gateway(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, role="control"))
    assert app.state.platform.gateway is None


def test_the_default_worker_count_follows_the_cpus() -> None:
    assert default_workers() >= 1


def test_each_role_offers_the_fast_lane_exactly_when_it_serves_the_data_plane(
        tmp_path: Path) -> None:
    """`a3s serve`'s protocol answers data-plane paths through the app's `data_plane`
    (a3s_core/api/fast_lane.py): the gateway of `all` and `gateway`, none for `control`."""
    gateway_only = build_app(Settings(data_dir=tmp_path / "g", role="gateway"))
    assert isinstance(gateway_only, GatewayRoleApp)
    assert gateway_only.data_plane is gateway_only.gateway
    both = create_app(Settings(data_dir=tmp_path / "a", role="all"))
    assert both.data_plane is not None and both.data_plane is both.state.platform.gateway
    control = create_app(Settings(data_dir=tmp_path / "c", role="control"))
    assert control.data_plane is None
