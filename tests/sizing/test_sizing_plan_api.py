"""`POST /v1/deployments:plan` (and `?dryRun=true`): a model that cannot be sized is an
error status with a body that names it, not a 200 with the error tucked inside."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

ENDPOINTS = ["/v1/deployments:plan", "/v1/deployments?dryRun=true"]
QWEN = {"name": "qwen", "model": "Qwen/Qwen2.5-7B-Instruct"}


@pytest.fixture
def client(make_app: Callable[..., Any]) -> Any:
    return make_app()  # HF_ENDPOINT is a closed local port (tests/sizing/conftest.py)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_plan_that_sizes_is_200_without_error(client: Any, endpoint: str) -> None:
    r = client.post(endpoint, json={"models": [QWEN]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "error" not in body and body["models"][0]["plan"]["parameters"] > 7e9


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_unknown_model_with_unreachable_hub_is_503_naming_it(client: Any, endpoint: str) -> None:
    r = client.post(endpoint, json={"models": [{"name": "mystery", "model": "acme/mystery-7b"}]})
    assert r.status_code == 503, r.text
    err = r.json()["error"]
    assert err["code"] == "model_unavailable" and err["models"] == ["mystery"]
    assert "'acme/mystery-7b'" in err["message"] and "mystery" in err["message"]
    assert "cannot be reached" in err["message"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_one_unsizable_model_fails_the_plan_but_keeps_the_others(
    client: Any, endpoint: str
) -> None:
    too_long = {"name": "long", "model": "Qwen/Qwen2.5-7B-Instruct", "max_model_len": 10**6}
    r = client.post(endpoint, json={"models": [QWEN, too_long]})
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"]["code"] == "sizing_error" and body["error"]["models"] == ["long"]
    assert body["error"]["message"].startswith("models[1] (long): ")
    assert "Qwen/Qwen2.5-7B-Instruct" in body["error"]["message"]
    ok, bad = body["models"]
    assert "plan" in ok and "error" not in ok  # the model that sizes is still shown
    assert bad["error"]["code"] == "sizing_error" and "plan" not in bad


def test_plan_failures_are_counted_in_the_message(client: Any) -> None:
    body = {"models": [{"name": "a", "model": "acme/a"}, {"name": "b", "model": "acme/b"}]}
    err = client.post("/v1/deployments:plan", json=body).json()["error"]
    assert err["models"] == ["a", "b"] and "1 more model(s)" in err["message"]
