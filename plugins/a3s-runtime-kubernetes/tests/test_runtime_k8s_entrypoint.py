"""An engine whose image's ENTRYPOINT must run (TEI's picks the router binary for the GPU)
gets its arguments as the container's `args`; the image's entrypoint is not replaced."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from a3s_k8s_test_helpers import A100, make_request, validate
from a3s_runtime_kubernetes.options import parse_options
from a3s_runtime_kubernetes.render import render_pod
from a3s_runtime_kubernetes.testing import FakeKubeApi


def test_arguments_for_the_entrypoint_become_args_and_no_command() -> None:
    args = ["--model-id", "BAAI/bge-large-zh-v1.5", "--port", "8080"]
    req = make_request(
        engine="tgi", image="ghcr.io/huggingface/text-embeddings-inference:cuda-1.9.3",
        command=args, keep_entrypoint=True, port=8080,
    )
    pod = validate(render_pod(req, "team-ai", parse_options({})))
    (c,) = pod["spec"]["containers"]
    assert c["args"] == args and "command" not in c


def test_tei_deployment_on_kubernetes_keeps_the_image_entrypoint(make_app: Any) -> None:
    with FakeKubeApi() as kube:
        kube.add_node("gpu-a100-0", A100, gpus=8)
        client = make_app(runtime="kubernetes", runtime_options={"host": kube.url})
        body = {"models": [{"name": "embedding", "model": "BAAI/bge-large-zh-v1.5",
                            "engine": "tgi"}], "namespace": "team-ai"}
        r = client.post("/v1/deployments", json=body)
        assert r.status_code == 202, r.text
        pod = _eventually(lambda: next(iter(kube.objects("pods", "team-ai")), None))
        (c,) = pod["spec"]["containers"]
        assert c["image"].startswith("ghcr.io/huggingface/text-embeddings-inference:cuda-")
        assert "command" not in c  # the cuda- image has no plain text-embeddings-router
        assert c["args"][:2] == ["--model-id", "BAAI/bge-large-zh-v1.5"]
        assert c["args"][c["args"].index("--served-model-name") + 1] == "embedding"


def _eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the pod")
