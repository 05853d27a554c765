"""From a profile and a request to a SizingPlan: GPU types, TP degree, max_model_len.

For every GPU type: the smallest TP in {1, 2, 4, 8} that passes the engine's TP rules and
whose per-GPU weights + overhead + the KV cache of one full `max_model_len` sequence fit
in `memory × gpu_memory_utilization`. Ranking (best first): fewest GPUs; then candidates
that hold the full context before ones whose max_model_len was lowered; then the least
memory left unused (smaller GPUs first).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Any

from a3s_core.errors import SizingError
from a3s_core.sizing.architecture import (
    Arch,
    Layout,
    arch_from_profile,
    fmt_int,
    layout,
    size_str,
)
from a3s_core.sizing.memory import (
    DEFAULT_BATCHED_TOKENS,
    DEFAULT_MAX_SEQS,
    GiB,
    KvCache,
    Overhead,
    kv_cache,
    overhead_per_gpu,
    sequence_tokens,
)
from a3s_core.sizing.quantization import DTYPE_BYTES, weight_bytes, weight_bytes_per_gpu
from a3s_core.sizing.served import GPUS_PER_NODE, TP_SIZES, Served
from a3s_core.types import Candidate, GpuType, Rejection

DEFAULT_UTILIZATION = 0.9  # vLLM's gpu_memory_utilization default
AUTO_MIN_MODEL_LEN = 4096  # never lower an automatic max_model_len below this (or the model's)


@dataclass
class Sizing:
    """Figures shared by every candidate."""

    served: Served
    arch: Arch
    kv: KvCache
    weight_total: int
    weight_exact: bool
    utilization: float
    native_len: int
    asked_len: int | None  # from the request or extra_args; None = automatic
    overrides: dict[str, Any]
    _per_gpu: dict[int, int] = field(default_factory=dict)
    _overhead: dict[tuple[int, int], Overhead] = field(default_factory=dict)

    @cached_property
    def layout(self) -> Layout:
        return layout(self.arch)

    @cached_property
    def computed_weight_total(self) -> int:
        return weight_bytes(self.layout, self.served.scheme).total

    def weights_per_gpu(self, tp: int) -> int:
        if tp not in self._per_gpu:
            per = weight_bytes_per_gpu(self.layout, self.served.scheme, tp,
                                       self.arch.num_kv_heads)
            computed = self.computed_weight_total
            if self.weight_exact and computed:  # scale the share onto the exact bytes
                per = int(per * self.weight_total / computed)
            self._per_gpu[tp] = per
        return self._per_gpu[tp]

    def overhead(self, tp: int, act_bytes: int) -> Overhead:
        key = (tp, act_bytes)
        if key not in self._overhead:
            self._overhead[key] = overhead_per_gpu(
                self.arch, tp, act_bytes,
                batched_tokens=self.overrides.get("max_num_batched_tokens",
                                                  DEFAULT_BATCHED_TOKENS),
                max_seqs=self.overrides.get("max_num_seqs", DEFAULT_MAX_SEQS),
                cuda_graphs=not self.overrides.get("enforce_eager", False),
            )
        return self._overhead[key]


def serving_dtype(s: Sizing, gpu: GpuType) -> tuple[str | None, str | None]:
    """(dtype on this GPU, or None with the reason it cannot run)."""
    want = s.overrides.get("dtype", "auto")
    scheme = s.served.scheme
    if want == "auto":
        if scheme.bits <= 4 and scheme.method in ("awq", "gptq"):
            want = "float16"  # the AWQ/GPTQ kernels compute in fp16
        elif s.served.profile.checkpoint_dtype in ("bfloat16", "bf16") and gpu.has_bf16:
            want = "bfloat16"
        else:
            want = "float16"
    if want in ("bfloat16", "bf16") and not gpu.has_bf16:
        return None, (f"dtype bfloat16 needs compute capability ≥ 8.0 ({gpu.name} has "
                      f"{gpu.compute_capability}); use dtype float16")
    return want, None


def weight_only_fp8(s: Sizing, gpu: GpuType) -> bool:
    """FP8 weights on a GPU without FP8 tensor cores (Ampere): served weight-only."""
    return s.served.scheme.label == "fp8" and s.served.scheme.bits == 8 and not gpu.has_fp8


def capability_reason(s: Sizing, gpu: GpuType) -> str | None:
    method = s.served.scheme.method
    need = gpu.quantization_shortfall(method)
    if need:
        what = "FP8" if s.served.scheme.label == "fp8" else (method or "").upper()
        hint = ""
        if s.served.scheme.label == "fp8":
            hint = "; serve a 16-bit or AWQ checkpoint on it instead"
        return (f"{what} needs compute capability ≥ {need[0]}.{need[1]} "
                f"({gpu.name} has {gpu.compute_capability}){hint}")
    return None


def tp_reason(s: Sizing, tp: int) -> str | None:
    """Why the engine cannot split this model `tp` ways, or None."""
    a, scheme = s.arch, s.served.scheme
    if tp > 1 and a.kind == "encoder":
        return "embedding models are served on one GPU (no tensor parallelism)"
    if a.num_attention_heads % tp:
        return f"{a.num_attention_heads} attention heads are not divisible by TP {tp}"
    if not a.mla and a.num_kv_heads % tp and tp % a.num_kv_heads:
        return f"{a.num_kv_heads} kv heads and TP {tp}: neither divides the other"
    inter = a.moe.expert_intermediate_size if a.moe else a.intermediate_size
    if inter % tp:
        return f"intermediate size {inter} is not divisible by TP {tp}"
    if scheme.scales == "group" and scheme.group_size and (inter // tp) % scheme.group_size:
        return (f"intermediate size {inter} / TP {tp} = {inter // tp} is not a multiple of the "
                f"{scheme.bits}-bit group size {scheme.group_size}")
    if scheme.block and (inter // tp) % scheme.block[1]:
        return (f"intermediate size {inter} / TP {tp} = {inter // tp} is not a multiple of the "
                f"FP8 block {scheme.block[1]}")
    return None


@dataclass
class Fit:
    candidate: Candidate
    need_per_gpu: int  # weights + overhead + one full sequence
    lowered: bool


Why = Callable[[], str]  # a reason, formatted only if it is shown


def try_fit(
    s: Sizing, gpu: GpuType, tp: int, dtype: str, length: int | None
) -> tuple[Fit | None, Why]:
    """Fit at `length` tokens (None: as long as fits, at least the automatic floor)."""
    act_bytes = DTYPE_BYTES.get(dtype, 2)
    weights = s.weights_per_gpu(tp)
    over = s.overhead(tp, act_bytes)
    usable = int(gpu.allocatable_bytes * s.utilization)
    budget = usable - weights - over.total
    per_token = s.kv.per_token_per_gpu(s.arch, tp)
    if budget <= 0:
        return None, lambda: (f"{size_str(weights)} weights + {size_str(over.total)} overhead "
                              f"per GPU exceed {size_str(usable)} usable at TP {tp}")
    # an encoder has no KV cache: its length is the model's
    fits_len = s.native_len if per_token == 0 else budget // per_token // 16 * 16
    if length is not None:
        if fits_len < sequence_tokens(length):
            return None, lambda: (f"KV budget {size_str(budget)} per GPU holds "
                                  f"{fmt_int(fits_len)} tokens < max_model_len "
                                  f"{fmt_int(length)} at TP {tp}")
        chosen, lowered = length, False
    else:
        floor = min(s.native_len, AUTO_MIN_MODEL_LEN)
        if fits_len < floor:
            return None, lambda: (f"KV budget {size_str(budget)} per GPU holds only "
                                  f"{fmt_int(fits_len)} tokens at TP {tp}")
        chosen = min(s.native_len, fits_len)
        lowered = chosen < s.native_len
    seq = sequence_tokens(chosen) * per_token
    notes = []
    if lowered:
        notes.append(f"max_model_len lowered from {fmt_int(s.native_len)} to "
                     f"{fmt_int(chosen)}: the most this KV budget holds for one sequence")
    if s.arch.mla is None and s.arch.kind == "decoder" and tp > s.arch.num_kv_heads:
        notes.append(f"TP {tp} > {s.arch.num_kv_heads} kv heads: each rank keeps a replica")
    if weight_only_fp8(s, gpu):
        notes.append(f"FP8 weight-only on {gpu.name} (compute capability "
                     f"{gpu.compute_capability}, no FP8 tensor cores): the engine keeps the "
                     "weights in FP8 and computes in 16-bit (W8A16, vLLM's FP8 Marlin "
                     "kernels): FP8's memory, not its speed")
    if dtype == "float16" and s.served.profile.checkpoint_dtype in ("bfloat16", "bf16") \
            and s.served.scheme.bits >= 16:
        notes.append(f"{gpu.name} has no bf16: the bf16 weights are served as float16")
    cand = Candidate(
        gpu=gpu.name,
        gpu_count=tp,
        tensor_parallel_size=tp,
        dtype=dtype,
        weights_per_gpu_bytes=weights,
        overhead_per_gpu_bytes=over.total,
        usable_per_gpu_bytes=usable,
        kv_budget_per_gpu_bytes=budget,
        max_model_len=chosen,
        concurrent_sequences=round(budget / seq, 2) if seq else 0.0,
        notes=notes,
    )
    return Fit(cand, weights + over.total + seq, lowered), str


def candidates_for(s: Sizing, gpu: GpuType) -> tuple[list[Fit], str | None]:
    """The candidates on one GPU type (smallest TP that fits; plus the smallest that holds
    the full context when the first had to lower it), or the reason there are none."""
    reason = capability_reason(s, gpu)
    dtype, dtype_reason = serving_dtype(s, gpu)
    if reason or dtype is None:
        return [], reason or dtype_reason
    forced = s.overrides.get("tensor_parallel_size")
    sizes = (forced,) if forced else TP_SIZES
    fits: list[Fit] = []
    reasons: list[Why] = []
    for tp in sizes:
        rule = tp_reason(s, tp)
        if rule:
            reasons.append(partial(str, rule))
            continue
        fit, why = try_fit(s, gpu, tp, dtype, s.asked_len)
        if fit is None:
            reasons.append(why)
            continue
        if not fits:
            fits.append(fit)
            if not fit.lowered:
                break
        else:
            full, _ = try_fit(s, gpu, tp, dtype, s.native_len)
            if full is not None:
                fits.append(full)
                break
    if fits:
        return fits, None
    return [], _no_fit_reason(s, gpu, dtype, reasons, forced)


def _no_fit_reason(s: Sizing, gpu: GpuType, dtype: str, reasons: list[Why],
                   forced: int | None) -> str:
    if forced:
        return f"at tensor_parallel_size {forced} (extra_args): {reasons[-1]()}"
    usable = int(gpu.allocatable_bytes * s.utilization)
    over = s.overhead(GPUS_PER_NODE, DTYPE_BYTES.get(dtype, 2)).total
    length = s.asked_len or min(s.native_len, AUTO_MIN_MODEL_LEN)
    seq = sequence_tokens(length) * s.kv.per_token_per_gpu(s.arch, GPUS_PER_NODE)
    room = usable - over
    need = s.weight_total
    gpus = -(-need // max(room - seq, 1)) if room > seq else 0
    if gpus > GPUS_PER_NODE or gpus == 0:
        nodes = -(-gpus // GPUS_PER_NODE) if gpus else 0
        more = (f"; it would take about {gpus} × {gpu.name} ({nodes} nodes) with pipeline "
                "parallelism across nodes, which the platform does not plan") if gpus else ""
        return (f"needs more than one {GPUS_PER_NODE}-GPU node: {need / GiB:,.0f} GiB of weights "
                f"vs {GPUS_PER_NODE} × {size_str(room)} usable after overhead{more}")
    return reasons[-1]() if reasons else "does not fit"


def rank(fits: list[Fit], gpus: dict[str, GpuType]) -> list[Fit]:
    def key(f: Fit) -> tuple[int, int, int]:
        c = f.candidate
        waste = c.gpu_count * (gpus[c.gpu].allocatable_bytes - f.need_per_gpu)
        return (c.gpu_count, 1 if f.lowered else 0, waste)

    return sorted(fits, key=key)


def plan_candidates(s: Sizing, catalog: list[GpuType]) -> tuple[list[Fit], list[Rejection]]:
    fits: list[Fit] = []
    rejected: list[Rejection] = []
    for gpu in catalog:
        got, reason = candidates_for(s, gpu)
        fits += got
        if reason:
            rejected.append(Rejection(gpu=gpu.name, reason=reason))
    return rank(fits, {g.name: g for g in catalog}), rejected


def largest_fitting_len(s: Sizing, catalog: list[GpuType]) -> tuple[int, str]:
    """The longest max_model_len any GPU type can hold for one sequence, and where."""
    best, where = 0, ""
    for gpu in catalog:
        dtype, _ = serving_dtype(s, gpu)
        if dtype is None or capability_reason(s, gpu):
            continue
        forced = s.overrides.get("tensor_parallel_size")
        for tp in (forced,) if forced else TP_SIZES:
            if tp_reason(s, tp):
                continue
            over = s.overhead(tp, DTYPE_BYTES.get(dtype, 2)).total
            budget = int(gpu.allocatable_bytes * s.utilization) - s.weights_per_gpu(tp) - over
            per = s.kv.per_token_per_gpu(s.arch, tp)
            if budget > 0 and per:
                tokens = min(budget // per // 16 * 16, s.native_len)
                if tokens > best:
                    best, where = tokens, f"{tp} × {gpu.name}"
    return best, where


def build_sizing(served: Served, overrides: dict[str, Any], asked_len: int | None) -> Sizing:
    p = served.profile
    arch = arch_from_profile(p)
    kv_dtype = str(overrides.get("kv_cache_dtype", "auto"))
    kv_bytes = 1 if kv_dtype.startswith("fp8") else 2
    lay = layout(arch)
    computed = weight_bytes(lay, served.scheme).total
    # The checkpoint's own byte count applies only when it is loaded as stored: as-is
    # quantized, or 16-bit weights served in their own dtype (not fp32 → 16-bit, not
    # quantized at load time).
    if p.quantization is not None:
        stored_as_served = served.scheme.label != "none"
    else:
        stored_as_served = served.scheme.bits >= 16 and \
            served.scheme.dense_bytes * 8 == _dtype_bits(p.checkpoint_dtype)
    exact = p.weight_bytes is not None and stored_as_served
    return Sizing(
        served=served,
        arch=arch,
        kv=kv_cache(arch, kv_bytes),
        weight_total=int(p.weight_bytes) if exact and p.weight_bytes else computed,
        weight_exact=exact,
        utilization=float(overrides.get("gpu_memory_utilization", DEFAULT_UTILIZATION)),
        native_len=p.context_length,
        asked_len=asked_len,
        overrides=overrides,
    )


def _dtype_bits(dtype: str) -> int:
    return DTYPE_BYTES.get(dtype.lower(), 2) * 8


def check_len(s: Sizing, model: str) -> None:
    if s.asked_len is not None and s.asked_len > s.native_len:
        raise SizingError(
            f"model {model!r}: max_model_len {fmt_int(s.asked_len)} is longer than the model's "
            f"context length {fmt_int(s.native_len)}; ask for at most {fmt_int(s.native_len)}"
        )
