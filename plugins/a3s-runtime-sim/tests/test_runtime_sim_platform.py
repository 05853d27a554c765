"""The sim runtime under the real platform: deploy, chat through the gateway, a killed
replica replaced by the controller, a platform restart that adopts instead of duplicating."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from a3s_core.plugins import Plugins, build_plugin_manager


def wait(client: Any, dep_id: str, check: Callable[[dict[str, Any]], bool],
         timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view = client.get(f"/v1/deployments/{dep_id}").json()
        if check(view):
            return view
        if time.monotonic() > deadline:
            raise AssertionError(f"deployment never matched: {view}")
        time.sleep(0.05)


def ready_replicas(view: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in view.get("replicas", []) if r["state"] == "ready"]


@pytest.fixture
def sim_app(make_app: Callable[..., Any], tmp_path: Path) -> Callable[[], Any]:
    def start() -> Any:
        return make_app(
            plugins=Plugins(build_plugin_manager()), runtime="sim",
            runtime_options={"time_scale": 0.01, "state_dir": str(tmp_path / "sim"),
                             "stop_timeout_s": 3},
        )

    return start


def test_deploy_chat_kill_replace_restart_and_delete(
    sim_app: Callable[[], Any], tmp_path: Path
) -> None:
    client = sim_app()
    body = {"models": [{"name": "qwen", "model": "Qwen/Qwen2.5-7B-Instruct", "engine": "vllm"}]}
    created = client.post("/v1/deployments", json=body)
    assert created.status_code == 202, created.text
    dep = created.json()["deployments"][0]
    view = wait(client, dep["id"], lambda v: v["status"] == "running")
    (replica,) = ready_replicas(view)
    key = {"Authorization": f"Bearer {dep['apiKey']}"}
    chat = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    answer = client.post("/d/default/qwen/v1/chat/completions", headers=key, json=chat)
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["completion_tokens"] == 3
    with client.stream("POST", "/d/default/qwen/v1/chat/completions", headers=key,
                       json={**chat, "stream": True}) as stream:
        events = [line for line in stream.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) >= 4

    # Kill the simulator process: the controller sees `failed` and starts a replacement.
    record = json.loads((tmp_path / "sim" / f"{replica['id']}.json").read_text())
    os.killpg(record["pid"], signal.SIGKILL)
    view = wait(client, dep["id"], lambda v: any(r["id"] != replica["id"]
                                                 for r in ready_replicas(v)))
    (replacement,) = ready_replicas(view)
    replacement_pid = json.loads((tmp_path / "sim" / f"{replacement['id']}.json").read_text())

    # Restart the platform: the running replica is adopted, not duplicated.
    client.__exit__(None, None, None)
    again = sim_app()
    view = wait(again, dep["id"], lambda v: v["status"] == "running" and bool(ready_replicas(v)))
    assert [r["id"] for r in view["replicas"]] == [replacement["id"]]
    assert again.post("/d/default/qwen/v1/chat/completions", headers=key,
                      json=chat).status_code == 200

    assert again.delete(f"/v1/deployments/{dep['id']}").status_code == 202
    wait(again, dep["id"], lambda v: v["status"] == "deleted" or not v.get("replicas"))
    deadline = time.monotonic() + 10  # the replica's process is stopped and forgotten
    while list((tmp_path / "sim").glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not list((tmp_path / "sim").glob("*.json"))
    with pytest.raises(ProcessLookupError):
        os.killpg(replacement_pid["pid"], 0)

