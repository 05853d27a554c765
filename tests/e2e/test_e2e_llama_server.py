"""The upstream llama-server end to end (issue 14): the C++ server the Kubernetes pods run,
built on this machine from the llama.cpp tree in llama-cpp-python's source distribution
(`plugins/a3s-engine-llamacpp/scripts/build-llama-server.sh`, cached in
~/.cache/a3s-engines), found by the engine and run by the `local` runtime with the same
flags the pod gets, probed on /health, scraped for `llamacpp:` figures (--metrics), and
driven through the gateway with the official `openai` client.

    plugins/a3s-engine-llamacpp/scripts/build-llama-server.sh   # once; tox -e llamacpp does
    pytest -m llamacpp tests/e2e/test_e2e_llama_server.py
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
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

pytestmark = pytest.mark.llamacpp

ADMIN = "a3s-admin-e2e-llama-server"


@pytest.fixture
def llama_server() -> str:
    """argv[0] the engine will render: skipped, saying how to build it, when none is here."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("finds engine processes through /proc (Linux)")
    from a3s_engine_llamacpp.binary import BUILD_SCRIPT, locate_llama_server

    found = locate_llama_server()
    if found is None:
        pytest.skip(f"no llama-server on PATH or in the engine cache: run {BUILD_SCRIPT} "
                    "(needs cmake and a C++ compiler; tox -e llamacpp runs it)")
    return found


@pytest.fixture
def platform(tmp_path: Path, llama_server: str) -> Iterator[Running]:
    with run_platform(tmp_path, ADMIN) as running:
        yield running


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def gauge(text: str, name: str) -> float:
    (line,) = [x for x in text.splitlines() if x.startswith(name + " ")]
    return float(line.split()[1])


def test_llama_server_runs_the_pods_argv_probes_health_and_feeds_least_queue(
    platform: Running, llama_server: str, tmp_path: Path
) -> None:
    from a3s_engine_llamacpp import LlamaCppEngine
    from a3s_engine_llamacpp.testing import write_tiny_llama_gguf

    from a3s_core.contracts import LaunchContext

    tiny = write_tiny_llama_gguf(tmp_path / "models" / "tiny.gguf")
    state_dir = platform.data_dir / "local"

    # The seed-shaped request: no server named; the engine finds llama-server here.
    r = platform.http.post("/v1/deployments", json={
        "models": [{"name": "tiny", "model": str(tiny.path), "engine": "llamacpp"}]
    })
    assert r.status_code == 202, r.text
    created = r.json()["deployments"][0]
    dep_id, endpoint, key = created["id"], created["endpoint"], created["apiKey"]
    v = platform.wait(dep_id, "running", lambda v: v["status"] == "running")
    (replica,) = v["replicas"]

    # Exactly the pod's flags: the same engine rendering for a container, with the pod's
    # binary and address in place of this machine's.
    starting = next(e for e in v["recentEvents"] if e["type"] == "replica.starting")
    command: list[str] = starting["data"]["command"]
    assert command[0] == llama_server
    port = int(command[command.index("--port") + 1])
    pod = LlamaCppEngine().command(LaunchContext(
        served_model_name="tiny", model=str(tiny.path), max_model_len=v["plan"]["max_model_len"],
        port=port, cpu_threads=int(command[command.index("--threads") + 1]), in_container=True,
    ))
    assert pod[0] == "/app/llama-server"
    assert pod[pod.index("--host") + 1] == "0.0.0.0"
    pod[pod.index("--host") + 1] = "127.0.0.1"  # loopback here: the gateway checks the key
    assert command[1:] == pod[1:]
    assert "--metrics" in command and command[command.index("--alias") + 1] == "tiny"

    # The runtime probes /health, which llama-server answers 200 once the model is loaded.
    (record,) = records(state_dir, "--alias").values()
    meta = record.get("meta", record)
    assert meta["health_url"] == f"http://127.0.0.1:{port}/health"
    status, body = get(f"http://127.0.0.1:{port}/health")
    assert status == 200 and '"ok"' in body

    # The official client through the gateway, plain and streaming.
    client = openai.OpenAI(base_url=endpoint, api_key=key, max_retries=0, timeout=60)
    chat_plain_and_streamed(client)
    models = client.models.list()
    assert [m.id for m in models.data] == ["tiny"]

    # --metrics: llama-server's own Prometheus page, and the gateway's scraper reading the
    # queue gauges from it (what least-queue balances on).
    status, metrics = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200, metrics
    assert gauge(metrics, "llamacpp:requests_processing") == 0
    assert gauge(metrics, "llamacpp:requests_deferred") == 0
    assert gauge(metrics, "llamacpp:tokens_predicted_total") >= 16
    deadline = time.monotonic() + 30
    while True:
        stats: dict[str, Any] = platform.view(dep_id)["stats"] or {}
        scraped = [x for x in stats.get("replicas", []) if x["id"] == replica["id"]]
        if scraped and scraped[0]["metricsFresh"]:
            break
        assert time.monotonic() < deadline, f"the gateway never scraped llamacpp: {stats}"
        time.sleep(0.2)
    assert (scraped[0]["running"], scraped[0]["waiting"]) == (0, 0)

    # DELETE stops the process (the supervisor's wrapper and llama-server below it).
    pids = [int(record["pid"]), *descendants(int(record["pid"]))]
    assert len(pids) >= 2 and all(alive(p) for p in pids)
    r = platform.http.delete(f"/v1/deployments/{dep_id}")
    assert r.status_code == 202, r.text
    wait_gone(pids)
    v = platform.wait(dep_id, "deleted", lambda v: v["status"] == "deleted", timeout=30)
    assert v["replicas"] == []


def test_the_build_script_is_cached_and_prints_the_binary(llama_server: str) -> None:
    """A second run of the build script takes no build: it prints the cached binary."""
    from a3s_engine_llamacpp.binary import BINARY, BUILD_SCRIPT

    from a3s_core.contracts.binaries import cached_builds

    if not cached_builds(BINARY):
        pytest.skip("llama-server is on PATH, not built into the engine cache")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(["bash", str(root / BUILD_SCRIPT)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(cached_builds(BINARY)[0])
    assert shutil.which(done.stdout.strip())
    assert "Building" not in done.stderr  # nothing was compiled
