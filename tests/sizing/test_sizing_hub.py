"""The Hugging Face Hub source, against a fake of the two huggingface_hub calls it makes
(and one real connection to a closed port on 127.0.0.1). Never the real Hub."""

from __future__ import annotations

import importlib
import json
import math
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import a3s_tiny_checkpoints as tiny
import huggingface_hub
import pytest
from huggingface_hub import errors as hf_errors

from a3s_core.errors import HubUnreachable, ModelNotFound, ModelUnavailable
from a3s_core.sizing import hub
from a3s_core.sizing.default_profiles import find_profile
from a3s_core.sizing.hub import hub_profile

# the HTTP library this huggingface_hub raises with (httpx2 in 2.x): fakes raise the same
http = importlib.import_module(hf_errors.HfHubHTTPError.__mro__[1].__module__.split(".")[0])


def _http_error(cls: type[hf_errors.HfHubHTTPError], status: int) -> Exception:
    request = http.Request("GET", "https://hub.test/api/models/x")
    return cls(f"{status} error", response=http.Response(status, request=request))


class FakeHub:
    """Stands in for `huggingface_hub.hf_hub_download` and `HfApi(...).get_safetensors_metadata`."""

    def __init__(self, tmp: Path, config: dict[str, Any], dtype: str = "BF16") -> None:
        self.tmp = tmp
        self.config = config
        self.tensors = {n: SimpleNamespace(dtype=dtype, shape=list(s))
                        for n, s in tiny.llama_shapes(config).items()}
        self.downloads: list[dict[str, Any]] = []
        self.api_kwargs: list[dict[str, Any]] = []
        self.metadata_calls: list[dict[str, Any]] = []
        self.error: Exception | None = None
        self.metadata_error: Exception | None = None

    def download(self, repo_id: str, filename: str, **kw: Any) -> str:
        self.downloads.append({"repo_id": repo_id, "filename": filename, **kw})
        if self.error:
            raise self.error
        path = self.tmp / f"{repo_id.replace('/', '--')}-{filename}"
        path.write_text(json.dumps(self.config))
        return str(path)

    def api(self, **kw: Any) -> Any:
        self.api_kwargs.append(kw)
        fake = self

        class Api:
            def get_safetensors_metadata(self, repo_id: str, **kw: Any) -> Any:
                fake.metadata_calls.append({"repo_id": repo_id, **kw})
                if fake.metadata_error:
                    raise fake.metadata_error
                return SimpleNamespace(files_metadata={
                    "model.safetensors": SimpleNamespace(tensors=fake.tensors)})

        return Api()


@pytest.fixture
def fake_hub(tmp_path, monkeypatch) -> FakeHub:
    fake = FakeHub(tmp_path, dict(tiny.TINY_LLAMA, torch_dtype="bfloat16"))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake.download)
    monkeypatch.setattr(huggingface_hub, "HfApi", fake.api)
    monkeypatch.setattr(hub, "probe", lambda endpoint: None)  # the fake hub is reachable
    return fake


def test_sizing_hub_counts_from_safetensors_metadata(fake_hub):
    p = find_profile("acme/tiny-llama")
    assert p is not None and p.source == "hub"
    expected = sum(math.prod(s) for s in tiny.llama_shapes(tiny.TINY_LLAMA).values())
    assert p.parameters == expected
    assert p.parameters_by_dtype == {"BF16": expected}
    assert p.weight_bytes == 2 * expected
    assert fake_hub.downloads[0]["filename"] == "config.json"


def test_sizing_hub_honours_endpoint_token_timeout(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9/mirror/")
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setenv("A3S_HF_TIMEOUT_S", "3.5")
    find_profile("acme/tiny-llama", "v1.0")
    dl = fake_hub.downloads[0]
    assert dl["endpoint"] == "http://127.0.0.1:9/mirror"
    assert dl["token"] == "hf_test_token" and dl["revision"] == "v1.0"
    assert dl["etag_timeout"] == 3.5 and dl["local_files_only"] is False
    assert fake_hub.api_kwargs[0] == {"endpoint": "http://127.0.0.1:9/mirror",
                                      "token": "hf_test_token"}
    assert fake_hub.metadata_calls[0]["timeout"] == 3.5


def test_sizing_hub_results_are_cached(fake_hub):
    first = hub_profile("acme/tiny-llama")
    second = hub_profile("acme/tiny-llama")
    assert first == second
    assert len(fake_hub.downloads) == 1 and len(fake_hub.metadata_calls) == 1


def test_sizing_hub_offline_uses_cached_config_and_formula(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    p = find_profile("acme/tiny-llama")
    assert p is not None and p.source == "config"
    assert fake_hub.downloads[0]["local_files_only"] is True
    assert fake_hub.metadata_calls == []


def test_sizing_hub_offline_and_not_cached(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake_hub.error = hf_errors.LocalEntryNotFoundError("not in cache")
    with pytest.raises(ModelUnavailable, match="HF_HUB_OFFLINE"):
        find_profile("acme/tiny-llama")


def test_sizing_hub_not_a_safetensors_repo_falls_back_to_formula(fake_hub):
    fake_hub.metadata_error = hf_errors.NotASafetensorsRepoError("no safetensors")
    p = find_profile("acme/tiny-llama")
    assert p is not None and p.source == "config"
    assert p.parameters == sum(math.prod(s) for s in tiny.llama_shapes(tiny.TINY_LLAMA).values())


def test_sizing_hub_unknown_model(fake_hub):
    fake_hub.error = _http_error(hf_errors.RepositoryNotFoundError, 404)
    with pytest.raises(ModelNotFound) as err:
        find_profile("acme/does-not-exist")
    msg = str(err.value)
    assert "'acme/does-not-exist'" in msg and "check the id" in msg
    assert ". " not in msg  # one sentence


def test_sizing_hub_gated_model(fake_hub):
    fake_hub.error = _http_error(hf_errors.GatedRepoError, 403)
    with pytest.raises(ModelUnavailable, match=r"gated.*HF_TOKEN"):
        find_profile("meta-llama/Some-Gated-Model")


def test_sizing_hub_missing_revision(fake_hub):
    fake_hub.error = _http_error(hf_errors.RevisionNotFoundError, 404)
    with pytest.raises(ModelNotFound, match="no revision 'nope'"):
        find_profile("acme/tiny-llama", "nope")


def test_sizing_hub_connection_error_is_unavailable(fake_hub):
    fake_hub.error = http.ConnectError("connection refused")
    with pytest.raises(ModelUnavailable, match=r"could not be reached.*'acme/tiny-llama'"):
        find_profile("acme/tiny-llama")


def test_sizing_hub_unreachable_endpoint_for_real(monkeypatch):
    # a real request with the real client, to a port on 127.0.0.1 where nothing listens
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("A3S_HF_TIMEOUT_S", "1")
    with pytest.raises(ModelUnavailable) as err:
        find_profile("acme/unreachable-model")
    assert f"127.0.0.1:{port}" in str(err.value)
    assert "'acme/unreachable-model'" in str(err.value)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sizing_hub_unreachable_fails_at_once_and_logs_once(monkeypatch, caplog):
    """Issue 15: the hub client retried a refused connection five times per file (20 s, a
    'Retrying in 8s' line each); now one probe fails the lookup, and the next lookups on
    that endpoint fail without a request until UNREACHABLE_TTL_S has passed."""
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    downloads: list[str] = []
    real_download = huggingface_hub.hf_hub_download

    def spy(repo_id: str, *args: Any, **kw: Any) -> str:
        downloads.append(repo_id)
        return real_download(repo_id, *args, **kw)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", spy)
    probes: list[str] = []
    real_probe = hub.probe
    monkeypatch.setattr(hub, "probe", lambda e: probes.append(e) or real_probe(e))
    caplog.set_level("INFO")
    for model in ("acme/first-unknown", "acme/second-unknown"):
        with pytest.raises(HubUnreachable) as err:
            find_profile(model)
        assert endpoint in err.value.message and repr(model) in err.value.message
        assert err.value.status_code == 503
    assert downloads == [] and probes == [endpoint]  # no retries; the second did not try
    assert not [r for r in caplog.records if "Retrying" in r.getMessage()]
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and endpoint in warnings[0].getMessage()


def test_sizing_hub_back_after_an_outage_is_used_and_logged(fake_hub, monkeypatch, caplog):
    answers = iter(["ConnectError: refused", None])
    monkeypatch.setattr(hub, "probe", lambda endpoint: next(answers))
    monkeypatch.setattr(hub, "UNREACHABLE_TTL_S", 0.0)
    caplog.set_level("INFO")
    with pytest.raises(HubUnreachable):
        find_profile("acme/tiny-llama")
    p = find_profile("acme/tiny-llama")
    assert p is not None and p.source == "hub"
    assert [r.levelname for r in caplog.records if r.name == hub.__name__] == ["WARNING", "INFO"]


def test_sizing_hub_offline_never_probes(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "probe", lambda endpoint: pytest.fail("probed while offline"))
    with pytest.raises(ModelUnavailable, match="HF_HUB_OFFLINE"):
        fake_hub.error = hf_errors.LocalEntryNotFoundError("not cached")
        find_profile("acme/not-cached")


def test_sizing_knowledge_base_needs_no_hub(fake_hub):
    fake_hub.error = http.ConnectError("must not be called")
    p = find_profile("Qwen/Qwen2.5-72B-Instruct")
    assert p is not None and p.source == "knowledge-base"
    assert fake_hub.downloads == []
