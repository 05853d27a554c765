"""The installed distribution is found through its entry point, and check() refusals."""

from __future__ import annotations

from importlib import metadata

import pytest
from a3s_engine_vllm import VllmEngine

from a3s_core.plugins import Plugins
from a3s_core.types import ExistingQuantization, ModelProfile


def test_entry_point_registers_the_engine_once_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Load only this entry point: other plugins installed in the environment are not under test.
    monkeypatch.setenv("A3S_LOAD_PLUGINS", "engine-vllm")
    eps = [ep for ep in metadata.entry_points(group="a3s") if ep.name == "engine-vllm"]
    assert [ep.value for ep in eps] == ["a3s_engine_vllm"]
    plugins = Plugins()
    assert "vllm" in plugins.engines
    assert plugins.engines.get("vllm") is VllmEngine
    assert plugins.engines.owner("vllm") == "engine-vllm"
    info = {p.name: p for p in plugins.describe()}["engine-vllm"]
    assert info.distribution == "a3s-engine-vllm"
    assert info.hooks == ["a3s_register_engines"]


def profile(**over: object) -> ModelProfile:
    base: dict[str, object] = dict(
        model="Qwen/Qwen2.5-7B-Instruct",
        source="knowledge-base",
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
    return ModelProfile(**{**base, **over})  # type: ignore[arg-type]


def test_check_accepts_safetensors_checkpoints() -> None:
    assert VllmEngine().check(profile(), None) is None
    awq = ExistingQuantization(method="awq", bits=4, group_size=128)
    assert VllmEngine().check(profile(quantization=awq), None) is None


def test_check_refuses_gguf_files_with_a_sentence() -> None:
    reason = VllmEngine().check(
        profile(model="/models/qwen2.5-7b-instruct-q4_k_m.gguf", source="gguf"), None
    )
    assert reason is not None
    assert "GGUF" in reason and "ollama" in reason and "qwen2.5-7b" in reason
