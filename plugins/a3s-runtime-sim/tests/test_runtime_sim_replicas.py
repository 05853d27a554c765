"""The sim runtime with real simulator processes: lifecycle, logs, failure, adoption."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from a3s_runtime_sim import SimRuntime

from a3s_core.errors import InvalidRequest, NotFound, RuntimeUnavailable
from a3s_core.types import Placement, ReplicaObservation, ReplicaRequest

FIGURES = {"engine": "vllm", "gpu": "A100-80GB", "bandwidth_gbs": 2039, "bf16_tflops": 312,
           "tensor_parallel_size": 2, "parameters": 7.6e9, "weight_bytes": 15.2e9,
           "kv_bytes_per_token": 57344, "max_model_len": 8192, "kind": "decoder",
           "max_num_seqs": None}


def options(tmp_path: Path, **extra: Any) -> dict[str, object]:
    return {"state_dir": str(tmp_path / "sim"), "time_scale": 0.001, "jitter": 0,
            "utilization_ttl_s": 0, "stop_timeout_s": 3, **extra}


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[SimRuntime]:
    runtime = SimRuntime(options(tmp_path))
    await runtime.start()
    yield runtime
    for obs in await runtime.observe():
        await runtime.delete_replica(obs.replica_id)
    await runtime.close()


async def request(rt: SimRuntime, rid: str = "rep-1", node: str = "gpu-a100-0",
                  gpus: tuple[int, ...] = (0, 1), **sim: object) -> ReplicaRequest:
    port = await rt.reserve_port()
    assert port is not None
    engine = str(sim.pop("engine", "vllm"))
    return ReplicaRequest(
        replica_id=rid, deployment_id="dep-1", deployment_name="qwen", namespace="default",
        engine=engine, image="vllm/vllm-openai:v0.6.3",
        command=["vllm", "serve"], port=port, health_path="/health", ready_path="/health",
        placement=Placement(node=node, gpu="A100-80GB", gpu_indices=list(gpus),
                            tensor_parallel_size=len(gpus)),
        model="Qwen/Qwen2.5-7B-Instruct", served_model_name="qwen", max_model_len=8192,
        tensor_parallel_size=len(gpus), gpu="A100-80GB", sim={**FIGURES, **sim, "engine": engine},
    )


async def until(rt: SimRuntime, rid: str, state: str, timeout: float = 15) -> ReplicaObservation:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        obs = {o.replica_id: o for o in await rt.observe()}.get(rid)
        if obs is not None and obs.state == state:
            return obs
        if loop.time() > deadline:
            raise AssertionError(f"{rid} never became {state}: {obs}")
        await asyncio.sleep(0.02)


async def test_replica_lifecycle_serves_openai_and_holds_gpus(rt: SimRuntime) -> None:
    req = await request(rt)
    first = await rt.create_replica(req)
    assert first.state in ("starting", "ready") and first.url == f"http://127.0.0.1:{req.port}"
    ready = await until(rt, "rep-1", "ready")
    assert (ready.node, ready.gpu_indices, ready.deployment_id) == ("gpu-a100-0", [0, 1], "dep-1")
    c = openai.AsyncOpenAI(base_url=f"{ready.url}/v1", api_key="x", max_retries=0)
    reply = await c.chat.completions.create(
        model="qwen", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    assert reply.usage is not None and reply.usage.completion_tokens == 4
    node = next(n for n in await rt.list_nodes() if n.name == "gpu-a100-0")
    assert [g.allocated_to for g in node.gpus[:3]] == ["rep-1", "rep-1", None]
    assert node.gpus[0].memory_used_bytes and node.gpus[0].memory_used_bytes > 0
    assert node.gpus[0].utilization is not None
    lines = [line.line async for line in rt.logs("rep-1", tail=20)]
    assert any("simulating Qwen/Qwen2.5-7B-Instruct (vllm dialect" in x for x in lines)
    assert any("2× A100-80GB (TP=2)" in x for x in lines)
    # Same id again while it runs: the runtime reports it instead of starting a second one.
    again = await rt.create_replica(req)
    assert again.url == ready.url and len(await rt.observe()) == 1
    pid = rt.replicas.get("rep-1").pid  # type: ignore[union-attr]
    await rt.delete_replica("rep-1")
    assert await rt.observe() == []
    assert all(g.allocated_to is None for n in await rt.list_nodes() for g in n.gpus)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    await rt.delete_replica("rep-1")  # idempotent
    with pytest.raises(NotFound):
        async for _ in rt.logs("rep-1"):
            pass


async def test_dialect_follows_the_engine(rt: SimRuntime) -> None:
    req = await request(rt, engine="tgi")
    await rt.create_replica(req)
    ready = await until(rt, "rep-1", "ready")
    async with aiohttp.ClientSession() as s, s.get(f"{ready.url}/metrics") as r:
        text = await r.text()
    assert "tgi_queue_size" in text and "vllm:" not in text


async def test_embedding_model_without_kv_cache_serves_embeddings(rt: SimRuntime) -> None:
    # the sizing plan of an embedding model says 0 KV bytes per token: it has no KV cache
    req = await request(rt, engine="tgi", gpus=(0,), kind="encoder", kv_bytes_per_token=0,
                        parameters=3.3e8, weight_bytes=6.5e8, max_model_len=512)
    await rt.create_replica(req)
    ready = await until(rt, "rep-1", "ready")
    c = openai.AsyncOpenAI(base_url=f"{ready.url}/v1", api_key="x", max_retries=0)
    out = await c.embeddings.create(model="qwen", input=["a", "b"])
    assert len(out.data) == 2 and len(out.data[0].embedding) > 0
    with pytest.raises(openai.BadRequestError):  # and no chat: it is not a decoder
        await c.chat.completions.create(model="qwen", messages=[{"role": "user", "content": "x"}])
    await c.close()


async def test_crash_is_reported_failed_with_exit_code_and_last_lines(rt: SimRuntime) -> None:
    await rt.create_replica(await request(rt, crash_after=1))
    ready = await until(rt, "rep-1", "ready")
    async with aiohttp.ClientSession() as s:
        body = {"model": "qwen", "prompt": "hi", "max_tokens": 1}
        async with s.post(f"{ready.url}/v1/completions", json=body) as r:
            assert r.status == 200
    failed = await until(rt, "rep-1", "failed")
    assert "exited with code 1" in failed.message
    assert "simulated crash" in failed.message
    assert failed.restarts == 0  # restarting is the controller's job
    # A failed replica still holds its GPUs until the controller deletes it.
    node = next(n for n in await rt.list_nodes() if n.name == "gpu-a100-0")
    assert node.gpus[0].allocated_to == "rep-1"


async def test_slow_start_stays_starting_with_a_reason(tmp_path: Path) -> None:
    rt = SimRuntime(options(tmp_path, slow_start=30))
    await rt.start()
    try:
        await rt.create_replica(await request(rt))
        await asyncio.sleep(0.8)
        (obs,) = await rt.observe()
        assert obs.state == "starting" and "waiting for http://127.0.0.1:" in obs.message
    finally:
        await rt.delete_replica("rep-1")
        await rt.close()


async def test_follow_streams_until_the_replica_stops(rt: SimRuntime) -> None:
    await rt.create_replica(await request(rt))
    await until(rt, "rep-1", "ready")
    seen: list[str] = []

    async def follow() -> None:
        async for line in rt.logs("rep-1", tail=0, follow=True):
            seen.append(line.line)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.1)
    await rt.delete_replica("rep-1")
    await asyncio.wait_for(task, 5)
    assert any("shutting down" in x for x in seen)


async def test_adoption_after_platform_restart(tmp_path: Path) -> None:
    first = SimRuntime(options(tmp_path))
    await first.start()
    await first.create_replica(await request(first, rid="keep"))
    await first.create_replica(await request(first, rid="dies", gpus=(2,)))
    kept = await until(first, "keep", "ready")
    await until(first, "dies", "ready")
    pid_dies = first.replicas.get("dies").pid  # type: ignore[union-attr]
    await first.close()  # the platform stops; replicas keep running
    os.killpg(pid_dies, signal.SIGKILL)  # one dies while nobody watches

    second = SimRuntime(options(tmp_path))
    await second.start()
    try:
        adopted = await until(second, "keep", "ready")
        assert (adopted.url, adopted.gpu_indices, adopted.deployment_id) == (
            kept.url, [0, 1], "dep-1")
        dead = await until(second, "dies", "failed")
        assert "signal 9" in dead.message or "SIGKILL" in dead.message
        node = next(n for n in await second.list_nodes() if n.name == "gpu-a100-0")
        assert [g.allocated_to for g in node.gpus[:3]] == ["keep", "keep", "dies"]
        history = [x.line async for x in second.logs("keep", tail=50)]
        assert any("simulating" in x for x in history)
        async with aiohttp.ClientSession() as s, s.get(f"{adopted.url}/v1/models") as r:
            assert (await r.json())["data"][0]["id"] == "qwen"
        # A reserved port never collides with an adopted replica's port.
        assert await second.reserve_port() != int(str(adopted.url).rsplit(":", 1)[1])
    finally:
        await second.delete_replica("keep")
        await second.delete_replica("dies")
        await second.close()
    assert await SimRuntime(options(tmp_path)).observe() == []


async def test_refusals_name_what_is_wrong(rt: SimRuntime) -> None:
    with pytest.raises(RuntimeUnavailable, match="node 'nowhere' is not in the inventory"):
        await rt.create_replica(await request(rt, node="nowhere"))
    with pytest.raises(RuntimeUnavailable, match=r"has GPUs 0..3; placement asks for \[4\]"):
        await rt.create_replica(await request(rt, node="gpu-t4-0", gpus=(3, 4)))
    with pytest.raises(InvalidRequest, match=r"sim\.parameters") as info:
        await rt.create_replica(await request(rt, parameters=-5))
    assert info.value.field == "sim.parameters"
    assert await rt.observe() == []


async def test_simulator_argv_carries_the_figures(rt: SimRuntime) -> None:
    req = await request(rt, engine="sglang", fail_rate=0.5, max_num_seqs=8)
    node = next(n for n in await rt.list_nodes() if n.name == "gpu-a100-0")
    argv = rt.simulator_argv(req, req.port, node)
    pairs = dict(zip(argv[3::2], argv[4::2], strict=False))
    assert pairs["--dialect"] == "sglang" and pairs["--fail-rate"] == "0.5"
    assert pairs["--max-num-seqs"] == "8" and pairs["--gpu-indices"] == "0,1"
    assert pairs["--tensor-parallel-size"] == "2" and pairs["--gpu-memory-mib"] == "81920"
    assert pairs["--time-scale"] == "0.001" and pairs["--served-model-name"] == "qwen"
    assert pairs["--orphan-timeout"] == "300.0"  # an unsupervised replica ends itself
