"""The seed's embedding request through the core's real sizing, as the controller renders it."""

from __future__ import annotations

import pytest
from a3s_engine_tgi import TgiEngine

from a3s_core.catalog import load_catalog
from a3s_core.contracts import LaunchContext
from a3s_core.plugins import Plugins
from a3s_core.types import ModelSpec


def test_seed_embedding_on_tgi_becomes_text_embeddings_inference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("A3S_LOAD_PLUGINS", "engine-tgi")
    plugins = Plugins()
    spec = ModelSpec(name="embedding", model="BAAI/bge-large-zh-v1.5", engine="tgi")
    profile = plugins.model_profile(spec.model)
    plan = plugins.size(profile, spec, load_catalog().gpus)
    engine = plugins.engines.get("tgi")()
    assert isinstance(engine, TgiEngine)
    assert engine.check(profile, plan) is None
    best = plan.candidates[0]
    ctx = LaunchContext(
        served_model_name=spec.name,
        model=plan.checkpoint,
        kind=plan.kind,
        quantization=plan.engine_quantization,
        tensor_parallel_size=best.tensor_parallel_size,
        max_model_len=best.max_model_len,
        dtype=best.dtype,
        gpu_memory_utilization=plan.gpu_memory_utilization,
        port=8080,
    )
    assert engine.image_for(ctx).startswith("ghcr.io/huggingface/text-embeddings-inference:")
    argv = engine.command(ctx)
    assert argv[:3] == ["text-embeddings-router", "--model-id", "BAAI/bge-large-zh-v1.5"]
    assert argv[argv.index("--served-model-name") + 1] == "embedding"
