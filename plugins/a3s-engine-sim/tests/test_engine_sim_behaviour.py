"""The simulator's latency model, metric dialects, CLI, crash knob and its Engine plugin."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import aiohttp
import pytest
from a3s_engine_sim.config import parse_args
from a3s_engine_sim.metrics import render
from a3s_engine_sim.model import LatencyModel
from a3s_engine_sim.plugin import SimEngine, parse_load
from a3s_engine_sim.server import create_app
from a3s_engine_sim.state import EngineState, Sequence
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from a3s_core.contracts import LaunchContext
from a3s_core.plugins import build_plugin_manager

LLAMA_8B = ["--parameters", "8e9", "--weight-bytes", "16e9", "--kv-bytes-per-token", "131072",
            "--jitter", "0"]


def model_for(*args: str) -> LatencyModel:
    return LatencyModel(parse_args([*LLAMA_8B, *args]))


def test_decode_is_memory_bound_then_compute_bound() -> None:
    m = model_for("--bandwidth-gbs", "2039", "--bf16-tflops", "312", "--step-overhead-s", "0")
    one = m.decode_step_s(1, 0)
    # 16 GB of weights over 2039 GB/s × 0.8 efficiency ≈ 9.8 ms per token.
    assert one == pytest.approx(16e9 / (2039e9 * 0.8))
    assert m.decode_step_s(8, 0) == pytest.approx(one)  # small batches ride for free
    big = m.decode_step_s(400, 0)
    assert big == pytest.approx(2 * 8e9 * 400 / (312e12 * 0.5))  # compute-bound
    assert big > one
    assert m.decode_step_s(8, 100_000) > one  # KV reads grow with context
    assert m.saturation_batch() == pytest.approx(one / (2 * 8e9 / (312e12 * 0.5)))


def test_prefill_scales_with_prompt_and_tensor_parallelism() -> None:
    m1 = model_for("--step-overhead-s", "0")
    m2 = model_for("--step-overhead-s", "0", "--tensor-parallel-size", "2")
    assert m1.prefill_s(2000) > m1.prefill_s(1000) > m1.prefill_s(10)
    assert m2.prefill_s(1000) == pytest.approx(m1.prefill_s(1000) / 2)
    h100 = model_for("--step-overhead-s", "0", "--bandwidth-gbs", "3350", "--bf16-tflops", "989")
    assert h100.prefill_s(1000) < m1.prefill_s(1000)
    assert h100.decode_step_s(1, 0) < m1.decode_step_s(1, 0)


def test_time_scale_multiplies_every_delay() -> None:
    slow = model_for("--time-scale", "1")
    fast = model_for("--time-scale", "0.01")
    assert fast.wall(2.0) == pytest.approx(0.02)
    assert slow.wall(2.0) == pytest.approx(2.0)
    jittery = model_for("--jitter", "0.2")
    assert all(1.6 <= jittery.wall(2.0) <= 2.4 for _ in range(100))


def test_kv_capacity_from_gpu_memory() -> None:
    m = model_for("--gpu-memory-mib", "81920", "--gpu-memory-utilization", "0.9")
    expected = (81920 * 2**20 * 0.9 * 0.95 - 16e9) // 131072
    assert m.kv_capacity_tokens() == expected


async def test_kv_reservations_limit_admission() -> None:
    # Room for ~2 full-length sequences only: the third waits although max_num_seqs is 256.
    cfg = parse_args([*LLAMA_8B, "--gpu-memory-mib", "17300", "--max-model-len", "4096",
                      "--gpu-memory-utilization", "1"])
    state = EngineState(cfg, LatencyModel(cfg))
    seqs = [Sequence(prompt_tokens=3000, max_tokens=1000) for _ in range(3)]
    async with state.admit(seqs[0]), state.admit(seqs[1]):
        third = asyncio.create_task(_hold(state, seqs[2]))
        await asyncio.sleep(0.01)
        assert len(state.running) == 2 and len(state.waiting) == 1
    await asyncio.wait_for(third, 1)
    assert state.kv_reserved_blocks == 0 and not state.running and not state.waiting


async def _hold(state: EngineState, seq: Sequence) -> None:
    async with state.admit(seq):
        pass


@pytest.mark.parametrize(
    ("dialect", "names"),
    [
        ("vllm", {"vllm:num_requests_running", "vllm:num_requests_waiting",
                  "vllm:kv_cache_usage_perc", "vllm:time_to_first_token_seconds",
                  "vllm:e2e_request_latency_seconds", "vllm:inter_token_latency_seconds"}),
        ("vllm-v0", {"vllm:gpu_cache_usage_perc", "vllm:time_per_output_token_seconds"}),
        ("tgi", {"tgi_queue_size", "tgi_batch_current_size", "tgi_request_duration"}),
        ("sglang", {"sglang:num_running_reqs", "sglang:num_queue_reqs", "sglang:token_usage",
                    "sglang:time_to_first_token_seconds"}),
        ("llamacpp", {"llamacpp:requests_processing", "llamacpp:kv_cache_usage_ratio"}),
        ("ollama", set()),
    ],
)
def test_metric_dialects(dialect: str, names: set[str]) -> None:
    cfg = parse_args(["--dialect", dialect, "--tensor-parallel-size", "2", "--gpu-indices", "4,5"])
    state = EngineState(cfg, LatencyModel(cfg))
    state.running.add(Sequence(prompt_tokens=100, max_tokens=10))
    state.ttft.observe(0.05)
    families = {f.name: f for f in text_string_to_metric_families(render(state))}
    assert names <= set(families)
    gpus = {s.labels["gpu"] for s in families["DCGM_FI_DEV_GPU_UTIL"].samples}
    assert gpus == {"4", "5"}
    assert "a3s_sim_gpu_utilization_percent" in families
    if dialect == "vllm":
        assert "vllm:gpu_cache_usage_perc" not in families
    load = parse_load(render(state))
    if dialect != "ollama":
        assert load.running == 1 and load.waiting == 0
    if dialect not in ("ollama", "tgi"):  # TGI exports no KV-cache figure
        assert load.kv_cache_usage is not None and load.kv_cache_usage > 0
    assert load.gpu_utilization is not None


async def test_gpu_utilization_rises_under_load_and_decays() -> None:
    cfg = parse_args(["--time-scale", "0.01"])  # ~0.05 s averaging window
    state = EngineState(cfg, LatencyModel(cfg))
    assert state.gpu_utilization() == 0
    seqs = [Sequence(prompt_tokens=10, max_tokens=10) for _ in range(4)]
    for s in seqs:
        state._start(s)
    await asyncio.sleep(0.2)
    busy = state.gpu_utilization()
    assert busy > 30
    for s in seqs:
        state._release(s)
    await asyncio.sleep(0.3)
    assert state.gpu_utilization() < busy / 10


def test_cli_rejects_bad_values_naming_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    for args, flag in ((["--fail-rate", "1.5"], "--fail-rate"), (["--time-scale", "0"],
                       "--time-scale"), (["--dialect", "foo"], "--dialect")):
        with pytest.raises(SystemExit):
            parse_args(args)
        assert flag in capsys.readouterr().err
    cfg = parse_args(["--parameters", "1e9", "--tp", "4"])
    assert cfg.weight_bytes == 2e9 and cfg.gpu_indices == [0, 1, 2, 3]
    assert cfg.served_model_names == ["sim"]


def test_crash_after_exits_the_process() -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "a3s_engine_sim", "--port", str(port), "--crash-after", "2",
         "--crash-exit-code", "3", "--time-scale", "0.001", "--served-model-name", "m"],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        statuses = asyncio.run(_post_until_crash(port))
        assert statuses[:2] == [200, 200]
        assert proc.wait(timeout=10) == 3
        assert "simulated crash" in (proc.stderr.read() if proc.stderr else "")
    finally:
        proc.kill()
        proc.wait()


async def _post_until_crash(port: int) -> list[int]:
    url = f"http://127.0.0.1:{port}"
    out: list[int] = []
    async with aiohttp.ClientSession() as s:
        for _ in range(200):  # wait for the server
            try:
                async with s.get(url + "/health") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                await asyncio.sleep(0.02)
        body = {"model": "m", "prompt": "hi", "max_tokens": 2}
        for _ in range(3):
            try:
                async with s.post(url + "/v1/completions", json=body) as r:
                    out.append(r.status)
            except aiohttp.ClientError:
                out.append(0)
            time.sleep(0.2)
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_sim_engine_is_registered_and_renders_its_command() -> None:
    plugins = build_plugin_manager()
    from a3s_core.plugins import Plugins  # the typed facade over the plugin manager

    engines = Plugins(plugins).engines
    assert engines.get("sim") is SimEngine
    ctx = LaunchContext(served_model_name="chat", model="Qwen/Qwen2.5-7B-Instruct",
                        max_model_len=8192, port=9001, tensor_parallel_size=2,
                        gpu_indices=[2, 3], extra_args={"max_num_seqs": 8, "port": 1})
    argv = SimEngine().command(ctx)
    assert argv[0] == "a3s-engine-sim"
    cfg = parse_args(argv[1:])  # the simulator accepts exactly what the engine renders
    assert (cfg.port, cfg.served_name, cfg.tensor_parallel_size) == (9001, "chat", 2)
    assert cfg.gpu_indices == [2, 3] and cfg.max_num_seqs == 8 and cfg.max_model_len == 8192


async def test_app_serves_health_and_metrics_in_process() -> None:
    cfg = parse_args(["--port", "0"])
    runner = web.AppRunner(create_app(cfg))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        async with aiohttp.ClientSession() as s:
            for path in ("/health", "/health_generate", "/ping", "/version"):
                async with s.get(f"http://{host}:{port}{path}") as r:
                    assert r.status == 200, path
            async with s.get(f"http://{host}:{port}/metrics") as r:
                assert "vllm:num_requests_running" in await r.text()
    finally:
        await runner.cleanup()


def test_orphan_timeout_ends_an_unsupervised_replica() -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "a3s_engine_sim", "--port", str(port), "--orphan-timeout", "0.6"],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        asyncio.run(_probe_for(port, 1.2))  # probes keep it alive past its timeout
        assert proc.poll() is None
        assert proc.wait(timeout=10) == 0  # then nobody asks: it exits cleanly
        assert "nobody supervises this replica" in (proc.stderr.read() if proc.stderr else "")
    finally:
        proc.kill()
        proc.wait()


async def _probe_for(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            try:
                async with s.get(f"http://127.0.0.1:{port}/health") as r:
                    await r.read()
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
