"""Against the real llama-cpp-python (tox env `llamacpp`): the tiny GGUF loads and generates,
every flag the engine renders is one `python -m llama_cpp.server` accepts, and the server
started from the engine's own argv answers the health path the engine gives for it
(/v1/models: it has no /health, nor /metrics)."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The main tox env installs this plugin through requirements/dev.txt; where it is not
# installed, its tests are skipped (visibly), not a collection error for everyone.
pytest.importorskip("a3s_engine_llamacpp", reason="pip install -e plugins/a3s-engine-llamacpp")

from a3s_engine_llamacpp import LlamaCppEngine
from a3s_engine_llamacpp.testing import TinyModel, write_tiny_llama_gguf

from a3s_core.contracts import LaunchContext

pytestmark = pytest.mark.llamacpp


@pytest.fixture(scope="module")
def llama_cpp() -> Any:
    # Not importorskip: in the env that runs these tests a missing engine is a failure.
    try:
        import llama_cpp
    except ImportError as exc:
        pytest.fail(f"llama-cpp-python is not installed ({exc}): "
                    "pip install -e 'plugins/a3s-engine-llamacpp[server]'")
    return llama_cpp


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return write_tiny_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def context(tiny: TinyModel, **over: object) -> LaunchContext:
    base: dict[str, object] = dict(served_model_name="tiny", model=str(tiny.path),
                                   max_model_len=256, port=free_port(), cpu_threads=1)
    return LaunchContext(**{**base, **over})  # type: ignore[arg-type]


def test_llama_cpp_loads_the_tiny_model_and_generates(tiny: TinyModel, llama_cpp: Any) -> None:
    llm = llama_cpp.Llama(model_path=str(tiny.path), n_ctx=128, n_threads=1, verbose=False)
    assert llm.n_vocab() == tiny.vocab_size
    # SentencePiece merges reach whole words (one token each); BOS is added.
    ids = llm.tokenize(b"hello world")
    assert len(ids) == 3 and ids[0] == 1
    assert [llm.detokenize([i]).strip() for i in ids[1:]] == [b"hello", b"world"]
    out = llm.create_completion("hello world", max_tokens=6, temperature=0)
    assert out["usage"]["completion_tokens"] == 6
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["choices"][0]["text"].strip()  # word pieces, not dropped bytes
    chat = llm.create_chat_completion([{"role": "user", "content": "hi"}], max_tokens=4)
    assert chat["choices"][0]["message"]["role"] == "assistant"


def test_every_rendered_flag_is_accepted_by_the_real_server_parser(
    tiny: TinyModel, llama_cpp: Any
) -> None:
    from llama_cpp.server.cli import add_args_from_model, parse_model_from_args
    from llama_cpp.server.settings import ModelSettings, ServerSettings, Settings

    c = context(tiny, gpu_indices=[0], extra_args={"n_batch": 64, "flash_attn": True,
                                                   "tensor_split": [0.5, 0.5]})
    argv = LlamaCppEngine().command(c)
    assert argv[1:3] == ["-m", "llama_cpp.server"]
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_args_from_model(parser, Settings)
    args = parser.parse_args(argv[3:])
    server = parse_model_from_args(ServerSettings, args)
    model = parse_model_from_args(ModelSettings, args)
    assert (server.host, server.port) == ("127.0.0.1", c.port)
    assert model.model == str(tiny.path) and model.model_alias == "tiny"
    assert (model.n_ctx, model.n_threads, model.n_gpu_layers) == (256, 1, -1)
    assert (model.n_batch, model.flash_attn, model.tensor_split) == (64, True, [0.5, 0.5])


@pytest.fixture
def server(
    tiny: TinyModel, tmp_path: Path, llama_cpp: Any
) -> Iterator[tuple[LaunchContext, str]]:
    c = context(tiny)
    engine = LlamaCppEngine()
    # A stray PORT in the environment must not move the engine (env() pins it).
    env = {**os.environ, "PORT": "1", **engine.env(c)}
    log = (tmp_path / "engine.log").open("wb")
    proc = subprocess.Popen(engine.command(c), env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        yield c, f"http://127.0.0.1:{c.port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_server_from_the_engine_argv_answers_the_health_path(
    server: tuple[LaunchContext, str], tmp_path: Path
) -> None:
    c, base = server
    path = LlamaCppEngine().health_path_for(c)
    assert path == "/v1/models"  # llama-server's /health is not this server's
    deadline = time.monotonic() + 60
    while True:
        try:
            status = get(base + path)
            break
        except (urllib.error.URLError, ConnectionError):
            log = (tmp_path / "engine.log").read_text(errors="replace")
            assert time.monotonic() < deadline, f"engine did not come up:\n{log[-2000:]}"
            time.sleep(0.2)
    assert status == 200
    assert get(base + "/health") == 404  # why the health path is /v1/models
    # No /metrics either: a 404, which the gateway's scraper takes as "alive, no figures"
    # (a 5xx would count against the replica).
    assert get(base + "/metrics") == 404
    with urllib.request.urlopen(base + "/v1/models", timeout=2) as r:
        assert b'"id":"tiny"' in r.read().replace(b" ", b"")
