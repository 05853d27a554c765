"""The installed distribution is found through its entry point; check() refusals."""

from __future__ import annotations

import pytest
from a3s_engine_sglang import SglangEngine

from a3s_core.plugins import Plugins
from a3s_core.types import ModelProfile


def test_entry_point_registers_the_engine_once_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Load only this entry point: other plugins installed in the environment are not under test.
    monkeypatch.setenv("A3S_LOAD_PLUGINS", "engine-sglang")
    plugins = Plugins()
    assert "sglang" in plugins.engines
    assert plugins.engines.get("sglang") is SglangEngine
    assert plugins.engines.owner("sglang") == "engine-sglang"
    info = {p.name: p for p in plugins.describe()}["engine-sglang"]
    assert info.distribution == "a3s-engine-sglang"


def test_check_refuses_gguf_and_accepts_safetensors() -> None:
    base = dict(
        model="Qwen/Qwen2.5-7B-Instruct",
        source="hub",
        architecture="Qwen2ForCausalLM",
        model_type="qwen2",
        parameters=7_615_616_512,
        num_layers=28,
        hidden_size=3584,
        num_attention_heads=28,
        num_kv_heads=4,
        head_dim=128,
        intermediate_size=18944,
        vocab_size=152064,
        context_length=32768,
    )
    assert SglangEngine().check(ModelProfile(**base), None) is None  # type: ignore[arg-type]
    gguf = ModelProfile(**{**base, "model": "/m/q.gguf", "source": "gguf"})  # type: ignore[arg-type]
    reason = SglangEngine().check(gguf, None)
    assert reason is not None and "GGUF" in reason and "/m/q.gguf" in reason
