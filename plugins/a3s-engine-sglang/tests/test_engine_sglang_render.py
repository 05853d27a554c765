"""Exact `sglang.launch_server` command lines for the seed's example requests."""

from __future__ import annotations

from typing import Any

import pytest
from a3s_engine_sglang import SglangEngine

from a3s_core.contracts import LaunchContext
from a3s_core.errors import InvalidRequest

LAUNCH = ["python3", "-m", "sglang.launch_server"]


def ctx(**over: Any) -> LaunchContext:
    base: dict[str, Any] = dict(
        served_model_name="qwen-72b",
        model="Qwen/Qwen2.5-72B-Instruct",
        tensor_parallel_size=2,
        max_model_len=32768,
        dtype="bfloat16",
        gpu_memory_utilization=0.9,
        port=30000,
    )
    return LaunchContext(**{**base, **over})


def test_seed_minimal_request_bf16_tensor_parallel_2() -> None:
    assert SglangEngine().command(ctx()) == [
        *LAUNCH,
        "--model-path", "Qwen/Qwen2.5-72B-Instruct",
        "--served-model-name", "qwen-72b",
        "--host", "0.0.0.0",
        "--port", "30000",
        "--tp-size", "2",
        "--context-length", "32768",
        "--dtype", "bfloat16",
        "--enable-metrics",
    ]  # fmt: skip


def test_seed_full_request_awq_one_gpu() -> None:
    argv = SglangEngine().command(
        ctx(
            model="Qwen/Qwen2.5-72B-Instruct-AWQ",
            quantization="awq",
            tensor_parallel_size=1,
            dtype="float16",
        )
    )
    assert argv == [
        *LAUNCH,
        "--model-path", "Qwen/Qwen2.5-72B-Instruct-AWQ",
        "--served-model-name", "qwen-72b",
        "--host", "0.0.0.0",
        "--port", "30000",
        "--tp-size", "1",
        "--context-length", "32768",
        "--dtype", "float16",
        "--enable-metrics",
    ]  # fmt: skip


def test_default_memory_fraction_is_left_to_sglangs_own_formula() -> None:
    # 0.9 (the platform's vLLM-style default) is above what SGLang itself would choose on
    # any GPU (1 - reserve/memory: about 0.82 on an H100 at TP 4), leaving too little for
    # activations and CUDA graphs; only an asked-for utilisation is passed on.
    assert "--mem-fraction-static" not in SglangEngine().command(ctx())
    asked = ctx(gpu_memory_utilization=0.7, extra_args={"gpu-memory-utilization": 0.7})
    argv = SglangEngine().command(asked)
    assert argv[argv.index("--mem-fraction-static") + 1] == "0.7"


def test_fp8_is_named_because_it_can_be_applied_online() -> None:
    argv = SglangEngine().command(ctx(quantization="fp8", tensor_parallel_size=1))
    assert argv[argv.index("--quantization") + 1] == "fp8"


def test_seed_multi_request_embedding_model() -> None:
    argv = SglangEngine().command(
        ctx(
            served_model_name="embedding",
            model="BAAI/bge-large-zh-v1.5",
            kind="encoder",
            tensor_parallel_size=1,
            max_model_len=512,
            dtype="float16",
            gpu_memory_utilization=0.85,
            extra_args={"gpu_memory_utilization": 0.85},
        )
    )
    assert argv == [
        *LAUNCH,
        "--model-path", "BAAI/bge-large-zh-v1.5",
        "--served-model-name", "embedding",
        "--host", "0.0.0.0",
        "--port", "30000",
        "--tp-size", "1",
        "--context-length", "512",
        "--dtype", "float16",
        "--mem-fraction-static", "0.85",
        "--is-embedding",
        "--enable-metrics",
    ]  # fmt: skip
    assert SglangEngine().openai_paths_for("encoder") == {"/v1/embeddings", "/v1/models"}


def test_extra_args_rendered_the_sglang_way() -> None:
    extra = {
        "enable_torch_compile": True,
        "disable_radix_cache": False,  # store_true switch: False means leave it out
        "cuda_graph_bs": [1, 2, 4, 8],
        "json_model_override_args": {"rope_scaling": {"type": "yarn", "factor": 4.0}},
        "schedule_policy": "lpm",
    }
    argv = SglangEngine().command(ctx(extra_args=extra))
    tail = argv[argv.index("--enable-metrics") + 1 :]
    assert tail == [
        "--enable-torch-compile",
        "--cuda-graph-bs", "1", "2", "4", "8",
        "--json-model-override-args", '{"rope_scaling":{"type":"yarn","factor":4.0}}',
        "--schedule-policy", "lpm",
    ]  # fmt: skip


def test_native_spellings_replace_the_plans_value_once() -> None:
    # mem_fraction_static is SGLang's own knob; tp is an alias of --tp-size.
    argv = SglangEngine().command(ctx(extra_args={"mem_fraction_static": 0.8, "tp": 4}))
    assert argv.count("--mem-fraction-static") == 1
    assert argv[argv.index("--mem-fraction-static") + 1] == "0.8"
    assert "--tp-size" not in argv
    assert argv[argv.index("--tp") + 1] == "4"


def test_generic_keys_the_plan_consumed_are_skipped() -> None:
    argv = SglangEngine().command(
        ctx(extra_args={"max_model_len": 1024, "tensor_parallel_size": 8, "dtype": "half"})
    )
    assert argv[argv.index("--context-length") + 1] == "32768"
    assert argv[argv.index("--tp-size") + 1] == "2"
    assert argv.count("--dtype") == 1


@pytest.mark.parametrize("key", ["model_path", "port", "served-model-name"])
def test_platform_owned_flags_are_refused(key: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        SglangEngine().command(ctx(extra_args={key: "x"}))
    assert err.value.field == f"extra_args.{key}"


def test_api_key_is_never_put_on_the_command_line() -> None:
    argv = SglangEngine().command(ctx(api_key="sk-a3s-secret"))
    assert "--api-key" not in argv and "sk-a3s-secret" not in argv
