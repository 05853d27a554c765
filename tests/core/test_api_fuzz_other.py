"""Hostile input to the rest of the control plane: scale, the list's query, and the event
and log sockets' parameters. As for bodies: a 4xx naming the field and the value, nothing
changed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from api_fuzz_kit import (
    ANY,
    CEILING,
    SECRET,
    _counts,
    assert_refused,
    model,
    platform_client,
)
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with platform_client(tmp_path_factory) as c:
        yield c


# --------------------------------------------------------------- scale


@pytest.fixture(scope="module")
def deployed(client: TestClient) -> dict[str, str]:
    """A live deployment, one with autoscaling bounds 2..3, and a deleted (deleting) one."""
    body = {
        "namespace": "scale-fuzz",
        "models": [
            model(name="live", replicas=2),
            model(name="bounded", replicas=2, autoscaling={"minReplicas": 2, "maxReplicas": 3}),
            model(name="gone"),
            model(name="manual", autoscaling={"enabled": False}),
        ],
    }
    r = client.post("/v1/deployments", json=body)
    assert r.status_code == 202, r.text
    ids = {d["name"]: d["id"] for d in r.json()["deployments"]}
    assert client.delete(f"/v1/deployments/{ids['gone']}").status_code == 202
    return ids


SCALE: list[tuple[str, Any, str, Any]] = [
    ("negative", {"replicas": -1}, "replicas", -1),
    ("zero", {"replicas": 0}, "replicas", 0),
    ("float", {"replicas": 1.5}, "replicas", 1.5),
    ("whole float", {"replicas": 3.0}, "replicas", 3.0),
    ("string", {"replicas": "3"}, "replicas", "3"),
    ("true", {"replicas": True}, "replicas", True),
    ("false", {"replicas": False}, "replicas", False),
    ("null", {"replicas": None}, "replicas", None),
    ("list", {"replicas": [3]}, "replicas", ANY),
    ("above the ceiling", {"replicas": CEILING + 1}, "replicas", CEILING + 1),
    ("huge", {"replicas": 10**30}, "replicas", ANY),
    ("1e308", {"replicas": 1e308}, "replicas", 1e308),
    ("missing", {}, "replicas", ANY),
    ("unknown field", {"replicas": 3, "force": True}, "force", True),
    ("camelCase alias", {"desiredReplicas": 3}, "replicas", ANY),
    ("credential", {"replicas": 3, "token": SECRET}, "token", ANY),
    ("body a list", [3], "body", ANY),
    ("body a number", 3, "body", 3),
]
SCALE_RAW: list[tuple[str, bytes, str, Any]] = [
    ("NaN", b'{"replicas":NaN}', "replicas", "NaN"),
    ("Infinity", b'{"replicas":Infinity}', "replicas", "Infinity"),
    ("5000 digits", b'{"replicas":' + b"9" * 5000 + b"}", "body", None),
    ("not UTF-8", b'{"replicas":"\xff"}', "body", None),
    ("not JSON", b'{"replicas":', "body", None),
]


def _desired(client: TestClient, dep: str) -> int:
    return int(client.get(f"/v1/deployments/{dep}").json()["desiredReplicas"])


@pytest.mark.parametrize(("what", "body", "field", "value"), SCALE, ids=[c[0] for c in SCALE])
def test_bad_scale_is_refused(
    client: TestClient, deployed: dict[str, str], what: str, body: Any, field: str, value: Any
) -> None:
    dep = deployed["live"]
    before = _counts(client), _desired(client, dep)
    assert_refused(client.post(f"/v1/deployments/{dep}/scale", json=body), field, value)
    assert (_counts(client), _desired(client, dep)) == before


@pytest.mark.parametrize(
    ("what", "raw", "field", "value"), SCALE_RAW, ids=[c[0] for c in SCALE_RAW]
)
def test_unencodable_scale_is_refused(
    client: TestClient, deployed: dict[str, str], what: str, raw: bytes, field: str, value: Any
) -> None:
    dep = deployed["live"]
    before = _counts(client), _desired(client, dep)
    r = client.post(
        f"/v1/deployments/{dep}/scale", content=raw, headers={"content-type": "application/json"}
    )
    assert_refused(r, field, value)
    assert (_counts(client), _desired(client, dep)) == before


@pytest.mark.parametrize(("replicas", "bound"), [(4, "maximum of 3"), (1, "minimum of 2")])
def test_scale_outside_autoscaling_bounds(
    client: TestClient, deployed: dict[str, str], replicas: int, bound: str
) -> None:
    dep = deployed["bounded"]
    before = _counts(client), _desired(client, dep)
    r = client.post(f"/v1/deployments/{dep}/scale", json={"replicas": replicas})
    err = assert_refused(r, "replicas", replicas)
    assert bound in err["message"]
    assert (_counts(client), _desired(client, dep)) == before


def test_scale_with_autoscaling_off_is_bounded_by_the_platform_only(
    client: TestClient, deployed: dict[str, str]
) -> None:
    """`"autoscaling": {"enabled": false}` is the documented opt-out for scaling by hand:
    the autoscaler's bounds (its default maxReplicas 4 included, which nobody set) do not
    apply, as its minReplicas already did not; the platform's ceiling still does."""
    dep = deployed["manual"]
    r = client.post(f"/v1/deployments/{dep}/scale", json={"replicas": 6})
    assert r.status_code == 202, r.text
    assert _desired(client, dep) == 6
    r = client.post(f"/v1/deployments/{dep}/scale", json={"replicas": CEILING + 1})
    err = assert_refused(r, "replicas", CEILING + 1)
    assert f"maximum of {CEILING}" in err["message"] and "A3S_MAX_REPLICAS" in err["message"]
    assert _desired(client, dep) == 6


def test_scale_above_max_replicas_names_the_setting(
    client: TestClient, deployed: dict[str, str]
) -> None:
    r = client.post(f"/v1/deployments/{deployed['bounded']}/scale", json={"replicas": 4})
    assert "autoscaling.maxReplicas" in assert_refused(r, "replicas", 4)["message"]


@pytest.mark.parametrize("dep", ["dep-000000000000", "nope", "x" * 5000, "%00", "..%2f..%2fetc"])
def test_scale_unknown_deployment_is_404(client: TestClient, dep: str) -> None:
    before = _counts(client)
    r = client.post(f"/v1/deployments/{dep}/scale", json={"replicas": 2})
    assert r.status_code == 404, r.text
    err = r.json()["error"]
    assert err["code"] == "not_found" and len(err["message"]) < 3000
    assert _counts(client) == before


def test_scale_deleted_deployment_is_409(client: TestClient, deployed: dict[str, str]) -> None:
    dep = deployed["gone"]
    before = _counts(client), _desired(client, dep)
    r = client.post(f"/v1/deployments/{dep}/scale", json={"replicas": 2})
    assert r.status_code == 409, r.text
    assert "gone" in r.json()["error"]["message"]
    assert (_counts(client), _desired(client, dep)) == before


# --------------------------------------------------------------- GET /v1/deployments


@pytest.mark.parametrize(
    ("query", "field"),
    [
        *[(f"namespace={v}", "namespace") for v in ("Team", "team_ai", "team.ai", "-team", "%00",
                                                   "a" * 64, "x" * 10_000, "%ff", "%EF%BD%81")],
        ("includeDeleted=maybe", "query.includeDeleted"),
        ("includeDeleted=2", "query.includeDeleted"),
    ],
    ids=lambda q: str(q)[:40],
)
def test_bad_list_query_is_refused(client: TestClient, query: str, field: str) -> None:
    r = client.get("/v1/deployments?" + query)
    assert_refused(r, field)


def test_empty_namespace_query_means_all(client: TestClient) -> None:
    r = client.get("/v1/deployments?namespace=")
    assert r.status_code == 200 and isinstance(r.json(), list)
    assert client.get("/v1/deployments?namespace=team-ai").status_code == 200


# --------------------------------------------------------------- WS /v1/events


def _ws_refusal(client: TestClient, path: str) -> Any:
    with pytest.raises(WebSocketDenialResponse) as info, client.websocket_connect(path):
        pass
    return info.value


WS_BAD: list[tuple[str, str]] = [
    ("since=-1", "since"),
    ("since=abc", "since"),
    ("since=1.5", "since"),
    ("since=1e3", "since"),
    ("since=NaN", "since"),
    (f"since={2**63}", "since"),
    ("since=%00", "since"),
    ("heartbeat=0", "heartbeat"),
    ("heartbeat=-1", "heartbeat"),
    ("heartbeat=nan", "heartbeat"),
    ("heartbeat=inf", "heartbeat"),
    ("heartbeat=1e308", "heartbeat"),
    ("heartbeat=abc", "heartbeat"),
    ("follow=maybe", "follow"),
    ("batch=2", "batch"),
]


@pytest.mark.parametrize(("query", "field"), WS_BAD, ids=[q for q, _ in WS_BAD])
def test_bad_event_stream_parameter_is_refused(client: TestClient, query: str, field: str) -> None:
    before = _counts(client)
    assert_refused(_ws_refusal(client, "/v1/events?" + query), field)
    assert _counts(client) == before


@pytest.mark.parametrize("query", ["tail=-1", "tail=abc", "tail=100001", "follow=2", "heartbeat=0"])
def test_bad_log_stream_parameter_is_refused(
    client: TestClient, deployed: dict[str, str], query: str
) -> None:
    path = f"/v1/deployments/{deployed['live']}/logs?{query}"
    assert_refused(_ws_refusal(client, path), query.split("=")[0])


# Found by this file, fixed in a3s_core/api/events_ws.py.
WS_KNOWN: list[tuple[str, str]] = [
    ("namespace=Team_AI", "namespace"),  # a namespace that cannot exist streams nothing, forever
    ("namespace=" + "x" * 10_000, "namespace"),
    ("since=%201", "since"),  # int() accepts surrounding spaces,
    ("since=1_000", "since"),  # underscores
    ("since=%EF%BC%91", "since"),  # and full-width digits
    ("since=" + "9" * 5000, "since"),  # refused, but the 5000 digits are echoed twice
]


@pytest.mark.parametrize(("query", "field"), WS_KNOWN, ids=[q[:30] for q, _ in WS_KNOWN])
def test_event_stream_parameters_once_accepted_are_refused(
    client: TestClient, query: str, field: str
) -> None:
    assert_refused(_ws_refusal(client, "/v1/events?" + query), field)


def test_event_stream_for_an_unknown_deployment_is_404(client: TestClient) -> None:
    # Once accepted, streaming nothing forever; refused as on /v1/deployments/{id}/events.
    r = _ws_refusal(client, "/v1/events?deployment=dep-000000000000")
    assert r.status_code == 404, r.text
    assert "dep-000000000000" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "path", ["/v1/nope", "/v1/deployment/dep-000000000000/events", "/v1/events/", "/events"]
)
def test_a_socket_on_an_unknown_path_is_404_in_the_api_shape(client: TestClient, path: str) -> None:
    """A typo in a WebSocket path was refused as HTTP 403 with no body, which reads as a
    bad token; it is a 404 saying which sockets there are, as for HTTP."""
    r = _ws_refusal(client, path)
    assert r.status_code == 404, r.text
    err = r.json()["error"]
    assert err["code"] == "not_found"
    assert "/v1/events" in err["message"] and "/v1/deployments/{id}/logs" in err["message"]
