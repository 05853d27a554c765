"""Exact command lines for both llama.cpp servers, extra_args, environment and image."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

# The main tox env installs this plugin through requirements/dev.txt; where it is not
# installed, its tests are skipped (visibly), not a collection error for everyone.
pytest.importorskip("a3s_engine_llamacpp", reason="pip install -e plugins/a3s-engine-llamacpp")

from a3s_engine_llamacpp import LlamaCppEngine, server_for
from a3s_engine_llamacpp.binary import locate_llama_server
from a3s_engine_llamacpp.engine import CUDA_IMAGE, IMAGE

from a3s_core.contracts import LaunchContext
from a3s_core.errors import InvalidRequest


class RuntimeAwareContext(LaunchContext):
    """LaunchContext with the field the engine asks the core for (`in_container`)."""

    in_container: bool | None = None


@pytest.fixture(autouse=True)
def no_llama_server_here(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """This machine has no llama-server unless a test puts one on PATH or in the cache."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("A3S_ENGINE_CACHE", str(tmp_path / "engine-cache"))
    return empty


def fake_binary(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def ctx(**over: Any) -> LaunchContext:
    base: dict[str, Any] = dict(
        served_model_name="tiny",
        model="/models/tiny.gguf",
        max_model_len=512,
        port=41234,
        cpu_threads=3,
    )
    cls = RuntimeAwareContext if "in_container" in over else LaunchContext
    return cls(**{**base, **over})


def test_local_cpu_replica_runs_llama_cpp_python_with_the_platform_interpreter() -> None:
    assert LlamaCppEngine().command(ctx()) == [
        sys.executable, "-m", "llama_cpp.server",
        "--model", "/models/tiny.gguf",
        "--model_alias", "tiny",
        "--host", "127.0.0.1",
        "--port", "41234",
        "--n_ctx", "512",
        "--n_threads", "3",
    ]  # fmt: skip


def test_bound_gpus_offload_every_layer_and_no_thread_count_is_forced() -> None:
    argv = LlamaCppEngine().command(ctx(gpu_indices=[0, 1], cpu_threads=None))
    assert argv[-2:] == ["--n_gpu_layers", "-1"]
    assert "--n_threads" not in argv


def test_local_server_listens_on_loopback_whatever_host_the_context_says() -> None:
    # The gateway authenticates and the engine checks no key: it must not be reachable
    # from the network on a shared machine.
    argv = LlamaCppEngine().command(ctx(host="0.0.0.0"))
    assert argv[argv.index("--host") + 1] == "127.0.0.1"


def test_environment_pins_host_and_port_which_llama_cpp_python_reads_over_its_flags() -> None:
    assert LlamaCppEngine().env(ctx()) == {"HOST": "127.0.0.1", "PORT": "41234"}


def test_extra_args_use_llama_cpp_python_spelling_and_the_users_value_wins() -> None:
    argv = LlamaCppEngine().command(
        ctx(extra_args={"n-batch": 128, "flash_attn": True, "use_mmap": False,
                        "tensor_split": [0.5, 0.5], "n_threads": 1, "seed": None,
                        "chat_template_kwargs": {"enable_thinking": False},
                        "max_model_len": 999})
    )
    tail = argv[argv.index("--n_ctx") + 2:]
    assert tail == [
        "--n_batch", "128",
        "--flash_attn", "true",
        "--use_mmap", "false",
        "--tensor_split", "0.5", "0.5",
        "--n_threads", "1",
        "--chat_template_kwargs", '{"enable_thinking":false}',
    ]  # fmt: skip
    assert argv.count("--n_threads") == 1  # the plan's 3 threads gave way
    assert argv[argv.index("--n_ctx") + 1] == "512"  # max_model_len was applied by the plan


@pytest.mark.parametrize(
    "key", ["model", "model_alias", "alias", "host", "--port", "n_ctx", "ctx-size", "api_key"]
)
def test_extra_args_cannot_override_what_the_platform_owns(key: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        LlamaCppEngine().command(ctx(extra_args={key: "x"}))
    assert err.value.field == f"extra_args.{key}"
    assert "set by the platform" in err.value.message


def test_an_unknown_server_choice_is_refused_naming_the_choices() -> None:
    with pytest.raises(InvalidRequest) as err:
        LlamaCppEngine().command(ctx(extra_args={"server": "ollama"}))
    assert err.value.field == "extra_args.server"
    assert "llama-cpp-python, llama-server" in err.value.message


def test_extra_args_python_picks_another_interpreter() -> None:
    argv = LlamaCppEngine().command(ctx(extra_args={"python": "/opt/llama/bin/python"}))
    assert argv[:3] == ["/opt/llama/bin/python", "-m", "llama_cpp.server"]
    with pytest.raises(InvalidRequest) as err:
        LlamaCppEngine().command(ctx(extra_args={"python": ""}))
    assert err.value.field == "extra_args.python"


def test_an_engine_side_api_key_is_refused_for_llama_cpp_python() -> None:
    # It would lock /v1/models too, which is the health check.
    with pytest.raises(InvalidRequest) as err:
        LlamaCppEngine().command(ctx(api_key="secret"))
    assert err.value.field == "api_key"
    assert "secret" not in err.value.message


def test_in_a_container_the_upstream_llama_server_runs_with_its_own_flags() -> None:
    c = ctx(in_container=True, host="0.0.0.0", port=8080, cpu_threads=None)
    engine = LlamaCppEngine()
    assert server_for(c) == "llama-server"
    assert engine.command(c) == [
        "/app/llama-server",
        "--model", "/models/tiny.gguf",
        "--alias", "tiny",
        "--host", "0.0.0.0",
        "--port", "8080",
        "--ctx-size", "512",
        "--metrics",
    ]  # fmt: skip
    assert engine.image_for(c) == IMAGE
    assert engine.env(c) == {}


def test_llama_server_on_gpus_uses_the_cuda_image_and_offloads_all_layers() -> None:
    c = ctx(in_container=True, gpu_indices=[0], cpu_threads=None)
    engine = LlamaCppEngine()
    assert engine.image_for(c) == CUDA_IMAGE
    assert engine.command(c)[-2:] == ["--n-gpu-layers", "999"]
    # An image pinned by the operator (settings.engine_images) is used as it is.
    pinned = "registry.local/llama:cuda"
    assert LlamaCppEngine(image=pinned).image_for(c) == pinned


def test_llama_server_extra_args_spelling_and_key_from_the_environment() -> None:
    c = ctx(in_container=True, api_key="sk-engine",
            extra_args={"cont_batching": True, "mmap": False, "tensor-split": [3, 1],
                        "parallel": 4, "threads": 2})
    argv = LlamaCppEngine().command(c)
    assert argv[argv.index("--metrics") + 1:] == [
        "--cont-batching", "--no-mmap", "--tensor-split", "3,1", "--parallel", "4",
        "--threads", "2",
    ]
    assert argv.count("--threads") == 1
    assert "sk-engine" not in argv  # `ps` must not show it
    assert LlamaCppEngine().env(c) == {"LLAMA_API_KEY": "sk-engine"}


def test_llama_server_on_this_machine_is_found_on_path_and_binds_loopback() -> None:
    c = ctx(in_container=False, extra_args={"server": "llama-server"})
    argv = LlamaCppEngine().command(c)
    assert argv[0] == "llama-server"
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--threads") + 1] == "3"


def test_in_container_defaults_to_llama_server_and_can_be_told_otherwise() -> None:
    c = ctx(in_container=True, extra_args={"server": "llama-cpp-python"})
    argv = LlamaCppEngine().command(c)
    assert argv[:3] == ["python3", "-m", "llama_cpp.server"]
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert server_for(ctx(in_container=False)) == "llama-cpp-python"


def test_a_model_directory_becomes_its_one_gguf_file(tmp_path: Path) -> None:
    (tmp_path / "model-Q4_K_M.gguf").write_bytes(b"GGUF")
    (tmp_path / "mmproj-f16.gguf").write_bytes(b"GGUF")
    argv = LlamaCppEngine().command(ctx(model=str(tmp_path)))
    assert argv[argv.index("--model") + 1] == str(tmp_path / "model-Q4_K_M.gguf")


def test_a_split_model_directory_loads_from_its_first_part(tmp_path: Path) -> None:
    for i in (1, 2):
        (tmp_path / f"big-0000{i}-of-00002.gguf").write_bytes(b"GGUF")
    assert LlamaCppEngine().model_for(ctx(model=str(tmp_path))) == str(
        tmp_path / "big-00001-of-00002.gguf"
    )


def test_a_directory_with_two_models_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.gguf").write_bytes(b"GGUF")
    (tmp_path / "b.gguf").write_bytes(b"GGUF")
    with pytest.raises(InvalidRequest) as err:
        LlamaCppEngine().command(ctx(model=str(tmp_path)))
    assert err.value.field == "model"
    assert "a.gguf, b.gguf" in err.value.message


def test_a_relative_model_path_is_made_absolute(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tiny.gguf").write_bytes(b"GGUF")
    monkeypatch.chdir(tmp_path)
    assert LlamaCppEngine().model_for(ctx(model="tiny.gguf")) == str(tmp_path / "tiny.gguf")


def test_bad_context_values_are_refused_naming_the_field() -> None:
    with pytest.raises(InvalidRequest) as err:
        LlamaCppEngine().command(ctx(max_model_len=0))
    assert err.value.field == "max_model_len"
    with pytest.raises(InvalidRequest) as err:
        LlamaCppEngine().command(ctx(model=" "))
    assert err.value.field == "model"


# ------------------------------------------------------------------ probes and metrics (issue 14)


def test_llama_server_probes_health_which_is_503_until_the_model_is_loaded() -> None:
    # /v1/models is answered by some llama-server builds while loading, and needs the API
    # key when one is set; /health is public and 503 until the model is loaded.
    engine = LlamaCppEngine()
    for c in (ctx(in_container=True), ctx(in_container=False,
                                          extra_args={"server": "llama-server"})):
        assert engine.health_path_for(c) == "/health"
        assert engine.ready_path_for(c) == "/health"
    assert (LlamaCppEngine.health_path, LlamaCppEngine.ready_path) == ("/health", "/health")


def test_llama_cpp_python_keeps_v1_models_since_it_has_no_health() -> None:
    c = ctx(in_container=False)
    assert server_for(c) == "llama-cpp-python"
    assert LlamaCppEngine().health_path_for(c) == "/v1/models"
    assert LlamaCppEngine().ready_path_for(c) == "/v1/models"


def test_llama_server_exports_metrics_and_a_user_cannot_turn_them_off() -> None:
    argv = LlamaCppEngine().command(ctx(in_container=True))
    assert argv.count("--metrics") == 1
    assert LlamaCppEngine.has_metrics is True
    with pytest.raises(InvalidRequest) as err:
        LlamaCppEngine().command(ctx(in_container=True, extra_args={"metrics": False}))
    assert err.value.field == "extra_args.metrics"


# What llama-server's /metrics says (server-task.cpp, to_metrics), trimmed to the gauges.
LLAMA_SERVER_METRICS = """\
# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed, excluding cached tokens
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 1234
# HELP llamacpp:requests_processing Number of requests processing
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 3
# HELP llamacpp:requests_deferred Number of requests deferred
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 2
# HELP llamacpp:n_busy_slots_per_decode Average number of busy slots per llama_decode() call
# TYPE llamacpp:n_busy_slots_per_decode gauge
llamacpp:n_busy_slots_per_decode 2.5
"""


def test_parse_metrics_reads_llama_servers_queue_gauges() -> None:
    figures = LlamaCppEngine().parse_metrics(LLAMA_SERVER_METRICS)
    assert (figures.running, figures.waiting, figures.kv_cache_usage) == (3, 2, None)
    older = LLAMA_SERVER_METRICS + "llamacpp:kv_cache_usage_ratio 0.25\n"
    assert LlamaCppEngine().parse_metrics(older).kv_cache_usage == 0.25
    assert LlamaCppEngine().parse_metrics("").running is None


# ------------------------------------------------------------------ finding llama-server here


def test_llama_server_on_path_is_the_default_on_this_machine(no_llama_server_here: Path) -> None:
    fake_binary(no_llama_server_here / "llama-server")
    c = ctx(in_container=False)
    assert server_for(c) == "llama-server"
    argv = LlamaCppEngine().command(c)
    assert argv[0] == "llama-server"  # bare: the runtime's search_path still comes first
    assert "--metrics" in argv and argv[argv.index("--host") + 1] == "127.0.0.1"
    assert LlamaCppEngine().health_path_for(c) == "/health"


def test_naming_an_interpreter_means_llama_cpp_python_even_with_llama_server_here(
    no_llama_server_here: Path,
) -> None:
    fake_binary(no_llama_server_here / "llama-server")
    c = ctx(in_container=False, extra_args={"python": "/opt/venv/bin/python"})
    assert server_for(c) == "llama-cpp-python"
    assert LlamaCppEngine().command(c)[:3] == ["/opt/venv/bin/python", "-m", "llama_cpp.server"]


def test_a_cached_build_is_found_newest_version_first(tmp_path: Path) -> None:
    cache = tmp_path / "engine-cache"
    fake_binary(cache / "llama-server-0.3.9" / "bin" / "llama-server")
    newest = fake_binary(cache / "llama-server-0.3.36" / "bin" / "llama-server")
    assert locate_llama_server() == str(newest)
    argv = LlamaCppEngine().command(ctx(in_container=False))
    assert argv[0] == str(newest)


def test_without_llama_server_this_machine_runs_llama_cpp_python() -> None:
    assert locate_llama_server() is None
    assert server_for(ctx(in_container=False)) == "llama-cpp-python"
    # told to run llama-server anyway: the bare name, which the runtime reports as missing
    argv = LlamaCppEngine().command(ctx(in_container=False, extra_args={"server": "llama-server"}))
    assert argv[0] == "llama-server"


def test_in_a_container_the_image_binary_runs_whatever_this_machine_has(
    no_llama_server_here: Path,
) -> None:
    fake_binary(no_llama_server_here / "llama-server")
    assert LlamaCppEngine().command(ctx(in_container=True))[0] == "/app/llama-server"
