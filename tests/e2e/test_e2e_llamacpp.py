"""A real engine end to end, on any machine (issue 9): the pip-installed llama.cpp engine
plugin serves a tiny random-weight GGUF on the `local` runtime's CPU, through the platform's
real HTTP server and gateway, driven by the official `openai` client.

This file drives llama-cpp-python's server (`python -m llama_cpp.server`, what the `local`
runtime runs when no llama-server is found); test_e2e_llama_server.py drives the upstream
llama-server the pods run. Runs in the tox env `llamacpp` (which installs
`plugins/a3s-engine-llamacpp[server]`):
    pytest -m llamacpp tests/e2e/test_e2e_llamacpp.py
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from real_engine_kit import Running, alive, chat_plain_and_streamed, run_platform, wait_gone
from real_engine_kit import engine_pids as kit_engine_pids

pytestmark = pytest.mark.llamacpp

ADMIN = "a3s-admin-e2e-llamacpp"


def require_llama_cpp_server() -> None:
    # Not importorskip: in the env that runs these tests a missing engine is a failure.
    if not Path("/proc/self/stat").exists():
        pytest.skip("finds engine processes through /proc (Linux)")
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.fail("llama-cpp-python is not installed: pip install -e "
                    "'plugins/a3s-engine-llamacpp[server]' (tox -e llamacpp does)")


def tiny_gguf(path: Path) -> Any:
    from a3s_engine_llamacpp.testing import write_tiny_llama_gguf

    return write_tiny_llama_gguf(path)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # A wide console, so rich tables do not truncate names.
    # Every installed plugin, as a user would see it.
    env = {k: v for k, v in os.environ.items() if k != "A3S_LOAD_PLUGINS"} | {"COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "a3s_core.cli.main", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Running]:
    require_llama_cpp_server()
    with run_platform(tmp_path, ADMIN) as running:
        yield running


def engine_pids(state_dir: Path) -> dict[str, tuple[int, int | None]]:
    """replica id → (supervisor wrapper pid, llama_cpp.server pid)."""
    return kit_engine_pids(state_dir, "llama_cpp.server")


def chat(client: openai.OpenAI) -> tuple[str, Any]:
    r = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hello world"}],
        max_tokens=8, temperature=0,
    )
    return r.choices[0].message.content or "", r


# ------------------------------------------------------------------ the tests


def test_pip_installed_plugin_is_listed_by_a3s_plugins(tmp_path: Path) -> None:
    done = cli("plugins", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if "engine-llamacpp" in line]
    assert rows, done.stdout
    assert "a3s-engine-llamacpp" in rows[0] and "a3s_register_engines" in rows[0]


def test_a3s_plan_offline_reports_the_exact_parameter_count(tmp_path: Path) -> None:
    tiny = tiny_gguf(tmp_path / "tiny.gguf")
    request = tmp_path / "request.json"
    request.write_text(json.dumps(
        {"models": [{"name": "tiny", "model": str(tiny.path), "engine": "llamacpp"}]}
    ))
    done = cli("plan", "--offline", str(request), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"parameters: {tiny.parameters:,} (exact, from the GGUF header)" in done.stdout


def test_deploy_chat_stream_survive_a_crash_and_delete(platform: Running,
                                                        tmp_path: Path) -> None:
    tiny = tiny_gguf(tmp_path / "models" / "tiny.gguf")
    state_dir = platform.data_dir / "local"

    # The seed-shaped request, answered at once with an endpoint and a key. llama-cpp-python
    # by name: where a llama-server is found it is the default (test_e2e_llama_server.py).
    r = platform.http.post("/v1/deployments", json={
        "models": [{"name": "tiny", "model": str(tiny.path), "engine": "llamacpp",
                    "extra_args": {"server": "llama-cpp-python"}}]
    })
    assert r.status_code == 202, r.text
    created = r.json()["deployments"][0]
    dep_id, endpoint, key = created["id"], created["endpoint"], created["apiKey"]
    assert endpoint == f"{platform.url}/d/default/tiny/v1"

    v = platform.wait(dep_id, "running", lambda v: v["status"] == "running")
    assert v["plan"]["cpu_only"] is True  # the engine declared needs_gpu = False
    assert v["plan"]["parameters"] == tiny.parameters
    (replica,) = v["replicas"]
    assert replica["gpuIndices"] == [] and replica["state"] == "ready"

    # The events show the real engine process starting, then ready.
    events = v["recentEvents"]
    types = [e["type"] for e in events]
    assert "replica.starting" in types and "replica.ready" in types
    starting = next(e for e in events if e["type"] == "replica.starting")
    command = starting["data"]["command"]
    assert command[:3] == [sys.executable, "-m", "llama_cpp.server"]
    assert command[command.index("--model") + 1] == str(tiny.path)
    assert command[command.index("--model_alias") + 1] == "tiny"
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert types.index("replica.starting") < types.index("replica.ready")

    # The official client, through the gateway, with the deployment's key.
    client = openai.OpenAI(base_url=endpoint, api_key=key, max_retries=0, timeout=60)
    plain, chunks = chat_plain_and_streamed(client)
    text = plain.choices[0].message.content
    assert plain.model == "tiny"
    assert chunks[-1].choices[0].finish_reason == "length"

    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=endpoint, api_key="sk-a3s-wrong", max_retries=0).models.list()

    # Kill the engine: the controller replaces the replica and the gateway answers again.
    pids = engine_pids(state_dir)
    assert list(pids) == [replica["id"]]
    wrapper, engine = pids[replica["id"]]
    assert engine is not None and alive(engine)
    os.kill(engine, signal.SIGKILL)
    v = platform.wait(
        dep_id, "a replacement replica",
        lambda v: v["status"] == "running"
        and [r["id"] for r in v["replicas"] if r["state"] == "ready"] not in ([], [replica["id"]]),
    )
    types = [e["type"] for e in v["recentEvents"]]
    assert "replica.failed" in types and "replica.restarting" in types
    failed = next(e for e in reversed(v["recentEvents"]) if e["type"] == "replica.failed")
    assert failed["data"]["replica"] == replica["id"]
    # The engine's own log, captured by the runtime: it served the chats above itself.
    tail = failed["data"]["logTail"]
    assert any('"POST /v1/chat/completions HTTP/1.1" 200' in line for line in tail), tail
    assert types.count("replica.starting") >= 2 and types.count("replica.ready") >= 2
    wait_gone([wrapper, engine])
    text_again, _ = chat(client)
    assert text_again == text

    # DELETE stops the process.
    (new_replica,) = v["replicas"]
    new_pids = engine_pids(state_dir)[new_replica["id"]]
    assert new_pids[1] is not None and alive(new_pids[1])
    r = platform.http.delete(f"/v1/deployments/{dep_id}")
    assert r.status_code == 202, r.text
    wait_gone([p for p in new_pids if p is not None])
    v = platform.wait(dep_id, "deleted", lambda v: v["status"] == "deleted", timeout=30)
    assert v["replicas"] == []
    assert engine_pids(state_dir) == {}
    with pytest.raises((openai.AuthenticationError, openai.NotFoundError)):
        client.models.list()  # the key was revoked with the deployment


def test_an_interpreter_without_llama_cpp_fails_the_deployment_saying_what_to_install(
    platform: Running, tmp_path: Path
) -> None:
    tiny = tiny_gguf(tmp_path / "tiny.gguf")
    bare = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    r = platform.http.post("/v1/deployments", json={"models": [{
        "name": "tiny", "model": str(tiny.path), "engine": "llamacpp",
        "extra_args": {"python": str(bare / "bin" / "python")},
    }]})
    assert r.status_code == 202, r.text
    dep_id = r.json()["deployments"][0]["id"]
    deadline = time.monotonic() + 60
    while (v := platform.view(dep_id))["status"] != "failed":
        assert time.monotonic() < deadline, v
        time.sleep(0.2)
    assert "cannot import 'llama_cpp'" in v["reason"]
    assert "pip install 'llama-cpp-python[server]'" in v["reason"]
    assert engine_pids(platform.data_dir / "local") == {}
