"""The seed's requests through the core's real sizing, rendered as the controller does."""

from __future__ import annotations

import pytest
from a3s_engine_vllm import VllmEngine

from a3s_core.catalog import load_catalog
from a3s_core.contracts import LaunchContext
from a3s_core.plugins import Plugins
from a3s_core.types import ModelSpec, SizingPlan


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> Plugins:
    monkeypatch.setenv("A3S_LOAD_PLUGINS", "engine-vllm")  # built-in sizing + this engine
    return Plugins()


def launch(plan: SizingPlan, name: str) -> LaunchContext:
    # As a3s_core.controller.launch.build_request fills it, on the best candidate.
    best = plan.candidates[0]
    return LaunchContext(
        served_model_name=name,
        model=plan.checkpoint,
        kind=plan.kind,
        quantization=plan.engine_quantization,
        tensor_parallel_size=best.tensor_parallel_size,
        max_model_len=best.max_model_len,
        dtype=best.dtype,
        gpu_memory_utilization=plan.gpu_memory_utilization,
        port=8000,
    )


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec(name="qwen-72b", model="Qwen/Qwen2.5-72B-Instruct"),
        ModelSpec(
            name="qwen-72b", model="Qwen/Qwen2.5-72B-Instruct", quantization="awq",
            max_model_len=32768,
        ),
        ModelSpec(name="embedding", model="BAAI/bge-large-zh-v1.5"),
    ],
    ids=["minimal", "full-awq", "embedding"],
)  # fmt: skip
def test_plan_values_reach_the_command_line(plugins: Plugins, spec: ModelSpec) -> None:
    profile = plugins.model_profile(spec.model)
    plan = plugins.size(profile, spec, load_catalog().gpus)
    engine = VllmEngine()
    assert engine.check(profile, plan) is None
    c = launch(plan, spec.name)
    argv = engine.command(c)

    def value(flag: str) -> str:
        return argv[argv.index(flag) + 1]

    assert argv[:3] == ["vllm", "serve", plan.checkpoint]
    assert value("--served-model-name") == spec.name
    assert value("--tensor-parallel-size") == str(c.tensor_parallel_size)
    assert value("--max-model-len") == str(c.max_model_len)
    assert value("--dtype") == c.dtype
    assert ("--runner" in argv) == (plan.kind == "encoder")
    if spec.quantization == "awq":
        assert plan.checkpoint != spec.model  # an AWQ checkpoint, whose config names AWQ
        assert "--quantization" not in argv
