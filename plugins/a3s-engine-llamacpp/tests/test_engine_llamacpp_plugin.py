"""The installed distribution is found through its entry point; the tiny GGUF it writes for
tests is what it claims to be; the core sizes it exactly and keeps it on the CPU."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import gguf
import pytest

# The main tox env installs this plugin through requirements/dev.txt; where it is not
# installed, its tests are skipped (visibly), not a collection error for everyone.
pytest.importorskip("a3s_engine_llamacpp", reason="pip install -e plugins/a3s-engine-llamacpp")

from a3s_engine_llamacpp import LlamaCppEngine
from a3s_engine_llamacpp.testing import TinyModel, write_tiny_llama_gguf

from a3s_core.catalog import load_catalog
from a3s_core.plugins import Plugins
from a3s_core.types import ModelProfile, ModelSpec


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return write_tiny_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def test_entry_point_registers_the_engine_once_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A3S_LOAD_PLUGINS", "engine-llamacpp")
    eps = [ep for ep in metadata.entry_points(group="a3s") if ep.name == "engine-llamacpp"]
    assert [ep.value for ep in eps] == ["a3s_engine_llamacpp"]
    plugins = Plugins()
    assert plugins.engines.get("llamacpp") is LlamaCppEngine
    assert plugins.engines.owner("llamacpp") == "engine-llamacpp"
    info = {p.name: p for p in plugins.describe()}["engine-llamacpp"]
    assert info.distribution == "a3s-engine-llamacpp"
    assert info.hooks == ["a3s_register_engines"]


def test_engine_declares_cpu_serving_llama_servers_metrics_and_probe() -> None:
    assert LlamaCppEngine.needs_gpu is False
    # llama-server (the pod's program) runs with --metrics and is probed on /health; the
    # llama-cpp-python path's /v1/models comes from health_path_for (render tests).
    assert LlamaCppEngine.has_metrics is True
    assert LlamaCppEngine.health_path == LlamaCppEngine.ready_path == "/health"


def test_tiny_gguf_is_small_and_has_a_full_sentencepiece_vocabulary(tiny: TinyModel) -> None:
    assert 100_000 < tiny.file_bytes < 1_000_000
    reader = gguf.GGUFReader(str(tiny.path))

    def field(key: str) -> object:
        f = reader.get_field(key)
        assert f is not None, key
        return f.contents()

    tokens = field("tokenizer.ggml.tokens")
    assert isinstance(tokens, list) and len(tokens) == tiny.vocab_size
    # llama.cpp aborts loading an SPM vocabulary without every byte token.
    assert all(f"<0x{b:02X}>" in tokens for b in range(256))
    assert field("tokenizer.ggml.model") == "llama"
    bos, eos = field("tokenizer.ggml.bos_token_id"), field("tokenizer.ggml.eos_token_id")
    assert isinstance(bos, int) and isinstance(eos, int)
    assert (tokens[bos], tokens[eos]) == ("<s>", "</s>")
    assert field("general.architecture") == "llama"
    assert field("llama.block_count") == 2
    assert field("llama.embedding_length") == 64
    assert sum(int(t.n_elements) for t in reader.tensors) == tiny.parameters


def test_the_core_profiles_the_tiny_gguf_exactly(tiny: TinyModel) -> None:
    profile = Plugins().model_profile(str(tiny.path))
    assert profile.source == "gguf"
    assert profile.parameters == tiny.parameters
    assert profile.num_layers == 2 and profile.hidden_size == 64
    assert profile.num_attention_heads == 4 and profile.num_kv_heads == 2
    assert LlamaCppEngine().check(profile, None) is None


def test_sizing_with_the_engine_is_cpu_only_and_launch_keys_do_not_upset_it(
    tiny: TinyModel,
) -> None:
    plugins = Plugins()
    spec = ModelSpec(name="tiny", model=str(tiny.path), engine="llamacpp",
                     extra_args={"server": "llama-cpp-python", "n_batch": 64})
    plan = plugins.size(plugins.model_profile(spec.model), spec, load_catalog().gpus)
    assert plan.parameters == tiny.parameters
    assert plan.max_model_len == tiny.context_length
    assert 0 < plan.memory_bytes < 1 << 30


def test_non_gguf_models_and_embedders_are_refused_with_a_reason() -> None:
    hf = ModelProfile(
        model="Qwen/Qwen2.5-7B-Instruct", source="knowledge-base", architecture="x",
        model_type="qwen2", parameters=7_000_000_000, num_layers=28, hidden_size=3584,
        num_attention_heads=28, num_kv_heads=4, head_dim=128, intermediate_size=18944,
        vocab_size=152064, context_length=32768,
    )
    reason = LlamaCppEngine().check(hf, None)
    assert reason is not None and "GGUF" in reason and "'vllm'" in reason
    bert = hf.model_copy(update={"model": "/m/bge.gguf", "source": "gguf", "kind": "encoder",
                                 "model_type": "bert"})
    reason = LlamaCppEngine().check(bert, None)
    assert reason is not None and "embedding" in reason


def test_writer_refuses_inconsistent_shapes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kv_heads"):
        write_tiny_llama_gguf(tmp_path / "x.gguf", heads=4, kv_heads=3)
