"""The seed examples again, sized by the platform's own sizing hooks (knowledge base,
offline) instead of hand-built plans, placed by binpack on a mixed cluster."""

from __future__ import annotations

import pytest
from scheduling_testkit import mixed_cluster, node, schedulers, snapshot

from a3s_core.catalog import load_catalog
from a3s_core.errors import Unschedulable
from a3s_core.plugins import Plugins, build_plugin_manager
from a3s_core.scheduling import Scheduler, demand_for, place_or_suggest, suggest
from a3s_core.types import ModelSpec, SizingPlan

SEED = [
    ("Qwen/Qwen2.5-72B-Instruct", "none", "A100-80GB", 2),
    ("Qwen/Qwen2.5-72B-Instruct", "awq", "A100-80GB", 1),
    ("Qwen/Qwen2.5-32B-Instruct", "none", "A100-80GB", 1),
    ("Qwen/Qwen2.5-32B-Instruct", "awq", "L40S-48GB", 1),
    ("Qwen/Qwen2.5-7B-Instruct", "none", "L40S-48GB", 1),
    ("Qwen/Qwen2.5-7B-Instruct", "awq", "T4-16GB", 1),
    ("meta-llama/Llama-3.1-70B-Instruct", "none", "A100-80GB", 2),
    ("meta-llama/Llama-3.1-70B-Instruct", "awq", "A100-80GB", 1),
    ("meta-llama/Llama-3.1-8B-Instruct", "none", "L40S-48GB", 1),
    ("meta-llama/Llama-3.1-8B-Instruct", "awq", "T4-16GB", 1),
    # The seed's "8× A100-80 (FP16)" cannot hold DeepSeek-V3: its checkpoint is 671B
    # parameters in FP8 (671 GB) and 8× A100-80GB have 640 GB. The sizer offers 8× H200
    # or 8× B200; the cluster has an H200 node. (AWQ on top of FP8 is refused by sizing.)
    ("deepseek-ai/DeepSeek-V3", "none", "H200-141GB", 8),
    ("BAAI/bge-large-zh-v1.5", "none", "T4-16GB", 1),
]


@pytest.fixture(scope="module")
def sizing() -> Plugins:
    return Plugins(build_plugin_manager(load_entry_points=False))


@pytest.mark.parametrize(("model", "quant", "gpu", "count"), SEED)
def test_seed_example_sized_and_placed(
    sizing: Plugins, monkeypatch: pytest.MonkeyPatch, model: str, quant: str, gpu: str, count: int
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the knowledge base answers; never the hub
    spec = ModelSpec(name="m", model=model, quantization=quant)  # type: ignore[arg-type]
    plan = sizing.size(sizing.model_profile(model), spec, load_catalog().gpus)
    cluster = [*mixed_cluster(), node("gpu-h200-0", "H200-141GB", 8)]
    sched = Scheduler(schedulers().get("binpack")())
    p = sched.place(snapshot(cluster), demand_for(plan, "m", "team-ai"))
    assert (p.gpu, len(p.gpu_indices)) == (gpu, count), [
        (c.gpu, c.gpu_count) for c in plan.candidates
    ]
    assert p.tensor_parallel_size == count
    chosen = next(c for c in plan.candidates if c.gpu == p.gpu and c.gpu_count == count)
    assert p.max_model_len == chosen.max_model_len


def test_suggestions_with_the_real_sizer(sizing: Plugins, monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed's §3.3 case: 2× A100-80GB needed, every A100 node nearly full."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    catalog = load_catalog()

    def resize(s: ModelSpec) -> SizingPlan:
        return sizing.size(sizing.model_profile(s.model), s, catalog.gpus)

    spec = ModelSpec(name="qwen-72b", model="Qwen/Qwen2.5-72B-Instruct")
    plan = resize(spec)
    cluster = [
        node("gpu-a100-0", "A100-80GB", 8, used=range(8)),
        node("gpu-a100-1", "A100-80GB", 8, used=range(7)),
    ]
    sched = Scheduler(schedulers().get("binpack")())
    with pytest.raises(Unschedulable) as exc:
        place_or_suggest(
            sched, snapshot(cluster), demand_for(plan, "qwen-72b", "t"), spec, plan, resize
        )
    assert exc.value.message.startswith(
        # 2 × H100-80GB hold under the automatic floor of KV (4,096 tokens) at 0.9 of the
        # memory CUDA reports: a little less than an A100-80GB's
        "needs 2× A100-80GB, 1× B200, 2× H200-141GB, 4× L40S-48GB, 4× H100-80GB"
    )
    assert "gpu-a100-0 has 0 of 8 free, gpu-a100-1 has 1 of 8 free" in exc.value.message
    # FP8 (no FP8 on A100) and shorter contexts (still 2 GPUs) were tried and do not fit
    assert exc.value.suggestions == ["use AWQ quantization: fits 1× A100-80GB on gpu-a100-1 now"]


# An unquantized model that does not fit the free GPUs, whose FP8 plan does: FP8 is
# offered on Ampere (weight-only, cc 8.0 / 8.6) exactly as on Ada and Hopper (native),
# because sizing plans it there; the suggestion and the plan apply one capability rule.
FP8_CASES = [
    ("Qwen/Qwen2.5-72B-Instruct", "A100-80GB", 8),
    ("Qwen/Qwen2.5-72B-Instruct", "H100-80GB", 8),
    ("Qwen/Qwen2.5-72B-Instruct", "L40S-48GB", 4),
    ("Qwen/Qwen2.5-32B-Instruct", "A10-24GB", 4),
]


@pytest.mark.parametrize(("model", "gpu", "per_node"), FP8_CASES)
def test_fp8_suggested_where_sizing_plans_it(
    sizing: Plugins, monkeypatch: pytest.MonkeyPatch, model: str, gpu: str, per_node: int
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    catalog = load_catalog()

    def resize(s: ModelSpec) -> SizingPlan:
        if s.quantization == "awq":  # only FP8 is looked at here
            raise ValueError("no AWQ in this test")
        return sizing.size(sizing.model_profile(s.model), s, catalog.gpus)

    spec = ModelSpec(name="m", model=model, max_model_len=8192)
    plan = resize(spec)
    fp8 = resize(spec.model_copy(update={"quantization": "fp8"}))
    fp8_count = min(c.gpu_count for c in fp8.candidates if c.gpu == gpu)
    assert fp8_count == 2 < min(c.gpu_count for c in plan.candidates if c.gpu == gpu)
    if not catalog.get(gpu).has_fp8:  # type: ignore[union-attr]
        assert any("weight-only" in n for c in fp8.candidates if c.gpu == gpu for n in c.notes)
    cluster = [node("n-0", gpu, per_node, used=range(per_node - 2))]
    sched = Scheduler(schedulers().get("binpack")())
    out = suggest(spec, plan, snapshot(cluster), sched, resize, demand_for(plan, "m", "t"))
    assert f"use FP8 quantization: fits 2× {gpu} on n-0 now" in [a["message"] for a in out]


def test_one_capability_rule_for_sizing_and_suggestions(
    sizing: Plugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    """For every catalog GPU: a 7B model's FP8 plan lists it exactly when the shared rule
    (`GpuType.quantization_shortfall`) lets it run FP8, and a rejection says why."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    catalog = load_catalog()
    spec = ModelSpec(name="m", model="Qwen/Qwen2.5-7B-Instruct", quantization="fp8")
    plan = sizing.size(sizing.model_profile(spec.model), spec, catalog.gpus)
    planned = {c.gpu for c in plan.candidates}
    for g in catalog.gpus:
        assert (g.name in planned) == (g.quantization_shortfall("fp8") is None), g.name
    assert {"A100-80GB", "A10-24GB", "H100-80GB", "L40S-48GB"} <= planned
    assert "T4-16GB" not in planned
    (t4,) = [r for r in plan.rejected if r.gpu == "T4-16GB"]
    assert "compute capability ≥ 8.0" in t4.reason
