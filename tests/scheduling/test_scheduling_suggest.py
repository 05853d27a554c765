"""Suggestions are re-sized and re-placed; only what fits now is offered."""

from __future__ import annotations

import pytest
from a3s_scheduler_standard import BinPack
from scheduling_testkit import demand, hand_plan, node, snapshot, spec

from a3s_core.errors import SizingError, Unschedulable
from a3s_core.scheduling import Scheduler, place_or_suggest, suggest
from a3s_core.types import ModelSpec, SizingPlan

WEIGHTS_GB = {"none": 145.4, "awq": 41.0, "fp8": 72.7}  # a 72B model
KV_GB_PER_8K = 2.7


class Sizer:
    """A stand-in for profile + size: weights by quantization, KV by context length."""

    def __init__(self, fail: set[str] | None = None, fp8_everywhere: bool = False) -> None:
        self.fail = fail or set()
        self.fp8_everywhere = fp8_everywhere
        self.calls: list[tuple[str, int | None]] = []

    def __call__(self, s: ModelSpec) -> SizingPlan:
        self.calls.append((s.quantization, s.max_model_len))
        if s.quantization in self.fail:
            raise SizingError(f"no {s.quantization} checkpoint of {s.model}")
        length = s.max_model_len or 32768
        kv = KV_GB_PER_8K * length / 8192
        if s.quantization == "fp8" and self.fp8_everywhere:  # a sizer that forgot cc ≥ 8.9
            plan = hand_plan(s.model, WEIGHTS_GB["fp8"], kv_gb=kv, max_model_len=length)
            return plan.model_copy(update={"quantization": "fp8"})
        return hand_plan(
            s.model, WEIGHTS_GB[s.quantization], kv_gb=kv, quantization=s.quantization,
            max_model_len=length,
        )


def _messages(alts: list[dict]) -> list[str]:  # type: ignore[type-arg]
    return [a["message"] for a in alts]


def test_awq_offered_when_it_fits_and_nothing_that_does_not() -> None:
    snap = snapshot([
        node("gpu-a100-0", "A100-80GB", 8, used=range(8)),
        node("gpu-a100-1", "A100-80GB", 8, used=range(7)),
        node("gpu-l40s-0", "L40S-48GB", 4, used=range(3)),
    ])
    s = spec("qwen-72b", "Qwen/Qwen2.5-72B-Instruct", max_model_len=8192)
    sizer = Sizer()
    plan = sizer(s)
    sched = Scheduler(BinPack())
    with pytest.raises(Unschedulable) as exc:
        place_or_suggest(sched, snap, demand(plan), s, plan, sizer)
    assert exc.value.message.startswith(
        "needs 2× A100-80GB, 4× L40S-48GB, 1× B200, 2× H100-80GB, "
    )
    assert "; A100-80GB nodes: gpu-a100-0 has 0 of 8 free, gpu-a100-1 has 1 of 8 free; " in (
        exc.value.message
    )
    # FP8 (72.7 GB) fits one A100-80GB here too, served weight-only (cc 8.0), as sizing
    # plans it; on L40S it would need 2 and one is free
    assert exc.value.suggestions == [
        "use AWQ quantization: fits 1× A100-80GB on gpu-a100-1 now",
        "use FP8 quantization: fits 1× A100-80GB on gpu-a100-1 now",
    ]
    alt, fp8 = exc.value.detail["alternatives"]
    assert alt["patch"] == {"quantization": "awq"} and fp8["patch"] == {"quantization": "fp8"}
    assert alt["placement"]["node"] == "gpu-a100-1" and alt["placement"]["gpu_indices"] == [7]
    # shorter contexts were tried and do not fit now
    assert ("fp8", 8192) in sizer.calls and ("none", 4096) in sizer.calls
    assert ("none", 1024) not in sizer.calls  # never below the floor


def test_shorter_context_offered_at_the_longest_length_that_fits() -> None:
    snap = snapshot([
        node("gpu-a100-0", "A100-80GB", 8, used=range(6)),
        node("gpu-a100-1", "A100-80GB", 8, used=range(6)),
    ])
    s = spec("qwen-72b", "Qwen/Qwen2.5-72B-Instruct", max_model_len=32768)
    # no AWQ checkpoint, no FP8 (would fit 2× A100 weight-only): not offered, not an error
    sizer = Sizer(fail={"awq", "fp8"})
    plan = sizer(s)
    assert plan.candidate_for("A100-80GB").gpu_count == 4  # type: ignore[union-attr]
    out = suggest(s, plan, snap, Scheduler(BinPack()), sizer, demand(plan))
    assert _messages(out) == ["lower max_model_len to 16384: fits 2× A100-80GB on gpu-a100-0 now"]
    assert out[0]["patch"] == {"max_model_len": 16384}


def test_fp8_only_on_gpus_that_support_it() -> None:
    """A sizer that offers FP8 on every GPU is held to sizing's capability rule: not on a
    T4 (cc 7.5, no FP8 kernel); on Ampere (weight-only) and Ada/Hopper (native) it is."""
    s = spec("qwen-72b", "Qwen/Qwen2.5-72B-Instruct", max_model_len=8192)
    sizer = Sizer(fail={"awq"}, fp8_everywhere=True)
    plan = sizer(s)
    t4 = snapshot([node("gpu-t4-0", "T4-16GB", 8)])
    assert any(c.gpu == "T4-16GB" for c in sizer(s.model_copy(update={"quantization": "fp8"}))
               .candidates)  # the careless sizer offers it…
    assert suggest(s, plan, t4, Scheduler(BinPack()), sizer, demand(plan)) == []  # …not here

    snap = snapshot([node("gpu-a100-0", "A100-80GB", 8, used=range(7))])
    out = suggest(s, plan, snap, Scheduler(BinPack()), sizer, demand(plan))
    assert _messages(out) == ["use FP8 quantization: fits 1× A100-80GB on gpu-a100-0 now"]

    snap = snapshot([node("gpu-l40s-0", "L40S-48GB", 4, used=range(2))])
    out = suggest(s, plan, snap, Scheduler(BinPack()), sizer, demand(plan))
    assert _messages(out) == ["use FP8 quantization: fits 2× L40S-48GB on gpu-l40s-0 now"]


def test_other_gpu_type_offered_when_the_demand_was_narrowed() -> None:
    snap = snapshot([
        node("gpu-a100-0", "A100-80GB", 8, used=range(8)),
        node("gpu-l40s-0", "L40S-48GB", 4),
    ])
    s = spec("qwen-72b", "Qwen/Qwen2.5-72B-Instruct", quantization="awq", max_model_len=8192)
    sizer = Sizer()
    plan = sizer(s)
    narrowed = demand(plan.model_copy(update={"candidates": [plan.candidate_for("A100-80GB")]}))
    out = suggest(s, plan, snap, Scheduler(BinPack()), sizer, narrowed)
    assert _messages(out) == ["use L40S-48GB instead: fits 2× L40S-48GB on gpu-l40s-0 now"]
    assert out[0]["patch"] == {"gpu": "L40S-48GB"}
