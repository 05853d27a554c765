"""Exact `vllm serve` command lines for the seed's example requests, and extra_args."""

from __future__ import annotations

from typing import Any

import pytest
from a3s_engine_vllm import VllmEngine

from a3s_core.contracts import LaunchContext
from a3s_core.errors import InvalidRequest


def ctx(**over: Any) -> LaunchContext:
    base: dict[str, Any] = dict(
        served_model_name="qwen-72b",
        model="Qwen/Qwen2.5-72B-Instruct",
        tensor_parallel_size=2,
        max_model_len=32768,
        dtype="bfloat16",
        gpu_memory_utilization=0.9,
        port=8000,
    )
    return LaunchContext(**{**base, **over})


def test_seed_minimal_request_bf16_tensor_parallel_2() -> None:
    # {"name": "qwen-72b", "model": "Qwen/Qwen2.5-72B-Instruct"}: BF16 on two GPUs (TP 2).
    assert VllmEngine().command(ctx()) == [
        "vllm", "serve", "Qwen/Qwen2.5-72B-Instruct",
        "--served-model-name", "qwen-72b",
        "--host", "0.0.0.0",
        "--port", "8000",
        "--tensor-parallel-size", "2",
        "--max-model-len", "32768",
        "--dtype", "bfloat16",
        "--gpu-memory-utilization", "0.9",
    ]  # fmt: skip


def test_seed_full_request_awq_one_gpu_leaves_kernel_choice_to_vllm() -> None:
    # §2.1: quantization awq, max_model_len 32768, on the AWQ checkpoint with TP=1.
    argv = VllmEngine().command(
        ctx(
            model="Qwen/Qwen2.5-72B-Instruct-AWQ",
            quantization="awq",
            tensor_parallel_size=1,
            dtype="float16",
        )
    )
    assert argv == [
        "vllm", "serve", "Qwen/Qwen2.5-72B-Instruct-AWQ",
        "--served-model-name", "qwen-72b",
        "--host", "0.0.0.0",
        "--port", "8000",
        "--tensor-parallel-size", "1",
        "--max-model-len", "32768",
        "--dtype", "float16",
        "--gpu-memory-utilization", "0.9",
    ]  # fmt: skip
    # No --quantization: the checkpoint's quantization_config says AWQ, and forcing
    # `awq` would stop vLLM from picking the faster awq_marlin kernel.
    assert "--quantization" not in argv


def test_online_fp8_is_passed_because_vllm_cannot_infer_it() -> None:
    argv = VllmEngine().command(ctx(quantization="fp8", tensor_parallel_size=1))
    assert argv[argv.index("--quantization") + 1] == "fp8"


def test_seed_multi_request_embedding_model_uses_pooling_runner() -> None:
    argv = VllmEngine().command(
        ctx(
            served_model_name="embedding",
            model="BAAI/bge-large-zh-v1.5",
            kind="encoder",
            tensor_parallel_size=1,
            max_model_len=512,
            dtype="float16",
        )
    )
    assert argv == [
        "vllm", "serve", "BAAI/bge-large-zh-v1.5",
        "--served-model-name", "embedding",
        "--host", "0.0.0.0",
        "--port", "8000",
        "--tensor-parallel-size", "1",
        "--max-model-len", "512",
        "--dtype", "float16",
        "--gpu-memory-utilization", "0.9",
        "--runner", "pooling",
    ]  # fmt: skip
    assert VllmEngine().openai_paths_for("encoder") == {"/v1/embeddings", "/v1/models"}
    assert "/v1/chat/completions" in VllmEngine().openai_paths_for("decoder")


def test_extra_args_rendered_the_vllm_way() -> None:
    extra = {
        "enable_prefix_caching": False,  # BooleanOptionalAction: must become --no-…
        "--enable-chunked-prefill": True,
        "max-num-seqs": 64,
        "kv_cache_dtype": "fp8",
        "hf_overrides": {"rope_scaling": {"rope_type": "yarn", "factor": 4.0}},
        "allowed_origins": ["https://a.example", "https://b.example"],
        "cuda_graph_sizes": [1, 2, 4],
        "middleware": ["a.Mw", "b.Mw"],
        "disable_log_stats": False,  # store_true: no --no- form, a False is left out
        "seed": None,
    }
    argv = VllmEngine().command(ctx(extra_args=extra))
    tail = argv[argv.index("--gpu-memory-utilization") + 2 :]
    assert tail == [
        "--no-enable-prefix-caching",
        "--enable-chunked-prefill",
        "--max-num-seqs", "64",
        "--kv-cache-dtype", "fp8",
        "--hf-overrides", '{"rope_scaling":{"rope_type":"yarn","factor":4.0}}',
        # type=json.loads, no nargs: one JSON string (two words would make vLLM exit)
        "--allowed-origins", '["https://a.example","https://b.example"]',
        "--cuda-graph-sizes", "1", "2", "4",  # nargs='+'
        "--middleware", "a.Mw", "--middleware", "b.Mw",  # action='append'
    ]  # fmt: skip


def test_keys_the_plan_consumed_are_not_emitted_twice() -> None:
    # The plan already applied these into the context (TP 4, 8192); they must not repeat.
    extra = {
        "tensor_parallel_size": 8,
        "max_model_len": 4096,
        "gpu_memory_utilization": 0.5,
        "dtype": "float16",
        "quantization": "fp8",
    }
    argv = VllmEngine().command(ctx(tensor_parallel_size=4, max_model_len=8192, extra_args=extra))
    for flag in (
        "--tensor-parallel-size",
        "--max-model-len",
        "--gpu-memory-utilization",
        "--dtype",
    ):
        assert argv.count(flag) == 1, flag
    assert argv[argv.index("--tensor-parallel-size") + 1] == "4"
    assert argv[argv.index("--max-model-len") + 1] == "8192"
    assert "--quantization" not in argv


@pytest.mark.parametrize("key", ["port", "served_model_name", "--host", "model", "api-key"])
def test_platform_owned_flags_are_refused_naming_the_key(key: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        VllmEngine().command(ctx(extra_args={key: "x"}))
    assert err.value.field == f"extra_args.{key}"
    assert key in err.value.message


def test_impossible_context_values_name_the_field() -> None:
    with pytest.raises(InvalidRequest) as err:
        VllmEngine().command(ctx(gpu_memory_utilization=1.5))
    assert err.value.field == "gpu_memory_utilization"
    with pytest.raises(InvalidRequest) as err:
        VllmEngine().command(ctx(tensor_parallel_size=0))
    assert err.value.field == "tensor_parallel_size"


def test_api_key_goes_to_the_environment_not_argv() -> None:
    c = ctx(api_key="sk-a3s-" + "x" * 40)
    assert "sk-a3s-" + "x" * 40 not in " ".join(VllmEngine().command(c))
    assert VllmEngine().env(c)["VLLM_API_KEY"] == "sk-a3s-" + "x" * 40
    assert "VLLM_API_KEY" not in VllmEngine().env(ctx())


def test_image_is_pinned_and_overridable() -> None:
    assert VllmEngine().image_for(ctx()) == "vllm/vllm-openai:v0.11.0"
    assert VllmEngine("registry.local/vllm:v0.11.0").image_for(ctx()) == (
        "registry.local/vllm:v0.11.0"
    )
