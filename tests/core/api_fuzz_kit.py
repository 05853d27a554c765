"""Shared pieces of the API fuzz tests (test_api_fuzz_*.py): a platform for a module,
request builders, and the check every refusal must pass."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from a3s_core.api.app import create_app
from a3s_core.plugins import Plugins
from a3s_core.settings import Settings
from a3s_core.store import ApiKeyRow, DeploymentRow, EventRow
from a3s_core.testing import ADMIN_TOKEN, FakeRuntimePlugin

OK = {"name": "qwen-72b", "model": "Qwen/Qwen2.5-72B-Instruct"}
SECRET = "sk-live-0123456789abcdef-do-not-echo"
ANY = object()  # do not check the detail's value
LONG = "a" * 10_000
CEILING = 16  # Settings.max_replicas (default)
ENDPOINTS = ["/v1/deployments", "/v1/deployments?dryRun=true", "/v1/deployments:plan"]


def model(**kw: Any) -> dict[str, Any]:
    m: dict[str, Any] = dict(OK)
    for k, v in kw.items():
        if v is ...:
            m.pop(k, None)
        else:
            m[k] = v
    return m


def one(**kw: Any) -> dict[str, Any]:
    return {"models": [model(**kw)]}


def _counts(client: Any) -> tuple[int, int, int]:
    store = client.app.state.platform.store
    return store.count(DeploymentRow), store.count(ApiKeyRow), store.count(EventRow)


@contextlib.contextmanager
def platform_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One platform for a module (nothing is meant to be written; each case checks)."""
    settings = Settings(
        data_dir=Path(tmp_path_factory.mktemp("fuzz")) / "a3s",
        admin_token=ADMIN_TOKEN,
        runtime="fake",
        controllers=False,
        port=18080,
    )
    plugins = Plugins()
    plugins.register(FakeRuntimePlugin(), name="a3s-testing-fake-runtime")
    with TestClient(create_app(settings, plugins)) as c:
        c.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        yield c


def assert_refused(
    r: Any, field: str, value: Any = ANY, status: int = 422, code: str = "invalid_request"
) -> dict[str, Any]:
    """The API's error shape, naming `field` (in details and in the message) and the value."""
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"], err
    assert len(err["message"]) < 1000, "an error message must not echo a long value in full"
    fields = [d["field"] for d in err["details"]]
    assert field in fields, (field, err)
    assert field in err["message"], (field, err["message"])
    detail = next(d for d in err["details"] if d["field"] == field)
    assert len(json.dumps(detail["value"])) < 2000, "a long value must be cut"
    if value is not ANY:
        assert detail["value"] == value, (value, detail)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            shown = (str(value), repr(value))  # control characters are quoted escaped
            assert any(s in err["message"] for s in shown), (value, err["message"])
    assert SECRET not in r.text
    return err
