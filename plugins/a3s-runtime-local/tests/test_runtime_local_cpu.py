"""The local runtime with a tiny Python HTTP server as the "engine": CPU placements, GPU
pinning through a fake NVML, refusals, failure reporting and adoption."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import socket
import sys
import types
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from a3s_runtime_local import LocalRuntime

from a3s_core.errors import InvalidRequest, RuntimeUnavailable
from a3s_core.types import Placement, ReplicaObservation, ReplicaRequest

ENGINE = """\
import http.server, os, sys
port = int(sys.argv[1])
print("engine starting CUDA_VISIBLE_DEVICES=%r TOKEN=%s" % (
    os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ.get("ENGINE_TOKEN")), flush=True)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


@pytest.fixture
def engine_script(tmp_path: Path) -> Path:
    path = tmp_path / "engine.py"
    path.write_text(ENGINE)
    return path


def options(tmp_path: Path, **extra: Any) -> dict[str, object]:
    return {"state_dir": str(tmp_path / "local"), "node_name": "box", "stop_timeout_s": 3,
            **extra}


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[LocalRuntime]:
    runtime = LocalRuntime(options(tmp_path))
    await runtime.start()
    yield runtime
    for obs in await runtime.observe():
        await runtime.delete_replica(obs.replica_id)
    await runtime.close()


async def request(rt: LocalRuntime, script: Path | None, rid: str = "r1",
                  gpus: tuple[int, ...] = (), gpu: str | None = None,
                  command: list[str] | None = None, node: str = "box") -> ReplicaRequest:
    port = await rt.reserve_port()
    assert port is not None
    argv = command or [sys.executable, str(script), str(port)]
    return ReplicaRequest(
        replica_id=rid, deployment_id="d1", deployment_name="tiny", namespace="default",
        engine="llamacpp", image="", command=argv, env={"ENGINE_TOKEN": "t0k"}, port=port,
        health_path="/health", ready_path="/health",
        placement=Placement(node=node, gpu=gpu, gpu_indices=list(gpus),
                            tensor_parallel_size=max(1, len(gpus))),
        model="/models/tiny.gguf", served_model_name="tiny", max_model_len=512,
        tensor_parallel_size=max(1, len(gpus)),
    )


async def until(rt: LocalRuntime, rid: str, state: str, timeout: float = 15) -> ReplicaObservation:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        obs = {o.replica_id: o for o in await rt.observe()}.get(rid)
        if obs is not None and obs.state == state:
            return obs
        if loop.time() > deadline:
            raise AssertionError(f"{rid} never became {state}: {obs}")
        await asyncio.sleep(0.02)


async def test_without_gpus_the_node_is_the_cpu(rt: LocalRuntime) -> None:
    (node,) = await rt.list_nodes()
    assert node.name == "box" and node.gpu_count == 0 and node.gpus == []
    assert node.cpu_cores == os.cpu_count()
    assert node.memory_bytes is not None and node.memory_bytes > 64 * 1024 * 1024
    assert node.labels["a3s.io/device"] == "cpu"


async def test_cpu_replica_runs_the_real_command(rt: LocalRuntime, engine_script: Path) -> None:
    req = await request(rt, engine_script)
    await rt.create_replica(req)
    ready = await until(rt, "r1", "ready")
    assert ready.url == f"http://127.0.0.1:{req.port}" and ready.node == "box"
    lines = [x.line async for x in rt.logs("r1")]
    # CPU placement hides every GPU; the engine's own env is passed through.
    assert "engine starting CUDA_VISIBLE_DEVICES='' TOKEN=t0k" in lines
    pid = rt.replicas.get("r1").pid  # type: ignore[union-attr]
    os.killpg(pid, signal.SIGKILL)
    failed = await until(rt, "r1", "failed")
    assert "llamacpp process" in failed.message and "signal 9" in failed.message
    assert "engine starting" in failed.message  # the last log lines travel with the failure
    await rt.delete_replica("r1")
    assert await rt.observe() == []


async def test_gpu_engine_is_refused_without_a_gpu(rt: LocalRuntime, engine_script: Path) -> None:
    req = await request(rt, engine_script, gpus=(0, 1), gpu="A100-80GB")
    with pytest.raises(RuntimeUnavailable) as info:
        await rt.create_replica(req)
    msg = info.value.message
    assert "needs 2 GPU(s) (A100-80GB)" in msg and "this machine has none" in msg
    assert "NVML" in msg or "nvidia-ml-py" in msg
    assert await rt.observe() == []


async def test_missing_engine_binary_and_module_are_refused(rt: LocalRuntime) -> None:
    with pytest.raises(RuntimeUnavailable, match="install it with: pip install vllm"):
        await rt.create_replica(await request(rt, None, command=["vllm", "serve", "x"]))
    with pytest.raises(RuntimeUnavailable, match=r"cannot import 'a3s_no_such_engine'"):
        await rt.create_replica(await request(
            rt, None, command=[sys.executable, "-m", "a3s_no_such_engine.serve"]))
    if importlib.util.find_spec("sglang") is not None:
        return  # the hint for a known engine needs that engine absent
    with pytest.raises(RuntimeUnavailable, match=r"cannot import 'sglang'.*sglang\[all\]"):
        await rt.create_replica(await request(
            rt, None, command=[sys.executable, "-m", "sglang.launch_server", "--port", "1"]))
    with pytest.raises(RuntimeUnavailable, match="this machine is 'box'"):
        await rt.create_replica(await request(rt, None, command=["true"], node="elsewhere"))


async def test_port_in_use_is_refused(rt: LocalRuntime, engine_script: Path) -> None:
    req = await request(rt, engine_script)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", req.port))
        busy.listen()
        with pytest.raises(RuntimeUnavailable, match=f"port {req.port} is already in use"):
            await rt.create_replica(req)


class FakeNvml(types.ModuleType):
    """Two A100s, as nvidia-ml-py would report them."""

    class NVMLError(Exception):
        pass

    def __init__(self) -> None:
        super().__init__("pynvml")
        self.shutdown = False

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None:
        self.shutdown = True

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetName(self, handle: int) -> str:
        return "NVIDIA A100-SXM4-80GB"

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return types.SimpleNamespace(total=81920 * 1024 * 1024, used=(handle + 1) * 2**30)

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return types.SimpleNamespace(gpu=10 * (handle + 1))


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNvml]:
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    yield fake


async def test_gpus_from_nvml_and_pinning(
    fake_nvml: FakeNvml, tmp_path: Path, engine_script: Path
) -> None:
    rt = LocalRuntime(options(tmp_path))
    await rt.start()
    try:
        (node,) = await rt.list_nodes()
        assert (node.gpu_product, node.gpu_count, node.gpu_memory_mib) == ("A100-80GB", 2, 81920)
        assert node.gpu_product_label == "NVIDIA-A100-SXM4-80GB"
        assert [g.utilization for g in node.gpus] == [10.0, 20.0]
        assert node.gpus[1].memory_used_bytes == 2 * 2**30
        await rt.create_replica(await request(rt, engine_script, gpus=(1,), gpu="A100-80GB"))
        await until(rt, "r1", "ready")
        lines = [x.line async for x in rt.logs("r1")]
        assert "engine starting CUDA_VISIBLE_DEVICES='1' TOKEN=t0k" in lines
        (node,) = await rt.list_nodes()
        assert [g.allocated_to for g in node.gpus] == [None, "r1"]
        with pytest.raises(RuntimeUnavailable, match=r"asks for GPU\(s\) \[5\]"):
            await rt.create_replica(await request(rt, engine_script, rid="r2", gpus=(5,),
                                                  gpu="A100-80GB"))
        await rt.delete_replica("r1")
    finally:
        await rt.close()
    assert fake_nvml.shutdown


async def test_adoption_after_restart(tmp_path: Path, engine_script: Path) -> None:
    first = LocalRuntime(options(tmp_path))
    await first.start()
    await first.create_replica(await request(first, engine_script))
    before = await until(first, "r1", "ready")
    await first.close()
    second = LocalRuntime(options(tmp_path))
    await second.start()
    try:
        after = await until(second, "r1", "ready")
        assert after.url == before.url and after.deployment_id == "d1"
        lines = [x.line async for x in second.logs("r1")]
        assert any("engine starting" in line for line in lines)
    finally:
        await second.delete_replica("r1")
        await second.close()


def test_unknown_options_are_refused() -> None:
    with pytest.raises(InvalidRequest, match=r"runtime_options\.gpus"):
        LocalRuntime({"gpus": "all"})
