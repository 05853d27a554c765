"""The whole platform on the kubernetes runtime (fake and real API server): POST → pod →
running → DELETE → nothing left. The kubelet's part (pod becoming ready) is played by the
test (the nodes are not kwok's)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

pytest_plugins = ["a3s_k8s_fixtures"]  # the `kube` fixture

READY = {
    "phase": "Running",
    "podIP": "10.244.1.17",
    "conditions": [{"type": "Ready", "status": "True"}],
    "containerStatuses": [{
        "name": "engine", "image": "vllm", "imageID": "", "ready": True, "restartCount": 0,
        "state": {"running": {"startedAt": "2026-11-25T08:00:00Z"}},
    }],
}


def eventually(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_deployment_runs_as_a_pod_and_delete_leaves_nothing(make_app: Any, kube: Any) -> None:
    client = make_app(runtime="kubernetes", runtime_options=kube.options)
    body = {"models": [{"name": "qwen-7b", "model": "Qwen/Qwen2.5-7B-Instruct"}],
            "namespace": "team-ai"}
    r = client.post("/v1/deployments", json=body)
    assert r.status_code == 202, r.text
    dep = r.json()["deployments"][0]

    pod = eventually(lambda: next(iter(kube.objects("pods", "team-ai")), None), "a pod")
    labels = pod["metadata"]["labels"]
    assert labels["a3s.io/deployment"] == dep["id"] and labels["a3s.io/name"] == "qwen-7b"
    (c,) = pod["spec"]["containers"]
    assert c["image"].startswith("vllm/vllm-openai")
    assert "qwen-7b" in c["command"]  # served model name = the deployment name
    node = pod["metadata"]["annotations"]["a3s.io/node"]
    assert node in ("gpu-a100-0", "gpu-l40s-0")
    gpus = int(c["resources"]["limits"]["nvidia.com/gpu"])
    assert gpus >= 1
    assert kube.get("services", "team-ai", "a3s-qwen-7b") is not None

    kube.set_pod_status("team-ai", pod["metadata"]["name"], READY)

    def running() -> dict[str, Any] | None:
        d = client.get(f"/v1/deployments/{dep['id']}").json()
        return d if d["status"] == "running" else None

    d = eventually(running, "status running")
    (rep,) = d["replicas"]
    assert rep["url"] == f"http://10.244.1.17:{c['ports'][0]['containerPort']}"
    assert rep["node"] == node

    assert client.delete(f"/v1/deployments/{dep['id']}").status_code in (200, 202, 204)
    eventually(lambda: not kube.objects("pods", "team-ai"), "the pod to go")
    eventually(lambda: not kube.objects("services", "team-ai"), "the Service to go")
