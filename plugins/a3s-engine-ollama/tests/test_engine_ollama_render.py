"""Ollama: tags for the seed's models, environment from the plan and extra_args."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from a3s_engine_ollama import OllamaEngine
from a3s_engine_ollama.engine import MAX_PARALLEL

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
        port=11434,
    )
    return LaunchContext(**{**base, **over})


def test_seed_minimal_request_serves_the_fp16_build_under_the_deployment_name() -> None:
    engine, c = OllamaEngine(), ctx()
    assert engine.image_for(c) == "ollama/ollama:0.12.6"
    assert engine.model_for(c) == "qwen2.5:72b-instruct-fp16"
    argv = engine.command(c)
    assert argv[:2] == ["/bin/sh", "-c"]
    script = argv[2]
    assert "OLLAMA_HOST=127.0.0.2:11434 ollama pull qwen2.5:72b-instruct-fp16\n" in script
    assert "OLLAMA_HOST=127.0.0.2:11434 ollama cp qwen2.5:72b-instruct-fp16 qwen-72b\n" in script
    assert "OLLAMA_HOST=0.0.0.0:11434 ollama serve &\n" in script
    assert 'OLLAMA_HOST=127.0.0.1:11434 ollama run qwen-72b ""' in script
    # Fetching happens before the real address is bound.
    assert script.index("ollama pull") < script.index("OLLAMA_HOST=0.0.0.0:11434 ollama serve")
    assert engine.env(c) == {
        "OLLAMA_KEEP_ALIVE": "-1",
        "OLLAMA_MAX_LOADED_MODELS": "1",
        "OLLAMA_CONTEXT_LENGTH": "32768",
        "OLLAMA_NUM_PARALLEL": "1",  # no plan figure in this context: one sequence
        "OLLAMA_SCHED_SPREAD": "1",  # TP 2: spread the layers over both GPUs
    }


def test_seed_full_request_awq_is_served_from_a_named_gguf_build() -> None:
    # check() refuses AWQ (see the plugin tests); with quantization none and an explicit
    # 4-bit tag the same model runs, one GPU.
    c = ctx(tensor_parallel_size=1, extra_args={"ollama_tag": "qwen2.5:72b-instruct-q4_K_M"})
    assert OllamaEngine().model_for(c) == "qwen2.5:72b-instruct-q4_K_M"
    script = OllamaEngine().command(c)[2]
    assert "ollama pull qwen2.5:72b-instruct-q4_K_M\n" in script
    assert "OLLAMA_SCHED_SPREAD" not in OllamaEngine().env(c)


def test_seed_multi_request_embedding_model_on_ollama() -> None:
    # bge-large-zh-v1.5 has no Ollama build (refused by check()); its multilingual sibling
    # bge-m3 does, and embedding models are not preloaded through `ollama run`.
    c = ctx(
        served_model_name="embedding",
        model="BAAI/bge-m3",
        kind="encoder",
        tensor_parallel_size=1,
        max_model_len=8192,
    )
    script = OllamaEngine().command(c)[2]
    assert "ollama pull bge-m3:567m\n" in script
    assert "ollama run" not in script
    assert OllamaEngine().openai_paths_for("encoder") == {"/v1/embeddings", "/v1/models"}
    with pytest.raises(InvalidRequest) as err:
        OllamaEngine().model_for(ctx(model="BAAI/bge-large-zh-v1.5", kind="encoder"))
    assert err.value.field == "model" and "tgi" in err.value.message


def test_local_gguf_file_is_created_not_pulled() -> None:
    c = ctx(model="/models/qwen2.5-7b-instruct-q5_k_m.gguf", tensor_parallel_size=1)
    script = OllamaEngine().command(c)[2]
    assert 'printf "FROM %s\\n" /models/qwen2.5-7b-instruct-q5_k_m.gguf' in script
    assert 'ollama create qwen-72b -f "$modelfile"' in script
    assert "ollama pull" not in script


def test_extra_args_become_ollama_variables() -> None:
    extra = {
        "num_parallel": 4,
        "OLLAMA_MAX_QUEUE": 256,
        "flash-attention": True,
        "kv_cache_type": "q8_0",
        "origins": ["https://a.example", "https://b.example"],
        "max_model_len": 1024,  # consumed by the plan: the context length stays 32768
        "ollama_tag": "qwen2.5:72b-instruct-q4_K_M",
    }
    env = OllamaEngine().env(ctx(extra_args=extra))
    assert env["OLLAMA_NUM_PARALLEL"] == "4"
    assert env["OLLAMA_MAX_QUEUE"] == "256"
    assert env["OLLAMA_FLASH_ATTENTION"] == "true"
    assert env["OLLAMA_KV_CACHE_TYPE"] == "q8_0"
    assert env["OLLAMA_ORIGINS"] == "https://a.example,https://b.example"
    assert env["OLLAMA_CONTEXT_LENGTH"] == "32768"
    assert not any("TAG" in k for k in env)


@pytest.mark.parametrize(
    ("key", "words"),
    [("host", "set by the platform"), ("max_num_seqs", "not an Ollama setting")],
)
def test_bad_extra_args_are_refused_naming_the_key(key: str, words: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        OllamaEngine().command(ctx(extra_args={key: 1}))
    assert err.value.field == f"extra_args.{key}" and words in err.value.message


def test_a_malformed_tag_is_refused() -> None:
    with pytest.raises(InvalidRequest) as err:
        OllamaEngine().model_for(ctx(extra_args={"ollama_tag": "qwen2.5 7b; rm -rf /"}))
    assert err.value.field == "extra_args.ollama_tag"


def test_parse_metrics_has_nothing_to_read() -> None:
    assert OllamaEngine.has_metrics is False
    figures = OllamaEngine().parse_metrics("")
    assert figures.waiting is None and figures.running is None


def test_ipv6_and_relative_gguf() -> None:
    script = OllamaEngine().command(ctx(host="::"))[2]
    assert "OLLAMA_HOST='[::]:11434' ollama serve &" in script
    assert "OLLAMA_HOST=127.0.0.1:11434 ollama run" in script
    with pytest.raises(InvalidRequest) as err:
        OllamaEngine().model_for(ctx(model="models/x.gguf"))
    assert err.value.field == "model" and "absolute" in err.value.message


# ------------------------------------------------------------------ parallel requests (issue 14)


def test_num_parallel_follows_the_sequences_the_plans_kv_budget_holds() -> None:
    # Ollama's default (1) serves one request at a time; every slot holds a full context.
    assert OllamaEngine().env(ctx(concurrent_sequences=6))["OLLAMA_NUM_PARALLEL"] == "6"
    huge = OllamaEngine().env(ctx(concurrent_sequences=400))["OLLAMA_NUM_PARALLEL"]
    assert huge == str(MAX_PARALLEL)
    # CPU placements: the plan reserved memory for one full-length sequence.
    assert OllamaEngine().env(ctx(concurrent_sequences=None))["OLLAMA_NUM_PARALLEL"] == "1"
    # The deployment's own value wins.
    told = ctx(concurrent_sequences=6, extra_args={"num_parallel": 2})
    assert OllamaEngine().env(told)["OLLAMA_NUM_PARALLEL"] == "2"


# ------------------------------------------------------------------ CPU, on this machine


def test_device_cpu_makes_the_plan_cpu_only_and_bad_devices_are_refused() -> None:
    engine = OllamaEngine()
    assert engine.needs_gpu_for({}) is True
    assert engine.needs_gpu_for({"device": "gpu"}) is True
    assert engine.needs_gpu_for({"device": "cpu"}) is False
    assert "OLLAMA_DEVICE" not in engine.env(ctx(extra_args={"device": "cpu"}))
    for bad in ("tpu", 1, None):
        with pytest.raises(InvalidRequest) as err:
            engine.needs_gpu_for({"device": bad})
        assert err.value.field == "extra_args.device" and "gpu, cpu" in err.value.message


def test_on_this_machine_ollama_listens_on_loopback_only(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    (tmp_path / "ollama").write_text("#!/bin/sh\n")
    (tmp_path / "ollama").chmod(0o755)
    c = ctx(model="/models/tiny.gguf", tensor_parallel_size=1, in_container=False, port=4000)
    script = OllamaEngine().command(c)[2]
    assert "OLLAMA_HOST=127.0.0.1:4000 ollama serve &" in script
    assert "0.0.0.0" not in script
    # In a container the pod's address is what the gateway dials.
    assert "OLLAMA_HOST=0.0.0.0:4000 ollama serve &" in OllamaEngine().command(
        ctx(model="/models/tiny.gguf", in_container=True, port=4000))[2]


def test_a_cached_build_is_used_when_ollama_is_not_on_path(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    monkeypatch.setenv("A3S_ENGINE_CACHE", str(tmp_path / "cache"))
    c = ctx(model="/models/tiny.gguf", tensor_parallel_size=1, in_container=False, port=4000)
    script = OllamaEngine().command(c)[2]
    assert "command -v ollama" in script and "is not installed" in script
    built = tmp_path / "cache" / "ollama-0.12.6" / "bin" / "ollama"
    built.parent.mkdir(parents=True)
    built.write_text("#!/bin/sh\n")
    built.chmod(0o755)
    script = OllamaEngine().command(c)[2]
    assert f"OLLAMA_HOST=127.0.0.1:4000 {built} serve &" in script
