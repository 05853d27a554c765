"""Issue 5's end-to-end story on the `sim` runtime, with the official `openai` client."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from a3s_core.plugins import Plugins


def wait(
    client: Any, dep_id: str, check: Callable[[dict[str, Any]], bool], timeout: float = 40
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        view = client.get(f"/v1/deployments/{dep_id}").json()
        if check(view):
            return view
        if time.monotonic() > deadline:
            raise AssertionError(
                f"deployment never matched: {view.get('status')} "
                f"{[r['state'] for r in view.get('replicas', [])]}"
            )
        time.sleep(0.05)


def ready(view: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in view.get("replicas", []) if r["state"] == "ready"]


@pytest.fixture
def sim(make_app: Callable[..., Any], tmp_path: Path) -> Callable[..., Any]:
    def start(**options: Any) -> Any:
        return make_app(
            plugins=Plugins(),
            runtime="sim",
            runtime_options={
                "time_scale": 0.01,
                "state_dir": str(tmp_path / "sim"),
                "stop_timeout_s": 3,
                **options,
            },
        )

    return start


def test_minimal_request_to_chat_scale_and_delete(sim: Callable[..., Any]) -> None:
    client = sim()
    seed = {"models": [{"name": "qwen-72b", "model": "Qwen/Qwen2.5-72B-Instruct"}]}
    dep = client.post("/v1/deployments", json=seed).json()["deployments"][0]
    view = wait(client, dep["id"], lambda v: v["status"] == "running")
    (replica,) = ready(view)
    assert replica["gpu"] == "A100-80GB" and len(replica["gpuIndices"]) == 2

    # The endpoint is an OpenAI base_url as it is; the client goes through the gateway.
    ai = openai.OpenAI(base_url=dep["endpoint"], api_key=dep["apiKey"], http_client=client)
    answer = ai.chat.completions.create(
        model="qwen-72b", messages=[{"role": "user", "content": "hello"}], max_tokens=5
    )
    assert answer.choices[0].message.content and answer.usage.completion_tokens == 5
    chunks = list(
        ai.chat.completions.create(
            model="qwen-72b",
            messages=[{"role": "user", "content": "hello"}],
            max_tokens=5,
            stream=True,
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    assert [m.id for m in ai.models.list()] == ["qwen-72b"]

    client.post(f"/v1/deployments/{dep['id']}/scale", json={"replicas": 3})
    view = wait(client, dep["id"], lambda v: len(ready(v)) == 3 and len(v["replicas"]) == 3)
    gpus = [(r["node"], i) for r in view["replicas"] for i in r["gpuIndices"]]
    assert len(gpus) == 6 and len(set(gpus)) == 6  # 3 × TP 2, no GPU shared
    cluster = client.get("/v1/cluster").json()
    held = {(n["name"], g["index"]) for n in cluster["nodes"] for g in n["gpus"] if g["replica"]}
    assert held == set(gpus)

    assert client.delete(f"/v1/deployments/{dep['id']}").status_code == 202
    with pytest.raises(openai.AuthenticationError):
        ai.chat.completions.create(model="qwen-72b", messages=[{"role": "user", "content": "x"}])
    wait(client, dep["id"], lambda v: v["status"] == "deleted")
    cluster = client.get("/v1/cluster").json()
    assert not [g for n in cluster["nodes"] for g in n["gpus"] if g["replica"]]


def test_restart_mid_deployment_ends_running_without_duplicates(
    sim: Callable[..., Any], tmp_path: Path
) -> None:
    client = sim(slow_start=1.5)  # the replica is still starting when the platform stops
    dep = client.post(
        "/v1/deployments",
        json={"models": [{"name": "q7", "model": "Qwen/Qwen2.5-7B-Instruct", "replicas": 2}]},
    ).json()["deployments"][0]
    wait(client, dep["id"], lambda v: len(v["replicas"]) == 2 and v["status"] == "deploying")
    client.__exit__(None, None, None)  # stop the platform; simulator processes keep running

    again = sim(slow_start=1.5)
    view = wait(again, dep["id"], lambda v: v["status"] == "running" and len(ready(v)) == 2)
    assert len(view["replicas"]) == 2
    assert len(list((tmp_path / "sim").glob("*.json"))) == 2  # no duplicate processes
    types = [e["type"] for e in view["recentEvents"]]
    assert types.count("replica.starting") == 2
    # Leave no simulator behind (they outlive a platform by design).
    again.delete(f"/v1/deployments/{dep['id']}")
    wait(again, dep["id"], lambda v: v["status"] == "deleted")
    assert not list((tmp_path / "sim").glob("*.json"))
