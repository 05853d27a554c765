"""Exact TGI / TEI command lines for the seed's example requests, and extra_args."""

from __future__ import annotations

from typing import Any

import pytest
from a3s_engine_tgi import TgiEngine

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
        port=8080,
    )
    return LaunchContext(**{**base, **over})


def test_seed_minimal_request_bf16_tensor_parallel_2() -> None:
    c = ctx()
    assert TgiEngine().image_for(c) == "ghcr.io/huggingface/text-generation-inference:3.3.5"
    assert TgiEngine().command(c) == [
        "text-generation-launcher",
        "--model-id", "Qwen/Qwen2.5-72B-Instruct",
        "--hostname", "0.0.0.0",
        "--port", "8080",
        "--num-shard", "2",
        "--max-input-tokens", "32767",
        "--max-total-tokens", "32768",
        "--cuda-memory-fraction", "0.9",
        "--dtype", "bfloat16",
        "--usage-stats", "off",
    ]  # fmt: skip


def test_seed_full_request_awq_quantize_replaces_dtype() -> None:
    argv = TgiEngine().command(
        ctx(
            model="Qwen/Qwen2.5-72B-Instruct-AWQ",
            quantization="awq",
            tensor_parallel_size=1,
            dtype="float16",
        )
    )
    assert argv == [
        "text-generation-launcher",
        "--model-id", "Qwen/Qwen2.5-72B-Instruct-AWQ",
        "--hostname", "0.0.0.0",
        "--port", "8080",
        "--num-shard", "1",
        "--max-input-tokens", "32767",
        "--max-total-tokens", "32768",
        "--cuda-memory-fraction", "0.9",
        "--quantize", "awq",
        "--usage-stats", "off",
    ]  # fmt: skip


def test_seed_multi_request_embedding_runs_text_embeddings_inference() -> None:
    c = ctx(
        served_model_name="embedding",
        model="BAAI/bge-large-zh-v1.5",
        kind="encoder",
        tensor_parallel_size=1,
        max_model_len=512,
        dtype="float16",
    )
    engine = TgiEngine()
    assert engine.image_for(c) == "ghcr.io/huggingface/text-embeddings-inference:cuda-1.9.3"
    assert engine.command(c) == [
        "text-embeddings-router",
        "--model-id", "BAAI/bge-large-zh-v1.5",
        "--served-model-name", "embedding",
        "--hostname", "0.0.0.0",
        "--port", "8080",
        "--dtype", "float16",
    ]  # fmt: skip
    assert engine.openai_paths_for("encoder") == {"/v1/embeddings"}
    assert engine.openai_paths_for("decoder") == {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/models",
    }


def test_tei_in_its_image_keeps_the_entrypoint_that_picks_the_binary_for_the_gpu() -> None:
    # The cuda- image has text-embeddings-router-75/-80/-90/-100/-120 only; its ENTRYPOINT
    # chooses by compute capability. So the pod gets arguments, not a command.
    engine = TgiEngine()
    c = ctx(served_model_name="embedding", model="BAAI/bge-large-zh-v1.5", kind="encoder",
            tensor_parallel_size=1, max_model_len=512, dtype="float16", in_container=True)
    assert engine.keeps_entrypoint(c)
    assert engine.command(c) == [
        "--model-id", "BAAI/bge-large-zh-v1.5",
        "--served-model-name", "embedding",
        "--hostname", "0.0.0.0",
        "--port", "8080",
        "--dtype", "float16",
    ]  # fmt: skip
    # A local install has the plain executable; TGI's launcher is always named in full.
    assert engine.command(c.model_copy(update={"in_container": False}))[0] == (
        "text-embeddings-router"
    )
    decoder = ctx(in_container=True)
    assert not engine.keeps_entrypoint(decoder)
    assert engine.command(decoder)[0] == "text-generation-launcher"


def test_both_images_are_overridable() -> None:
    engine = TgiEngine("mirror/tgi:3.3.5", embedding_image="mirror/tei:cuda-1.9.3")
    assert engine.image_for(ctx()) == "mirror/tgi:3.3.5"
    assert engine.image_for(ctx(kind="encoder", tensor_parallel_size=1)) == "mirror/tei:cuda-1.9.3"


def test_marlin_spellings_map_to_the_checkpoint_format() -> None:
    argv = TgiEngine().command(ctx(quantization="gptq_marlin"))
    assert argv[argv.index("--quantize") + 1] == "gptq"
    assert "--quantize" not in TgiEngine().command(ctx(quantization="compressed-tensors"))


def test_unknown_quantization_and_dtype_are_refused_by_field() -> None:
    with pytest.raises(InvalidRequest) as err:
        TgiEngine().command(ctx(quantization="squeezellm"))
    assert err.value.field == "quantization" and "squeezellm" in err.value.message
    with pytest.raises(InvalidRequest) as err:
        TgiEngine().command(ctx(dtype="float32"))
    assert err.value.field == "dtype"


def test_extra_args_rendered_the_clap_way() -> None:
    extra = {
        "max_batch_prefill_tokens": 16384,
        "trust_remote_code": True,
        "disable_grammar_support": False,
        "sharded": True,  # Option<bool>: needs a value
        "cuda_graphs": [1, 2, 4, 8],  # a Vec: clap appends each occurrence
        "kv_cache_dtype": "fp8_e4m3fn",
    }
    argv = TgiEngine().command(ctx(extra_args=extra))
    tail = argv[argv.index("off") + 1 :]
    assert tail == [
        "--max-batch-prefill-tokens", "16384",
        "--trust-remote-code",
        "--sharded", "true",
        "--cuda-graphs", "1",
        "--cuda-graphs", "2",
        "--cuda-graphs", "4",
        "--cuda-graphs", "8",
        "--kv-cache-dtype", "fp8_e4m3fn",
    ]  # fmt: skip


def test_tgi_native_flags_replace_the_plans_once() -> None:
    # clap rejects a repeated flag, so each appears exactly once.
    extra = {"num_shard": 4, "max_input_length": 4096, "cuda_memory_fraction": 0.8}
    argv = TgiEngine().command(ctx(extra_args=extra))
    assert argv.count("--num-shard") == 1 and argv[argv.index("--num-shard") + 1] == "4"
    assert "--max-input-tokens" not in argv
    assert argv[argv.index("--max-input-length") + 1] == "4096"
    assert argv.count("--cuda-memory-fraction") == 1
    # A user's --quantize displaces the plan's --dtype (TGI refuses both together).
    argv = TgiEngine().command(ctx(extra_args={"quantize": "eetq"}))
    assert "--dtype" not in argv and argv[argv.index("--quantize") + 1] == "eetq"


def test_consumed_keys_are_skipped_for_tei_too() -> None:
    c = ctx(
        kind="encoder",
        tensor_parallel_size=1,
        dtype="bfloat16",
        extra_args={"max_model_len": 256, "dtype": "float32", "auto_truncate": False,
                    "max_batch_tokens": 32768, "pooling": "cls"},
    )  # fmt: skip
    argv = TgiEngine().command(c)
    assert "--dtype" not in argv  # bfloat16 → TEI's own choice; the extra dtype was consumed
    # auto_truncate defaults to true in TEI: off has to be said.
    assert argv[-6:] == [
        "--auto-truncate", "false", "--max-batch-tokens", "32768", "--pooling", "cls",
    ]


def test_tei_cannot_shard() -> None:
    with pytest.raises(InvalidRequest) as err:
        TgiEngine().command(ctx(kind="encoder", tensor_parallel_size=2))
    assert err.value.field == "tensor_parallel_size"


@pytest.mark.parametrize("key", ["model_id", "hostname", "port"])
def test_platform_owned_flags_are_refused(key: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        TgiEngine().command(ctx(extra_args={key: "x"}))
    assert err.value.field == f"extra_args.{key}"
