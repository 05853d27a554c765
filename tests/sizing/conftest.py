"""Make the tiny-checkpoint writers in tests/fixtures/models importable, and keep the
Hub cache and Hub environment from leaking between tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "models"
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))


@pytest.fixture(autouse=True)
def _isolated_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import huggingface_hub.constants

    from a3s_core.sizing import hub

    for var in ("HF_HUB_OFFLINE", "HF_TOKEN", "A3S_HF_TIMEOUT_S", "A3S_MODELS_FILE"):
        monkeypatch.delenv(var, raising=False)
    # huggingface_hub reads HF_HUB_OFFLINE once, when it is first imported: under tox
    # (HF_HUB_OFFLINE=1) a module that imports it at collection (transformers, in
    # test_sizing_config_defaults) would leave it on for every test here
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    # a test that reached for the Hub by mistake meets a closed local port, never the internet
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    hub.clear_cache()
    yield
    hub.clear_cache()


@pytest.fixture
def fixture_config():
    import json

    def load(name: str) -> dict:
        return json.loads((FIXTURES / name / "config.json").read_text())

    return load
