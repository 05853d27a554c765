"""What will actually be loaded: the checkpoint (maybe a quantized twin), its weight
scheme, and the `extra_args` values that override computed ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from a3s_core.errors import InvalidRequest, SizingError
from a3s_core.sizing.knowledge import KnowledgeBase, knowledge_base
from a3s_core.sizing.quantization import (
    DTYPE_BYTES,
    FP32,
    ONLINE_FP8,
    SIXTEEN_BIT,
    Scheme,
    scheme_for,
    served_label,
)
from a3s_core.types import ModelProfile, ModelSpec

TP_SIZES = (1, 2, 4, 8)
GPUS_PER_NODE = 8
# extra_args keys that change sizing; everything else is passed to the engine untouched.
SIZING_KEYS = {
    "tensor_parallel_size": int, "max_model_len": int, "gpu_memory_utilization": float,
    "dtype": str, "kv_cache_dtype": str, "quantization": str, "max_num_batched_tokens": int,
    "max_num_seqs": int, "enforce_eager": bool,
}
ALIASES = {"tp": "tensor_parallel_size", "tp_size": "tensor_parallel_size",
           "max_model_length": "max_model_len", "context_length": "max_model_len"}
# Compute-capability floors per quantization method: a3s_core.types.plan.QUANTIZATION_MIN_CC
# (one rule for sizing and scheduling alike).


def sizing_key(raw_key: str) -> str:
    """`--tensor-parallel-size`, `tensor_parallel_size` and `tp` are one override."""
    key = raw_key.lstrip("-").replace("-", "_")
    return ALIASES.get(key, key)


def parse_overrides(extra: dict[str, Any]) -> dict[str, Any]:
    """`extra_args` → the sizing overrides, typed; a bad value names its field."""
    out: dict[str, Any] = {}
    for raw_key, value in extra.items():
        key = sizing_key(raw_key)
        kind = SIZING_KEYS.get(key)
        if kind is None:
            continue
        where = f"extra_args.{raw_key}"
        if kind is bool:
            if not isinstance(value, bool):
                raise InvalidRequest(f"{where} must be true or false, not {value!r}", where, value)
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidRequest(f"{where} must be a positive integer, not {value!r}",
                                     where, value)
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
                raise InvalidRequest(f"{where} must be a number in (0, 1], not {value!r}",
                                     where, value)
            value = float(value)
        elif not isinstance(value, str) or not value:
            raise InvalidRequest(f"{where} must be a non-empty string, not {value!r}", where, value)
        out[key] = value
    tp = out.get("tensor_parallel_size")
    if tp is not None and tp > GPUS_PER_NODE:
        raise InvalidRequest(
            f"extra_args tensor_parallel_size {tp} is larger than one {GPUS_PER_NODE}-GPU node; "
            "a tensor-parallel group must live on one node", "extra_args.tensor_parallel_size", tp)
    dtype = out.get("dtype")
    if dtype is not None and dtype != "auto" and dtype not in DTYPE_BYTES:
        raise InvalidRequest(f"extra_args.dtype {dtype!r} is not a dtype (auto, bfloat16, "
                             "float16, float32)", "extra_args.dtype", dtype)
    return out


@dataclass
class Served:
    profile: ModelProfile  # of the checkpoint that will be loaded
    scheme: Scheme
    checkpoint: str
    engine_quantization: str | None
    notes: list[str] = field(default_factory=list)


def resolve(profile: ModelProfile, spec: ModelSpec, overrides: dict[str, Any],
            kb: KnowledgeBase | None = None) -> Served:
    """Decide what is served. Never sizes a 16-bit checkpoint as if it were 4-bit."""
    kb = kb or knowledge_base()
    asked = spec.quantization
    model = profile.model
    q = profile.quantization
    if q is not None:
        have = served_label(q)
        twin = kb.twin(model, asked) if asked not in ("none", have) else None
        if twin:
            return _twin(kb, model, asked, twin, f"{model} is stored as {have.upper()}")
        if asked not in ("none", have):
            raise SizingError(
                f"model {model!r} is already quantized ({q.method}, {q.bits}-bit), so "
                f"quantization {asked!r} cannot be applied on top; ask for {have!r} or 'none', "
                "or give the 16-bit checkpoint"
            )
        if q.method.startswith("gguf"):
            scheme = Scheme(label=q.method, method="gguf", bits=q.bits)
        else:
            scheme = scheme_for(q)
        note = f"checkpoint is already quantized ({scheme.describe()}, {q.method}); sized as it is"
        return Served(profile, scheme, model, scheme.method, [note])
    if asked == "none":
        dtype = overrides.get("dtype")
        scheme = FP32 if dtype in ("float32", "float", "fp32") else SIXTEEN_BIT
        notes = []
        if profile.checkpoint_dtype in ("float32", "float") and scheme is SIXTEEN_BIT:
            notes.append("fp32 checkpoint served in 16-bit (half the bytes on disk)")
        return Served(profile, scheme, model, None, notes)
    twin = kb.twin(model, asked)
    if twin:
        return _twin(kb, model, asked, twin, f"{model} is a 16-bit checkpoint")
    if asked == "fp8":
        return Served(profile, ONLINE_FP8, model, "fp8", [
            f"{model} is a 16-bit checkpoint; the engine quantizes its linear layers to FP8 "
            "at load time (one per-tensor scale each; embeddings stay 16-bit)"
        ])
    raise SizingError(
        f"model {model!r} is a 16-bit checkpoint and no {asked.upper()} checkpoint of it is "
        f"known; {asked.upper()} weights must be produced offline, so give the id of an "
        f"{asked.upper()} checkpoint as `model` (with quantization 'none' or {asked!r}), or ask "
        "for 'fp8' (quantized at load time) or 'none'"
    )


def _twin(kb: KnowledgeBase, model: str, asked: str, twin: str, what: str) -> Served:
    twin_profile = kb.profile(twin)
    if twin_profile is None or twin_profile.quantization is None:
        raise SizingError(f"knowledge base: the {asked} checkpoint {twin!r} of {model!r} is not "
                          "described; add it to models.toml")
    scheme = scheme_for(twin_profile.quantization)
    return Served(twin_profile, scheme, twin, twin_profile.quantization.method, [
        f"{what}; quantization {asked!r} serves its {asked.upper()} checkpoint {twin} "
        f"(engines cannot produce {asked.upper()} weights at load time)"
    ])
