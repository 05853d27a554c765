"""Bad input gets a 422 naming the field and the value, and nothing is written."""

from __future__ import annotations

import json
from typing import Any

import pytest
from api_fuzz_kit import _counts, model

CASES: list[tuple[str, Any, str]] = [
    ("models missing", {}, "models"),
    ("models empty", {"models": []}, "models"),
    ("models not a list", {"models": {"name": "a"}}, "models"),
    ("name missing", {"models": [model(name=...)]}, "models[0].name"),
    ("name empty", {"models": [model(name="")]}, "models[0].name"),
    ("name upper-case", {"models": [model(name="Qwen-72B")]}, "models[0].name"),
    ("name too long", {"models": [model(name="a" * 64)]}, "models[0].name"),
    ("name duplicate", {"models": [model(), model()]}, "models"),
    ("model missing", {"models": [model(model=...)]}, "models[0].model"),
    ("model empty", {"models": [model(model="")]}, "models[0].model"),
    ("unknown engine", {"models": [model(engine="vllm2")]}, "models[0].engine"),
    ("unknown quantization", {"models": [model(quantization="int3")]}, "models[0].quantization"),
    ("max_model_len zero", {"models": [model(max_model_len=0)]}, "models[0].max_model_len"),
    ("max_model_len negative", {"models": [model(max_model_len=-5)]}, "models[0].max_model_len"),
    ("max_model_len string", {"models": [model(max_model_len="32k")]}, "models[0].max_model_len"),
    ("replicas zero", {"models": [model(replicas=0)]}, "models[0].replicas"),
    ("replicas negative", {"models": [model(replicas=-1)]}, "models[0].replicas"),
    ("replicas over ceiling", {"models": [model(replicas=999)]}, "models[0].replicas"),
    ("extra_args not object", {"models": [model(extra_args=[1])]}, "models[0].extra_args"),
    ("invalid namespace", {"models": [model()], "namespace": "Team_AI"}, "namespace"),
    ("metadata not object", {"models": [model()], "metadata": "x"}, "metadata"),
]


@pytest.mark.parametrize(("what", "body", "field"), CASES, ids=[c[0] for c in CASES])
def test_bad_request_is_422_naming_field_and_changes_nothing(
    make_app: Any, what: str, body: Any, field: str
) -> None:
    client = make_app()
    before = _counts(client)
    r = client.post("/v1/deployments", json=body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    fields = [d["field"] for d in err["details"]]
    assert field in fields, (what, err)
    assert field.split(".")[-1].split("[")[0] in err["message"]
    if what == "unknown engine":
        assert "(plugin may not be installed)" in err["message"]
        assert "vllm" in err["message"]  # lists what is installed
        assert err["details"][0]["value"] == "vllm2"
    if what in ("name upper-case", "unknown quantization", "max_model_len string"):
        detail = next(d for d in err["details"] if d["field"] == field)
        assert detail["value"] == body["models"][0][field.split(".")[-1]]
    assert _counts(client) == before


def test_body_not_json(make_app: Any) -> None:
    client = make_app()
    before = _counts(client)
    r = client.post(
        "/v1/deployments", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    assert "JSON" in r.json()["error"]["message"] or "json" in r.json()["error"]["message"]
    assert _counts(client) == before


def test_body_over_one_mib(make_app: Any) -> None:
    client = make_app()
    before = _counts(client)
    body = {"models": [model()], "metadata": {"blob": "x" * (1024 * 1024)}}
    r = client.post(
        "/v1/deployments",
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "body"
    assert _counts(client) == before


def test_a_chunked_body_over_one_mib_is_refused_too(make_app: Any) -> None:
    """Without Content-Length (Transfer-Encoding: chunked) the limit still holds: the
    body is counted as it arrives, not read whole first."""
    client = make_app(controllers=False)
    before = _counts(client)
    head = json.dumps({"models": [model()], "metadata": {"blob": ""}})[:-3].encode()

    def chunks() -> Any:
        yield head
        for _ in range(40):
            yield b"x" * 65536  # 2.5 MiB in all
        yield b'"}}'

    for path in ("/v1/deployments", "/v1/deployments:plan"):
        r = client.post(path, content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text[:300]
        assert r.json()["error"]["details"][0]["field"] == "body"
        assert "over the limit" in r.json()["error"]["message"]
    assert _counts(client) == before

    def small() -> Any:  # a chunked body under the limit is served as before
        yield json.dumps({"models": [model()]}).encode()

    headers = {"content-type": "application/json"}
    r = client.post("/v1/deployments", content=small(), headers=headers)
    assert r.status_code == 202, r.text


def test_same_name_same_namespace_is_409(make_app: Any) -> None:
    client = make_app(controllers=False)
    body = {"models": [model()], "namespace": "team-ai"}
    assert client.post("/v1/deployments", json=body).status_code == 202
    before = _counts(client)
    r = client.post("/v1/deployments", json=body)
    assert r.status_code == 409
    assert "already exists" in r.json()["error"]["message"]
    assert "qwen-72b" in r.json()["error"]["message"]
    assert _counts(client) == before
    # Another namespace is another deployment.
    assert client.post("/v1/deployments", json={**body, "namespace": "other"}).status_code == 202


def test_second_model_conflict_writes_neither(make_app: Any) -> None:
    client = make_app(controllers=False)
    assert client.post("/v1/deployments", json={"models": [model()]}).status_code == 202
    before = _counts(client)
    body = {"models": [model(name="fresh"), model()]}
    assert client.post("/v1/deployments", json=body).status_code == 409
    assert _counts(client) == before


def test_admin_token_required(make_app: Any) -> None:
    client = make_app()
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer nope"}):
        r = client.get("/v1/deployments", headers=headers)
        assert r.status_code == 401
    assert client.get("/healthz", headers={"Authorization": ""}).status_code == 200


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "text/plain", None],
    ids=["curl -d without -H", "text/plain", "no Content-Type"],
)
def test_a_json_body_sent_as_another_type_is_415_naming_the_header(
    make_app: Any, content_type: str | None
) -> None:
    """`curl -d @req.json` sends form-urlencoded unless told otherwise: the answer says
    which header is wrong and what to send, instead of quoting the body back as Python
    bytes ("got 'b\\'{...}\\''")."""
    client = make_app(controllers=False)
    before = _counts(client)
    raw = json.dumps({"models": [model()]}).encode()
    headers = {"content-type": content_type} if content_type else {}
    for path in ("/v1/deployments", "/v1/deployments:plan"):
        r = client.post(path, content=raw, headers=headers)
        assert r.status_code == 415, r.text
        err = r.json()["error"]
        assert err["code"] == "unsupported_media_type"
        assert "Content-Type" in err["message"] and "application/json" in err["message"]
        assert err["details"][0]["field"] == "Content-Type"
        assert err["details"][0]["value"] == (content_type or "")
        assert "b'" not in r.text
    assert _counts(client) == before
    ok = client.post("/v1/deployments", content=raw,
                     headers={"content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 202, ok.text
