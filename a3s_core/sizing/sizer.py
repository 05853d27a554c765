"""`size(profile, spec, catalog)`: the built-in sizing, with its arithmetic spelled out."""

from __future__ import annotations

from typing import Any

from a3s_core.errors import InvalidRequest, SizingError
from a3s_core.sizing.architecture import fmt_int, layout, size_str
from a3s_core.sizing.knowledge import KnowledgeBase
from a3s_core.sizing.memory import GiB, llama_cpp_memory, sequence_tokens
from a3s_core.sizing.planner import (
    AUTO_MIN_MODEL_LEN,
    Sizing,
    build_sizing,
    check_len,
    largest_fitting_len,
    plan_candidates,
)
from a3s_core.sizing.profiles import describe_arch
from a3s_core.sizing.quantization import weight_bytes
from a3s_core.sizing.served import GPUS_PER_NODE, parse_overrides, resolve, sizing_key
from a3s_core.types import GpuType, ModelProfile, ModelSpec, Rejection, SizingPlan


def size(profile: ModelProfile, spec: ModelSpec, catalog: list[GpuType],
         kb: KnowledgeBase | None = None) -> SizingPlan:
    overrides = parse_overrides(spec.extra_args)
    served = resolve(profile, _with_quantization_override(spec, overrides), overrides, kb)
    if "max_model_len" in overrides:
        asked, source = overrides["max_model_len"], "extra_args"
    elif spec.max_model_len is not None:
        asked, source = spec.max_model_len, "request"
    else:
        asked, source = None, "model"
    s = build_sizing(served, overrides, asked)
    check_len(s, spec.model)
    fits, rejected = plan_candidates(s, catalog)
    candidates = [f.candidate for f in fits]
    is_gguf = served.scheme.method == "gguf"
    if not candidates and not is_gguf:
        raise _no_candidate_error(s, spec, catalog, rejected)

    top = candidates[0] if candidates else None
    max_len = top.max_model_len if top else (asked or s.native_len)
    if top and asked is None and top.max_model_len < s.native_len:
        source = "lowered"
    tp = top.tensor_parallel_size if top else 1
    per_token = s.kv.per_token
    cpu_line = None
    if is_gguf:  # GGUF is served by llama.cpp-style engines, on CPU or with GPU offload
        memory, cpu_line = llama_cpp_memory(s.arch, s.weight_total, per_token, max_len)
        overhead = memory - s.weight_total - per_token * max_len
    elif top:
        seq_gpu = sequence_tokens(max_len) * s.kv.per_token_per_gpu(s.arch, tp)
        memory = tp * (top.weights_per_gpu_bytes + top.overhead_per_gpu_bytes + seq_gpu)
        overhead = tp * top.overhead_per_gpu_bytes
    recorded = {k: v for k, v in spec.extra_args.items() if sizing_key(k) in overrides}
    plan = SizingPlan(
        model=spec.model,
        checkpoint=served.checkpoint,
        kind=s.arch.kind,
        quantization=served.scheme.label,
        engine_quantization=overrides.get("quantization", served.engine_quantization),
        parameters=served.profile.parameters,
        bytes_per_parameter=round(s.weight_total / max(served.profile.parameters, 1), 4),
        weight_bytes=s.weight_total,
        kv_bytes_per_token=per_token,
        kv_bytes_per_sequence=per_token * max_len,
        overhead_bytes=overhead,
        gpu_memory_utilization=s.utilization,
        max_model_len=max_len,
        max_model_len_source=source,
        candidates=candidates,
        rejected=rejected,
        overrides=recorded,
        memory_bytes=memory,
    )
    plan.explanation = explain(s, plan, profile)
    if cpu_line:
        plan.explanation.insert(-1, cpu_line)
    return plan


ENGINE_METHODS = {"awq": "awq", "awq_marlin": "awq", "gptq": "gptq", "gptq_marlin": "gptq",
                  "marlin": "gptq", "fp8": "fp8"}


def _with_quantization_override(spec: ModelSpec, overrides: dict[str, Any]) -> ModelSpec:
    """`extra_args.quantization` names the engine's method (maybe a kernel variant such as
    awq_marlin). It must agree with the request's `quantization`; given alone, it is what
    gets sized."""
    method = overrides.get("quantization")
    family = ENGINE_METHODS.get(str(method).lower()) if method else None
    if family is None or family == spec.quantization:
        return spec
    if spec.quantization == "none":
        return spec.model_copy(update={"quantization": family})
    raise InvalidRequest(
        f"extra_args.quantization {method!r} contradicts quantization {spec.quantization!r} "
        f"for model {spec.model!r}; drop one or make them agree",
        "extra_args.quantization", method,
    )


def _no_candidate_error(s: Sizing, spec: ModelSpec, catalog: list[GpuType],
                        rejected: list[Rejection]) -> SizingError:
    if s.asked_len is not None:
        best, where = largest_fitting_len(s, catalog)
        if best:
            return SizingError(
                f"model {spec.model!r}: max_model_len {fmt_int(s.asked_len)} does not fit on any "
                f"GPU type in the catalog; the largest that fits is {fmt_int(best)} tokens "
                f"(on {where}), so ask for at most that or use a quantized checkpoint",
                rejected=[r.model_dump() for r in rejected],
            )
    # name the largest GPU type's reason: if it cannot, none can for the same reason
    by_memory = {g.name: g.memory_mib for g in catalog}
    biggest = max(rejected, key=lambda r: by_memory.get(r.gpu, 0), default=None)
    reasons = f"on {biggest.gpu} it {biggest.reason}" if biggest else "the catalog is empty"
    hint = "ask for quantization 'awq' or 'fp8'" if spec.quantization == "none" else \
        "use a smaller model or a larger GPU type"
    return SizingError(
        f"model {spec.model!r} ({s.weight_total / GiB:,.1f} GiB of weights) fits on no GPU type "
        f"in the catalog within one {GPUS_PER_NODE}-GPU node ({reasons}); {hint}",
        rejected=[r.model_dump() for r in rejected],
    )


def explain(s: Sizing, plan: SizingPlan, asked: ModelProfile) -> list[str]:
    p, scheme = s.served.profile, s.served.scheme
    lines = [
        f"model {plan.model}: {p.architecture}, {describe_arch(s.arch)}; "
        f"profile from {asked.source}",
    ]
    lines += s.served.notes
    lines.append(f"parameters: {fmt_int(p.parameters)} ({_count_source(p)})")
    lay = layout(s.arch)
    wb = weight_bytes(lay, scheme)
    if scheme.method == "gguf":
        lines.append(
            f"weights ({scheme.label}): {fmt_int(s.weight_total)} B as stored in the GGUF file "
            f"= {size_str(s.weight_total)} ("
            + ", ".join(f"{k} {fmt_int(v)} params" for k, v in
                        sorted(p.parameters_by_dtype.items())) + ")"
        )
    elif scheme.bits >= 16:
        lines.append(
            f"weights: {fmt_int(p.parameters)} params × {scheme.dense_bytes} B "
            f"= {size_str(s.weight_total)} ({s.weight_total / 1e9:,.1f} GB)"
        )
    else:
        lines.append(
            f"weights ({scheme.label}): {fmt_int(wb.linear_params)} linear params × "
            f"{wb.linear_bytes / max(wb.linear_params, 1):.4f} B ({scheme.describe()}) + "
            f"{fmt_int(wb.dense_params)} embedding/head/norm params × 2 B (kept 16-bit) = "
            f"{size_str(wb.total)}"
            + (f"; checkpoint tensors: {size_str(s.weight_total)} (exact)"
               if s.weight_exact else "")
        )
    lines.append(f"bytes per parameter: {plan.bytes_per_parameter}")
    lines.append(f"KV cache per token: {s.kv.formula}")
    if plan.kind == "decoder":
        lines.append(
            f"KV for one {fmt_int(plan.max_model_len)}-token sequence: "
            f"{size_str(plan.kv_bytes_per_sequence)} "
            f"(max_model_len from {plan.max_model_len_source}"
            + (f"; automatic lengths are never lowered below {AUTO_MIN_MODEL_LEN}" if
               plan.max_model_len_source == "lowered" else "") + ")"
        )
    if plan.candidates:
        top = plan.candidates[0]
        over = s.overhead(top.tensor_parallel_size, 2)
        lines.append(f"overhead per GPU at TP {top.tensor_parallel_size}: {over.describe()}")
        lines.append(f"usable per GPU: the memory the CUDA runtime reports (nvidia-smi's "
                     f"figure less the driver's reserve) × gpu_memory_utilization "
                     f"{s.utilization}")
    for c in plan.candidates:
        per_gpu_token = s.kv.per_token_per_gpu(s.arch, c.tensor_parallel_size)
        kv = (f" ÷ {fmt_int(per_gpu_token)} B per token per GPU = {c.concurrent_sequences} "
              f"sequences of {fmt_int(c.max_model_len)} tokens" if per_gpu_token else "")
        lowered = " (max_model_len lowered)" if c.max_model_len < s.native_len \
            and plan.max_model_len_source in ("model", "lowered") else ""
        lines.append(
            f"{c.gpu_count} × {c.gpu} (TP {c.tensor_parallel_size}, {c.dtype}): "
            f"{size_str(c.weights_per_gpu_bytes)} weights + "
            f"{size_str(c.overhead_per_gpu_bytes)} overhead of "
            f"{size_str(c.usable_per_gpu_bytes)} usable → KV budget "
            f"{size_str(c.kv_budget_per_gpu_bytes)} per GPU{kv}{lowered}"
        )
    for r in plan.rejected:
        lines.append(f"not {r.gpu}: {r.reason}")
    if plan.overrides:
        lines.append("overridden by extra_args: " + ", ".join(
            f"{k}={v}" for k, v in plan.overrides.items()))
    lines.append(f"one replica needs {size_str(plan.memory_bytes)} in total")
    return lines


def _count_source(p: ModelProfile) -> str:
    if any(n.startswith("parameters ") for n in p.notes):
        return "computed from config.json: the checkpoint's tensors were not read"
    return {
        "knowledge-base": "exact, recorded in the knowledge base from the checkpoint",
        "local": "exact, from the safetensors headers",
        "hub": "exact, from the safetensors headers on the Hub",
        "gguf": "exact, from the GGUF header",
    }.get(p.source, "computed from config.json")
