"""Profile sources: a local safetensors directory, a GGUF file, the knowledge base order."""

from __future__ import annotations

import json

import a3s_tiny_checkpoints as tiny
import numpy as np
import pytest

from a3s_core.catalog import load_catalog
from a3s_core.errors import ModelNotFound
from a3s_core.plugins import Plugins, build_plugin_manager
from a3s_core.sizing.architecture import arch_from_profile, layout
from a3s_core.sizing.default_profiles import find_profile
from a3s_core.sizing.quantization import scheme_for, weight_bytes
from a3s_core.types import ModelSpec


@pytest.fixture
def plugins() -> Plugins:
    return Plugins(build_plugin_manager(load_entry_points=False))


def test_sizing_local_dir_counts_exactly(tmp_path, plugins):
    w = tiny.write_safetensors_model(tmp_path / "m")
    # independent hand count of TINY_LLAMA: embed + lm_head + 2 × (attn + mlp + norms) + norm
    hand = 2 * 320 * 64 + 2 * (64 * 64 * 2 + 2 * 64 * 32 + 3 * 64 * 128 + 2 * 64) + 64
    assert w.parameters == hand
    p = plugins.model_profile(str(tmp_path / "m"))
    assert p.source == "local" and p.local_path == str(tmp_path / "m")
    assert p.parameters == hand
    assert p.parameters_by_dtype == {"F16": hand}
    assert p.weight_bytes == 2 * hand
    assert p.checkpoint_dtype == "float16"


def test_sizing_local_sharded_index_and_mtp_layers(tmp_path):
    w = tiny.write_safetensors_model(tmp_path / "m", shards=3, extra_layers=1,
                                     dtype=np.float32)
    p = find_profile(str(tmp_path / "m"))
    assert p is not None
    assert p.parameters == w.parameters
    assert p.weight_bytes == 4 * w.parameters
    assert any("layers ≥ 2" in n for n in p.notes)


def test_sizing_local_qkv_bias_matches_formula(tmp_path):
    cfg = dict(tiny.TINY_LLAMA, model_type="qwen2", architectures=["Qwen2ForCausalLM"])
    tiny.write_safetensors_model(tmp_path / "q", cfg, qkv_bias=True)
    p = find_profile(str(tmp_path / "q"))
    assert p is not None and p.parameters == layout(arch_from_profile(p)).total


def test_sizing_local_awq_packed(tmp_path):
    w = tiny.write_awq_model(tmp_path / "awq")
    p = find_profile(str(tmp_path / "awq"))
    assert p is not None and p.quantization is not None and p.quantization.method == "awq"
    assert p.parameters == w.parameters  # unpacked count, from the config
    assert p.weight_bytes == w.weight_bytes  # exact bytes of the packed tensors
    # the AWQ byte formula reproduces the packed checkpoint to the byte
    computed = weight_bytes(layout(arch_from_profile(p)), scheme_for(p.quantization)).total
    assert computed == w.weight_bytes


def test_sizing_local_missing_path_and_missing_config(tmp_path):
    with pytest.raises(ModelNotFound, match="does not exist"):
        find_profile(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound, match=r"no config\.json"):
        find_profile(str(tmp_path / "empty"))


def test_sizing_local_dir_without_weights_uses_formula(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "config.json").write_text(json.dumps(tiny.TINY_LLAMA))
    p = find_profile(str(tmp_path / "c"))
    assert p is not None and p.source == "config"
    assert p.parameters == tiny.write_safetensors_model(tmp_path / "x").parameters


def test_sizing_gguf_counts_exactly(tmp_path, plugins):
    w = tiny.write_tiny_gguf(tmp_path / "tiny.gguf")
    p = plugins.model_profile(str(tmp_path / "tiny.gguf"))
    assert p.source == "gguf"
    assert p.parameters == w.parameters
    assert p.parameters_by_dtype == w.by_dtype
    assert p.weight_bytes == w.weight_bytes
    assert (p.num_layers, p.hidden_size, p.num_attention_heads, p.num_kv_heads) == (2, 64, 4, 2)
    assert p.context_length == tiny.GGUF_CTX
    assert p.vocab_size == 271
    assert p.quantization is not None and p.quantization.method == "gguf:Q8_0"
    # a directory holding one GGUF is the same model
    assert plugins.model_profile(str(tmp_path)).parameters == w.parameters


def test_sizing_gguf_plan_reports_exact_figures(tmp_path, plugins):
    w = tiny.write_tiny_gguf(tmp_path / "tiny.gguf")
    spec = ModelSpec(name="tiny", model=str(tmp_path / "tiny.gguf"), engine="llamacpp")
    plan = plugins.size(plugins.model_profile(spec.model), spec, load_catalog().gpus)
    assert plan.parameters == w.parameters
    assert plan.weight_bytes == w.weight_bytes
    assert plan.engine_quantization == "gguf"
    assert plan.max_model_len == tiny.GGUF_CTX
    assert plan.kv_bytes_per_token == 2 * 2 * 2 * 16 * 2
    assert plan.memory_bytes > w.weight_bytes
    assert any(f"{w.parameters:,}" in line for line in plan.explanation)


def test_sizing_gguf_directory_with_two_models_is_ambiguous(tmp_path):
    tiny.write_tiny_gguf(tmp_path / "a.gguf")
    tiny.write_tiny_gguf(tmp_path / "b.gguf", quantize=False)
    with pytest.raises(ModelNotFound, match="several GGUF models"):
        find_profile(str(tmp_path))


def test_sizing_knowledge_base_first_and_case_insensitive(plugins):
    p = plugins.model_profile("qwen/qwen2.5-7b-instruct")
    assert p.source == "knowledge-base" and p.parameters == 7_615_616_512
    alias = plugins.model_profile("meta-llama/Meta-Llama-3.1-8B-Instruct")
    assert alias.parameters == 8_030_261_248


def test_sizing_unknown_non_id_is_model_not_found(plugins):
    with pytest.raises(ModelNotFound, match="not-a-model"):
        plugins.model_profile("not-a-model")


def test_sizing_profile_cache_returns_independent_copies(tmp_path):
    tiny.write_safetensors_model(tmp_path / "m")
    a = find_profile(str(tmp_path / "m"))
    assert a is not None
    a.notes.append("edited")
    b = find_profile(str(tmp_path / "m"))
    assert b is not None and "edited" not in b.notes


def test_sizing_operator_models_file_extends_knowledge_base(tmp_path, monkeypatch):
    extra = tmp_path / "models.toml"
    extra.write_text('''
[[model]]
id = "acme/house-model"
parameters = 115008
[model.config]
architectures = ["LlamaForCausalLM"]
model_type = "llama"
hidden_size = 64
intermediate_size = 128
num_hidden_layers = 2
num_attention_heads = 4
num_key_value_heads = 2
vocab_size = 320
max_position_embeddings = 2048
''')
    monkeypatch.setenv("A3S_MODELS_FILE", str(extra))
    p = find_profile("acme/house-model")
    assert p is not None and p.source == "knowledge-base" and p.parameters == 115008
    assert find_profile("Qwen/Qwen2.5-7B-Instruct") is not None  # built-ins still there


@pytest.mark.llamacpp  # runs in the tox env that builds llama-cpp-python
def test_sizing_gguf_agrees_with_llama_cpp(tmp_path):
    """llama.cpp's own count of the tiny GGUF equals ours."""
    import llama_cpp
    w = tiny.write_tiny_gguf(tmp_path / "tiny.gguf")
    llm = llama_cpp.Llama(model_path=str(tmp_path / "tiny.gguf"), n_ctx=64, verbose=False)
    try:
        p = find_profile(str(tmp_path / "tiny.gguf"))
        assert p is not None
        assert p.parameters == llama_cpp.llama_model_n_params(llm.model) == w.parameters
        assert p.weight_bytes == llama_cpp.llama_model_size(llm.model) == w.weight_bytes
    finally:
        llm.close()
