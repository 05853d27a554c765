"""Which paths the data plane answers (before FastAPI sees them) and what they name."""

from __future__ import annotations

import pytest

from a3s_core.gateway import asgi
from a3s_core.gateway.asgi import Route, match, route_of


@pytest.mark.parametrize(("path", "expected"), [
    ("/v1/chat/completions", Route("/v1/chat/completions", "POST", asked="/v1/chat/completions")),
    ("/v1/embeddings", Route("/v1/embeddings", "POST", asked="/v1/embeddings")),
    ("/v1/models", Route("/v1/models", "GET", asked="/v1/models")),
    ("/v1/models/qwen", Route("/v1/models", "GET", model="qwen", asked="/v1/models/qwen")),
    ("/v1/models/org/model", Route("/v1/models", "GET", model="org/model",
                                   asked="/v1/models/org/model")),
    ("/d/team-a/qwen/v1/completions", Route("/v1/completions", "POST", "team-a", "qwen",
                                            asked="/d/team-a/qwen/v1/completions")),
    ("/d/team-a/qwen/v1/files", Route("", "", "team-a", "qwen", asked="/d/team-a/qwen/v1/files")),
    ("/d/team-a/qwen", Route("", "", "team-a", "qwen", asked="/d/team-a/qwen")),
])
def test_data_plane_paths(path: str, expected: Route) -> None:
    assert match(path) == expected


@pytest.mark.parametrize("path", [
    "/v1/deployments", "/v1/deployments/abc/events", "/v1/events", "/v1/system", "/healthz",
    "/metrics", "/d/", "/d/team-a", "/d//qwen/v1/models", "/v1/chat/completions/x",
])
def test_control_plane_paths_are_not_the_gateways(path: str) -> None:
    assert match(path) is None


def test_a_mount_prefix_is_stripped() -> None:
    scope = {"path": "/a3s/v1/models", "root_path": "/a3s"}
    assert route_of(scope) == Route("/v1/models", "GET", asked="/v1/models")
    assert route_of({"path": "/v1/models"}) == Route("/v1/models", "GET", asked="/v1/models")


def test_routes_are_remembered_by_path_within_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asgi, "_MATCHED", {})
    monkeypatch.setattr(asgi, "MATCHED_MAX", 3)
    scope = {"path": "/d/team-a/qwen/v1/chat/completions"}
    first = route_of(scope)
    assert first == match(scope["path"]) and route_of(dict(scope)) is first
    for i in range(10):  # clients choose paths: the memory of them stays bounded
        assert route_of({"path": f"/d/ns/n{i}/v1/models"}) == Route(
            "/v1/models", "GET", "ns", f"n{i}", asked=f"/d/ns/n{i}/v1/models")
    assert len(asgi._MATCHED) == 3
    assert route_of({"path": "/v1/system"}) is None
