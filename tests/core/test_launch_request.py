"""build_request: what the engine renders for one launch reaches the ReplicaRequest — the
probe paths it gives for this launch and the plan's concurrency (issue 14)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, ClassVar

from a3s_core.contracts import Engine, LaunchContext
from a3s_core.controller.launch import build_request
from a3s_core.store import DeploymentRow
from a3s_core.types import Candidate, Placement, SizingPlan


class TwoServers(Engine):
    """An engine whose probe path depends on the launch, as llama.cpp's does."""

    name = "two"
    health_path = "/health"
    ready_path = "/health"
    seen: ClassVar[list[LaunchContext]] = []

    def health_path_for(self, ctx: LaunchContext) -> str:
        return "/v1/models" if ctx.extra_args.get("server") == "py" else "/health"

    def ready_path_for(self, ctx: LaunchContext) -> str:
        return "/ready-py" if ctx.extra_args.get("server") == "py" else "/health"

    def command(self, ctx: LaunchContext) -> list[str]:
        self.seen.append(ctx)
        return ["serve"]


def platform(runs_images: bool) -> Any:
    async def reserve_port() -> int:
        return 4321

    runtime = type("R", (), {"runs_images": runs_images, "reserve_port": staticmethod(
        reserve_port)})()
    return SimpleNamespace(
        plugins=SimpleNamespace(engines=SimpleNamespace(get=lambda name: TwoServers)),
        settings=SimpleNamespace(engine_images={}),
        runtime=runtime,
        catalog=SimpleNamespace(get=lambda name: None),
    )


def plan(candidates: list[Candidate]) -> SizingPlan:
    return SizingPlan(
        model="m", checkpoint="m", quantization="none", parameters=1, bytes_per_parameter=2,
        weight_bytes=2, kv_bytes_per_token=1, kv_bytes_per_sequence=512, overhead_bytes=0,
        gpu_memory_utilization=0.9, max_model_len=512, max_model_len_source="model",
        candidates=candidates,
    )


def row(extra: dict[str, Any]) -> DeploymentRow:
    return DeploymentRow(id="d1", name="dep", namespace="default", model="m", engine="two",
                         spec={"extra_args": extra})


CANDIDATE = Candidate(
    gpu="A100-80GB", gpu_count=1, tensor_parallel_size=1, dtype="bfloat16",
    weights_per_gpu_bytes=1, overhead_per_gpu_bytes=1, usable_per_gpu_bytes=3,
    kv_budget_per_gpu_bytes=1, max_model_len=512, concurrent_sequences=7.6,
)


async def test_probe_paths_are_the_engines_for_this_launch() -> None:
    cpu = Placement(node="n")
    req = await build_request(platform(False), row({"server": "py"}), plan([]), cpu, "r1")
    assert (req.health_path, req.ready_path) == ("/v1/models", "/ready-py")
    req = await build_request(platform(True), row({}), plan([]), cpu, "r2")
    assert (req.health_path, req.ready_path) == ("/health", "/health")


async def test_the_plans_concurrent_sequences_reach_the_engine() -> None:
    TwoServers.seen.clear()
    gpu = Placement(node="n", gpu="A100-80GB", gpu_indices=[0])
    await build_request(platform(True), row({}), plan([CANDIDATE]), gpu, "r1")
    await build_request(platform(True), row({}), plan([CANDIDATE]), Placement(node="n"), "r2")
    assert [c.concurrent_sequences for c in TwoServers.seen] == [7, None]
