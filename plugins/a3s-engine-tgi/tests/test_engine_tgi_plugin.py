"""The installed distribution is found through its entry point; check() refusals."""

from __future__ import annotations

from typing import Any

import pytest
from a3s_engine_tgi import TgiEngine

from a3s_core.plugins import Plugins
from a3s_core.types import Candidate, ModelProfile, SizingPlan


def test_entry_point_registers_the_engine_once_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Load only this entry point: other plugins installed in the environment are not under test.
    monkeypatch.setenv("A3S_LOAD_PLUGINS", "engine-tgi")
    plugins = Plugins()
    assert "tgi" in plugins.engines
    assert plugins.engines.get("tgi") is TgiEngine
    assert plugins.engines.owner("tgi") == "engine-tgi"


BGE: dict[str, Any] = dict(
    model="BAAI/bge-large-zh-v1.5",
    source="knowledge-base",
    architecture="BertModel",
    model_type="bert",
    kind="encoder",
    parameters=326_000_000,
    num_layers=24,
    hidden_size=1024,
    num_attention_heads=16,
    num_kv_heads=16,
    head_dim=64,
    intermediate_size=4096,
    vocab_size=21128,
    context_length=512,
)


def plan(tp: int) -> SizingPlan:
    candidate = Candidate(
        gpu="T4-16GB",
        gpu_count=tp,
        tensor_parallel_size=tp,
        dtype="float16",
        weights_per_gpu_bytes=1,
        overhead_per_gpu_bytes=1,
        usable_per_gpu_bytes=1,
        kv_budget_per_gpu_bytes=0,
        max_model_len=512,
        concurrent_sequences=0,
    )
    return SizingPlan(
        model=BGE["model"],
        checkpoint=BGE["model"],
        kind="encoder",
        quantization="none",
        parameters=BGE["parameters"],
        bytes_per_parameter=2,
        weight_bytes=652_000_000,
        kv_bytes_per_token=0,
        kv_bytes_per_sequence=0,
        overhead_bytes=0,
        gpu_memory_utilization=0.9,
        max_model_len=512,
        max_model_len_source="model",
        candidates=[candidate],
    )


def test_embedding_model_on_one_gpu_is_accepted() -> None:
    assert TgiEngine().check(ModelProfile(**BGE), plan(1)) is None


def test_embedding_model_that_needs_sharding_is_refused() -> None:
    reason = TgiEngine().check(ModelProfile(**BGE), plan(2))
    assert reason is not None and "one GPU" in reason and "vllm" in reason


def test_gguf_is_refused() -> None:
    gguf = ModelProfile(**{**BGE, "kind": "decoder", "model": "/m/x.gguf", "source": "gguf"})
    reason = TgiEngine().check(gguf, None)
    assert reason is not None and "GGUF" in reason
