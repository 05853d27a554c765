"""Quantization honesty, TP rules, extra_args overrides, and the one-sentence errors."""

from __future__ import annotations

import importlib
import json
import re

import a3s_tiny_checkpoints as tiny
import huggingface_hub
import pytest
from huggingface_hub import errors as hf_errors

from a3s_core.catalog import load_catalog
from a3s_core.errors import InvalidRequest, ModelNotFound, ModelUnavailable, SizingError
from a3s_core.plugins import Plugins, build_plugin_manager
from a3s_core.sizing import candidate_rows, hub, plan_rows, render_plan_table
from a3s_core.types import ModelSpec, SizingPlan

# the HTTP library this huggingface_hub raises with (httpx2 in 2.x): fakes raise the same
http = importlib.import_module(hf_errors.HfHubHTTPError.__mro__[1].__module__.split(".")[0])


@pytest.fixture
def plugins() -> Plugins:
    return Plugins(build_plugin_manager(load_entry_points=False))


def plan_for(plugins: Plugins, model: str, quantization: str = "none", **kw) -> SizingPlan:
    spec = ModelSpec(name="m", model=model, quantization=quantization, **kw)
    return plugins.size(plugins.model_profile(model), spec, load_catalog().gpus)


def one_sentence(msg: str) -> bool:
    return msg.count(". ") == 0 and not msg.endswith(".")


def local_model(tmp_path, name: str, **overrides) -> str:
    cfg = json.loads((tiny_fixture(name)).read_text())
    cfg.update(overrides)
    (tmp_path / name).mkdir()
    (tmp_path / name / "config.json").write_text(json.dumps(cfg))
    return str(tmp_path / name)


def tiny_fixture(name: str):
    from pathlib import Path

    return Path(tiny.__file__).parent / name / "config.json"


# ------------------------------------------------------------------ the three errors


def test_sizing_error_unknown_model(plugins, monkeypatch):
    def not_found(*a, **kw):
        request = http.Request("GET", "https://huggingface.co/x")
        response = http.Response(404, request=request)
        raise hf_errors.RepositoryNotFoundError("404", response=response)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", not_found)
    monkeypatch.setattr(hub, "probe", lambda endpoint: None)  # the hub answers
    with pytest.raises(ModelNotFound) as err:
        plugins.model_profile("acme/no-such-model")
    assert "'acme/no-such-model'" in err.value.message and one_sentence(err.value.message)
    assert err.value.status_code == 422


def test_sizing_error_hub_unreachable(plugins, monkeypatch):
    def refused(*a, **kw):
        raise http.ConnectError("[Errno 111] Connection refused")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refused)
    with pytest.raises(ModelUnavailable) as err:
        plugins.model_profile("acme/some-model")
    msg = err.value.message
    assert "'acme/some-model'" in msg and "local model path" in msg and one_sentence(msg)


def test_sizing_error_impossible_max_model_len(plugins):
    # Llama-3.1-70B in bf16 held to 2 GPUs at 45 % utilisation: the full 131,072 tokens
    # fit nowhere, and the error says how long a context does
    with pytest.raises(SizingError) as err:
        plan_for(plugins, "meta-llama/Llama-3.1-70B-Instruct", max_model_len=131072,
                 extra_args={"tensor_parallel_size": 2, "gpu_memory_utilization": 0.45})
    msg = err.value.message
    assert "'meta-llama/Llama-3.1-70B-Instruct'" in msg and "largest that fits" in msg
    assert one_sentence(msg)
    best = int(re.search(r"largest that fits is ([\d,]+) tokens", msg).group(1).replace(",", ""))
    # the figure is right: asking for exactly that works, one block more does not
    ok = plan_for(plugins, "meta-llama/Llama-3.1-70B-Instruct", max_model_len=best,
                  extra_args={"tensor_parallel_size": 2, "gpu_memory_utilization": 0.45})
    assert ok.max_model_len == best
    with pytest.raises(SizingError):
        plan_for(plugins, "meta-llama/Llama-3.1-70B-Instruct", max_model_len=best + 16,
                 extra_args={"tensor_parallel_size": 2, "gpu_memory_utilization": 0.45})


def test_sizing_error_max_model_len_beyond_context(plugins):
    with pytest.raises(SizingError, match="context length 32,768"):
        plan_for(plugins, "Qwen/Qwen2.5-7B-Instruct", max_model_len=65536)


def test_sizing_max_model_len_honoured(plugins):
    plan = plan_for(plugins, "meta-llama/Llama-3.1-8B-Instruct", max_model_len=8192)
    assert plan.max_model_len == 8192 and plan.max_model_len_source == "request"
    assert all(c.max_model_len == 8192 for c in plan.candidates)


# ------------------------------------------------------------------ quantization honesty


def test_sizing_awq_on_16bit_without_twin_is_refused(plugins, tmp_path):
    path = local_model(tmp_path, "mistralai--Mistral-7B-v0.1")
    with pytest.raises(SizingError) as err:
        plan_for(plugins, path, "awq")
    msg = err.value.message
    assert "16-bit checkpoint" in msg and "no AWQ checkpoint" in msg and one_sentence(msg)


def test_sizing_quantized_checkpoint_sized_as_is(plugins):
    plan = plan_for(plugins, "Qwen/Qwen2.5-72B-Instruct-AWQ")  # quantization "none"
    assert plan.quantization == "awq" and plan.checkpoint == "Qwen/Qwen2.5-72B-Instruct-AWQ"
    assert plan.bytes_per_parameter < 0.6
    with pytest.raises(SizingError, match="already quantized"):
        plan_for(plugins, "Qwen/Qwen2.5-72B-Instruct-AWQ", "gptq")


def test_sizing_group_alignment_reason(plugins, tmp_path):
    path = local_model(tmp_path, "Qwen--Qwen2.5-72B-Instruct", torch_dtype="float16",
                       quantization_config={"quant_method": "awq", "bits": 4,
                                            "group_size": 128, "zero_point": True})
    with pytest.raises(SizingError) as err:
        plan_for(plugins, path, extra_args={"tensor_parallel_size": 2})
    assert "not a multiple of the 4-bit group size 128" in str(err.value.detail)
    # the padded twin from the knowledge base splits fine
    padded = plan_for(plugins, "Qwen/Qwen2.5-72B-Instruct-AWQ",
                      extra_args={"tensor_parallel_size": 2})
    assert all(c.tensor_parallel_size == 2 for c in padded.candidates)


def test_sizing_heads_must_divide_tp(plugins):
    plan = plan_for(plugins, "Qwen/Qwen2.5-7B-Instruct")  # 28 heads: TP 8 impossible
    assert all(c.tensor_parallel_size in (1, 2, 4) for c in plan.candidates)
    with pytest.raises(SizingError) as err:
        plan_for(plugins, "Qwen/Qwen2.5-7B-Instruct", extra_args={"tensor_parallel_size": 8})
    assert "28 attention heads are not divisible by TP 8" in str(err.value.detail)


def test_sizing_kv_heads_replicated_beyond_tp(plugins):
    # Qwen2.5-7B has 4 kv heads: at TP 4 each rank holds one; KV per GPU = 1/4 of the total
    plan = plan_for(plugins, "Qwen/Qwen2.5-7B-Instruct", extra_args={"tensor_parallel_size": 4})
    c = plan.candidates[0]
    per_gpu = 57_344 // 4
    assert abs(c.kv_budget_per_gpu_bytes / per_gpu / c.max_model_len
               - c.concurrent_sequences) < 0.01
    # tiny model with 2 kv heads at TP 4: each rank keeps a replica of one head
    from a3s_core.sizing.architecture import arch_from_config
    from a3s_core.sizing.memory import kv_cache

    arch = arch_from_config(tiny.TINY_LLAMA)
    assert kv_cache(arch, 2).per_token_per_gpu(arch, 4) == 2 * 2 * 1 * 16 * 2


# ------------------------------------------------------------------ extra_args overrides


def test_sizing_extra_args_override_and_are_recorded(plugins):
    plan = plan_for(plugins, "meta-llama/Llama-3.1-8B-Instruct", extra_args={
        "tensor-parallel-size": 2, "max_model_len": 16384, "gpu_memory_utilization": 0.8,
        "kv_cache_dtype": "fp8", "enable_prefix_caching": True})
    assert plan.overrides == {"tensor-parallel-size": 2, "max_model_len": 16384,
                              "gpu_memory_utilization": 0.8, "kv_cache_dtype": "fp8"}
    assert plan.max_model_len == 16384 and plan.max_model_len_source == "extra_args"
    assert plan.gpu_memory_utilization == 0.8
    assert plan.kv_bytes_per_token == 2 * 32 * 8 * 128 * 1  # fp8 KV cache: 1 byte
    assert {c.tensor_parallel_size for c in plan.candidates} == {2}
    l4 = next(g for g in load_catalog().gpus if g.name == "L4-24GB")
    assert plan.candidate_for("L4-24GB").usable_per_gpu_bytes == int(l4.allocatable_bytes * 0.8)
    assert any("overridden by extra_args" in line for line in plan.explanation)


def test_sizing_extra_args_engine_quantization_override(plugins):
    plan = plan_for(plugins, "Qwen/Qwen2.5-72B-Instruct", "awq",
                    extra_args={"quantization": "awq_marlin"})
    assert plan.engine_quantization == "awq_marlin" and plan.quantization == "awq"


@pytest.mark.parametrize(("key", "value"), [
    ("tensor_parallel_size", 0), ("tensor_parallel_size", 16), ("max_model_len", "long"),
    ("gpu_memory_utilization", 1.5), ("dtype", "int3"), ("enforce_eager", "yes"),
])
def test_sizing_bad_extra_args_name_the_field(plugins, key, value):
    with pytest.raises(InvalidRequest) as err:
        plan_for(plugins, "Qwen/Qwen2.5-7B-Instruct", extra_args={key: value})
    assert err.value.field == f"extra_args.{key}"
    assert repr(value) in err.value.message or str(value) in err.value.message


def test_sizing_enforce_eager_drops_graph_memory(plugins):
    base = plan_for(plugins, "Qwen/Qwen2.5-7B-Instruct").candidates[0]
    eager = plan_for(plugins, "Qwen/Qwen2.5-7B-Instruct",
                     extra_args={"enforce_eager": True}).candidate_for(base.gpu)
    assert eager is not None
    assert base.overhead_per_gpu_bytes - eager.overhead_per_gpu_bytes == int(0.5 * 2**30)


# ------------------------------------------------------------------ showing the arithmetic


def test_sizing_plan_table_and_rows(plugins):
    from rich.console import Console

    plan = plan_for(plugins, "Qwen/Qwen2.5-72B-Instruct", "awq")
    rows = dict(plan_rows(plan))
    assert rows["checkpoint"] == "Qwen/Qwen2.5-72B-Instruct-AWQ"
    assert rows["KV per token"] == "327,680 B"
    assert candidate_rows(plan)[0][1] == f"1 × {plan.candidates[0].gpu}"
    console = Console(width=200, record=True)
    console.print(render_plan_table(plan))
    text = console.export_text()
    for needle in ("bytes per parameter", "KV for one full sequence", "A100-80GB", "38.74 GiB"):
        assert needle in text


def test_sizing_explanation_shows_each_figure(plugins):
    plan = plan_for(plugins, "Qwen/Qwen2.5-72B-Instruct", "awq")
    text = "\n".join(plan.explanation)
    assert "70,464,307,200 linear params × 0.5195 B" in text
    assert "2 (K and V) × 80 layers × 8 kv heads × 128 head dim × 2 B = 327,680 B" in text
    assert "overhead per GPU at TP 1: runtime" in text
    assert "serves its AWQ checkpoint Qwen/Qwen2.5-72B-Instruct-AWQ" in text


def test_sizing_error_fits_nowhere_says_what_it_would_take(plugins, tmp_path):
    # DeepSeek-V3's architecture in fp32: 2.7 TB of weights, more than any 8-GPU node
    path = local_model(tmp_path, "deepseek-ai--DeepSeek-V3", quantization_config=None)
    with pytest.raises(SizingError) as err:
        plan_for(plugins, path, extra_args={"dtype": "float32"})
    msg = err.value.message
    assert path in msg and "fits on no GPU type" in msg and "one 8-GPU node" in msg
    assert "more than one 8-GPU node" in msg and one_sentence(msg)


def test_sizing_gguf_memory_is_llama_cpp_shaped(plugins, tmp_path):
    w = tiny.write_tiny_gguf(tmp_path / "t.gguf")
    plan = plan_for(plugins, str(tmp_path / "t.gguf"))
    kv = plan.kv_bytes_per_token * plan.max_model_len
    compute = 512 * (4 * 64 + (4 + 2 * 2) * 16 + 3 * 128 + 271) * 4
    assert plan.memory_bytes == w.weight_bytes + kv + compute + 64 * 2**20
    assert any(line.startswith("llama.cpp: weights") for line in plan.explanation)


def test_sizing_extra_args_quantization_alone_is_sized(plugins):
    plan = plan_for(plugins, "Qwen/Qwen2.5-72B-Instruct", extra_args={"quantization": "awq_marlin"})
    assert plan.checkpoint == "Qwen/Qwen2.5-72B-Instruct-AWQ"
    assert plan.quantization == "awq" and plan.engine_quantization == "awq_marlin"
    with pytest.raises(InvalidRequest) as err:
        plan_for(plugins, "Qwen/Qwen2.5-72B-Instruct", "awq", extra_args={"quantization": "fp8"})
    assert err.value.field == "extra_args.quantization"


def test_sizing_config_missing_field_names_the_model(plugins, tmp_path):
    (tmp_path / "bad").mkdir()
    # an architecture whose defaults are not known: a missing size is an error …
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"model_type": "acme_lm"}))
    with pytest.raises(SizingError) as err:
        plugins.model_profile(str(tmp_path / "bad"))
    assert str(tmp_path / "bad") in err.value.message and "hidden_size" in err.value.message


def test_sizing_config_omitted_keys_take_the_architecture_defaults(plugins, tmp_path):
    # … a known one means what transformers' LlamaConfig() means: the original LLaMA-7B
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert plugins.model_profile(str(tmp_path / "llama")).parameters == 6_738_415_616


def test_sizing_override_aliases_are_recorded(plugins):
    plan = plan_for(plugins, "Qwen/Qwen2.5-7B-Instruct",
                    extra_args={"tp": 2, "--max-model-len": 4096, "trust_remote_code": True})
    assert plan.overrides == {"tp": 2, "--max-model-len": 4096}
    assert {c.tensor_parallel_size for c in plan.candidates} == {2}
    assert plan.max_model_len == 4096
