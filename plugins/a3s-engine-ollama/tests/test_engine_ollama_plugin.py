"""Entry point discovery and the ids Ollama refuses, each with a sentence."""

from __future__ import annotations

from typing import Any

import pytest
from a3s_engine_ollama import OllamaEngine

from a3s_core.plugins import Plugins
from a3s_core.types import ModelProfile, SizingPlan


def test_entry_point_registers_the_engine_once_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A3S_LOAD_PLUGINS", "engine-ollama")
    plugins = Plugins()
    assert plugins.engines.names() == ["ollama"]
    assert plugins.engines.get("ollama") is OllamaEngine


QWEN: dict[str, Any] = dict(
    model="Qwen/Qwen2.5-72B-Instruct",
    source="knowledge-base",
    architecture="Qwen2ForCausalLM",
    model_type="qwen2",
    parameters=72_706_203_648,
    num_layers=80,
    hidden_size=8192,
    num_attention_heads=64,
    num_kv_heads=8,
    head_dim=128,
    intermediate_size=29568,
    vocab_size=152064,
    context_length=32768,
)


def plan(quantization: str) -> SizingPlan:
    return SizingPlan(
        model=QWEN["model"],
        checkpoint=QWEN["model"] + ("-AWQ" if quantization == "awq" else ""),
        quantization=quantization,
        parameters=QWEN["parameters"],
        bytes_per_parameter=2,
        weight_bytes=145_412_407_296,
        kv_bytes_per_token=327_680,
        kv_bytes_per_sequence=327_680 * 32768,
        overhead_bytes=5 << 30,
        gpu_memory_utilization=0.9,
        max_model_len=32768,
        max_model_len_source="model",
    )


def test_mapped_model_unquantized_is_accepted() -> None:
    assert OllamaEngine().check(ModelProfile(**QWEN), plan("none")) is None


@pytest.mark.parametrize("quantization", ["awq", "gptq", "fp8"])
def test_awq_gptq_fp8_are_refused_with_the_gguf_alternative(quantization: str) -> None:
    reason = OllamaEngine().check(ModelProfile(**QWEN), plan(quantization))
    assert reason is not None
    assert "GGUF" in reason and quantization.upper() in reason
    assert "qwen2.5:72b-instruct-q4_K_M" in reason and "extra_args.ollama_tag" in reason


def test_seed_embedding_model_is_refused_with_a_reason() -> None:
    bge = {**QWEN, "model": "BAAI/bge-large-zh-v1.5", "kind": "encoder"}
    reason = OllamaEngine().check(ModelProfile(**bge), None)
    assert reason is not None and "bge-large-zh-v1.5" in reason and "'tgi'" in reason


def test_deepseek_v3_is_refused_with_a_reason() -> None:
    reason = OllamaEngine().check(
        ModelProfile(**{**QWEN, "model": "deepseek-ai/DeepSeek-V3"}), None
    )
    assert reason is not None and "FP8" in reason and "'vllm'" in reason


def test_unknown_ids_list_what_is_known() -> None:
    reason = OllamaEngine().check(ModelProfile(**{**QWEN, "model": "acme/secret-13b"}), None)
    assert reason is not None and "acme/secret-13b" in reason
    assert "Qwen/Qwen2.5-7B-Instruct" in reason and "meta-llama/Llama-3.1-70B-Instruct" in reason


def test_ids_are_matched_case_insensitively_and_gguf_files_pass() -> None:
    assert (
        OllamaEngine().check(ModelProfile(**{**QWEN, "model": "qwen/qwen2.5-7b-instruct"}), None)
        is None
    )
    gguf = {**QWEN, "model": "/models/x.gguf", "source": "gguf"}
    assert OllamaEngine().check(ModelProfile(**gguf), None) is None


def test_deepseek_v3_reason_wins_over_its_fp8_quantization() -> None:
    reason = OllamaEngine().check(
        ModelProfile(**{**QWEN, "model": "deepseek-ai/DeepSeek-V3"}), plan("fp8")
    )
    assert reason is not None and "690 GB" in reason and "'sglang'" in reason
