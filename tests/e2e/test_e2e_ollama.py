"""Ollama end to end (issue 14): `ollama` built from its Go module at the version the
plugin's image pins (`plugins/a3s-engine-ollama/scripts/build-ollama.sh`, cached in
~/.cache/a3s-engines), run by the `local` runtime on the CPU with the plugin's own entry
script and environment: the tiny GGUF imported through a one-line Modelfile (`ollama
create`, no registry), preloaded, served under the deployment's name on Ollama's
OpenAI-compatible path, through the gateway with the official `openai` client.

    plugins/a3s-engine-ollama/scripts/build-ollama.sh   # once; tox -e ollama runs it
    pytest -m ollama tests/e2e/test_e2e_ollama.py
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from real_engine_kit import (
    Running,
    alive,
    chat_plain_and_streamed,
    descendants,
    records,
    run_platform,
    wait_gone,
)

pytestmark = pytest.mark.ollama

ADMIN = "a3s-admin-e2e-ollama"


@pytest.fixture
def ollama(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """How the entry script will call ollama; skipped, saying how to build it, when there
    is none. HOME moves to the test's directory (Ollama keeps its models and key there),
    the engine cache stays where the build put it."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("finds engine processes through /proc (Linux)")
    from a3s_engine_ollama.binary import BUILD_SCRIPT, locate_ollama

    from a3s_core.contracts.binaries import ENGINE_CACHE_ENV, engine_cache

    found = locate_ollama()
    if found is None:
        pytest.skip(f"no ollama on PATH or in the engine cache: run {BUILD_SCRIPT} (needs Go "
                    "and a C compiler; tox -e ollama runs it)")
    monkeypatch.setenv(ENGINE_CACHE_ENV, str(engine_cache()))
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    return found


@pytest.fixture
def platform(tmp_path: Path, ollama: str) -> Iterator[Running]:
    with run_platform(tmp_path, ADMIN) as running:
        yield running


# A process listed a moment ago may be gone (the preload's short-lived `ollama run`, the
# shell around it): it reads as empty rather than failing the test.


def environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return {}
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [a.decode() for a in raw.split(b"\0") if a]


def api(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.loads(r.read())


def test_a_local_gguf_is_created_preloaded_served_and_deleted(
    platform: Running, ollama: str, tmp_path: Path
) -> None:
    from a3s_engine_llamacpp.testing import write_tiny_llama_gguf

    tiny = write_tiny_llama_gguf(tmp_path / "models" / "tiny.gguf")
    state_dir = platform.data_dir / "local"

    r = platform.http.post("/v1/deployments", json={"models": [{
        "name": "tiny", "model": str(tiny.path), "engine": "ollama",
        "extra_args": {"device": "cpu"},  # Ollama serves on either; this machine has a CPU
    }]})
    assert r.status_code == 202, r.text
    created = r.json()["deployments"][0]
    dep_id, endpoint, key = created["id"], created["endpoint"], created["apiKey"]
    v = platform.wait(dep_id, "running", lambda v: v["status"] == "running", timeout=240)
    assert v["plan"]["cpu_only"] is True
    (replica,) = v["replicas"]
    assert replica["gpuIndices"] == []

    # The plugin's entry script, with this machine's ollama, on loopback only.
    starting = next(e for e in v["recentEvents"] if e["type"] == "replica.starting")
    command: list[str] = starting["data"]["command"]
    assert command[:2] == ["/bin/sh", "-c"]
    (record,) = records(state_dir, "ollama").values()
    meta = record.get("meta", record)
    port = int(meta["port"])
    assert meta["health_url"] == f"http://127.0.0.1:{port}/api/version"
    assert f"OLLAMA_HOST=127.0.0.1:{port} {ollama} serve &" in command[2]
    assert f"{ollama} create tiny -f" in command[2] and "pull" not in command[2]

    # The serving process runs with the plugin's environment.
    servers = [p for p in descendants(int(record["pid"])) if cmdline(p)[1:2] == ["serve"]
               and environ(p).get("OLLAMA_HOST") == f"127.0.0.1:{port}"]
    assert len(servers) == 1, [cmdline(p) for p in descendants(int(record["pid"]))]
    env = environ(servers[0])
    assert env["OLLAMA_KEEP_ALIVE"] == "-1" and env["OLLAMA_MAX_LOADED_MODELS"] == "1"
    assert env["OLLAMA_CONTEXT_LENGTH"] == str(v["plan"]["max_model_len"])
    assert env["OLLAMA_NUM_PARALLEL"] == "1"  # a CPU plan reserves one full-length sequence
    assert env["CUDA_VISIBLE_DEVICES"] == ""

    # Created from the GGUF under the deployment's name, and loaded without any request: the
    # preload (`ollama run tiny ""`) runs once the server answers, so it may still be under
    # way when the replica turns ready; kept resident (OLLAMA_KEEP_ALIVE=-1).
    assert api(port, "/api/version")["version"] == "0.12.6"
    assert [m["name"] for m in api(port, "/api/tags")["models"]] == ["tiny:latest"]
    deadline = time.monotonic() + 60
    while not (loaded := api(port, "/api/ps")["models"]):
        assert time.monotonic() < deadline, "the preload never loaded the model"
        time.sleep(0.2)
    assert [m["name"] for m in loaded] == ["tiny:latest"]
    assert loaded[0]["expires_at"] > "2100"  # never unloaded

    # The official client through the gateway, on Ollama's OpenAI-compatible path.
    client = openai.OpenAI(base_url=endpoint, api_key=key, max_retries=0, timeout=120)
    plain, _ = chat_plain_and_streamed(client)
    assert plain.model == "tiny"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=endpoint, api_key="sk-a3s-wrong", max_retries=0).models.list()

    # DELETE stops the script and both of its ollama processes.
    pids = [int(record["pid"]), *descendants(int(record["pid"]))]
    assert all(alive(p) for p in pids)
    r = platform.http.delete(f"/v1/deployments/{dep_id}")
    assert r.status_code == 202, r.text
    wait_gone(pids)
    v = platform.wait(dep_id, "deleted", lambda v: v["status"] == "deleted", timeout=30)
    assert v["replicas"] == []
    with pytest.raises((openai.AuthenticationError, openai.NotFoundError)):
        client.models.list()
