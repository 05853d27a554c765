"""Bytes per weight for each quantization scheme, and recognising quantized checkpoints.

Only the linear layers of the transformer blocks are quantized; embeddings, the output
head, norms, biases and MoE routers stay in 16-bit (that is what AWQ, GPTQ and FP8
checkpoints contain and what vLLM loads).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from a3s_core.sizing.architecture import Layout, Weight, ceil_div, shard_fraction
from a3s_core.types import ExistingQuantization

ScaleLayout = Literal["none", "group", "block", "channel", "tensor"]

DTYPE_BYTES = {
    "float32": 4, "float": 4, "fp32": 4, "f32": 4,
    "bfloat16": 2, "bf16": 2, "float16": 2, "half": 2, "fp16": 2, "f16": 2,
    "float8": 1, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "f8_e4m3": 1, "f8_e5m2": 1,
}


@dataclass(frozen=True)
class Scheme:
    """How the linear weights are stored in GPU memory."""

    label: str  # as served: none / awq / gptq / fp8 / gguf:…
    method: str | None  # the engine's quantization method name; None when not quantized
    bits: int  # bits per linear weight (16 when not quantized)
    group_size: int | None = None  # 4-bit group along the input dimension; None = per-channel
    block: tuple[int, int] | None = None  # FP8 block scales (out, in)
    scales: ScaleLayout = "none"
    zeros: bool = False  # packed zero points next to the scales (AWQ, GPTQ)
    g_idx: bool = False  # GPTQ act-order index: one int32 per input row
    dense_bytes: int = 2  # bytes of everything not quantized (and of linears when bits == 16)

    def describe(self) -> str:
        if self.method == "gguf":
            return f"GGUF {self.label.removeprefix('gguf:')}, ~{self.bits} bits per weight"
        if self.bits >= 16:
            return f"{self.dense_bytes * 8}-bit"
        if self.scales == "group":
            zeros = " + zeros" if self.zeros else ""
            return f"{self.bits}-bit, fp16 scales{zeros} per {self.group_size}"
        if self.scales == "block" and self.block:
            return f"{self.bits}-bit, fp32 scale per {self.block[0]}×{self.block[1]} block"
        return f"{self.bits}-bit, fp32 scale per {self.scales}"


SIXTEEN_BIT = Scheme(label="none", method=None, bits=16)
FP32 = Scheme(label="none", method=None, bits=32, dense_bytes=4)
ONLINE_FP8 = Scheme(label="fp8", method="fp8", bits=8, scales="tensor")


def quantization_from_config(qc: dict[str, Any] | None) -> ExistingQuantization | None:
    """A config.json `quantization_config` → what the checkpoint holds."""
    if not qc:
        return None
    method = str(qc.get("quant_method", "unknown")).lower().replace("_", "-")
    if method in ("awq", "gptq", "awq-marlin", "gptq-marlin"):
        bits = int(qc.get("bits", qc.get("w_bit", 4)))
        group = int(qc.get("group_size", qc.get("q_group_size", 128)))
        return ExistingQuantization(method=method.removesuffix("-marlin"), bits=bits,
                                    group_size=None if group <= 0 else group)
    if method == "fp8":
        block = qc.get("weight_block_size")
        return ExistingQuantization(method="fp8", bits=8,
                                    weight_block=tuple(block) if block else None)
    if method == "compressed-tensors":
        groups: dict[str, Any] = qc.get("config_groups") or {}
        first: dict[str, Any] = next(iter(groups.values()), {})
        weights: dict[str, Any] = first.get("weights") or {}
        bits = int(weights.get("num_bits", 8))
        strategy = weights.get("strategy")
        ct_group: int | None = weights.get("group_size") if strategy == "group" else None
        block = weights.get("block_structure") if strategy == "block" else None
        return ExistingQuantization(method="compressed-tensors", bits=bits, group_size=ct_group,
                                    weight_block=tuple(block) if block else None)
    if method == "bitsandbytes":
        return ExistingQuantization(method="bitsandbytes", bits=4 if qc.get("load_in_4bit") else 8,
                                    group_size=64 if qc.get("load_in_4bit") else None)
    return ExistingQuantization(method=method, bits=int(qc.get("bits", 8)),
                                group_size=qc.get("group_size"))


def served_label(q: ExistingQuantization) -> str:
    """The request's vocabulary (awq / gptq / fp8) for a checkpoint's quantization."""
    if q.method in ("awq", "gptq", "fp8"):
        return q.method
    if q.method == "compressed-tensors":
        return "fp8" if q.bits == 8 else "gptq"
    return q.method


def scheme_for(q: ExistingQuantization) -> Scheme:
    """The memory layout of an already-quantized checkpoint."""
    label = served_label(q)
    method = q.method
    if q.method in ("awq", "gptq") or (q.method == "compressed-tensors" and q.bits < 8):
        return Scheme(label=label, method=method, bits=q.bits, group_size=q.group_size,
                      scales="group" if q.group_size else "channel",
                      zeros=q.method in ("awq", "gptq"), g_idx=q.method == "gptq")
    if q.bits == 8:
        if q.weight_block:
            return Scheme(label=label, method=method, bits=8, block=q.weight_block, scales="block")
        return Scheme(label=label, method=method, bits=8,
                      scales="channel" if q.method == "compressed-tensors" else "tensor")
    return Scheme(label=label, method=method, bits=q.bits, group_size=q.group_size,
                  scales="group" if q.group_size else "channel")


def linear_bytes(w: Weight, s: Scheme) -> float:
    """Bytes of one weight family under scheme `s` (whole model, not per GPU)."""
    rows, cols = w.rows, w.cols
    if not w.linear or s.bits >= 16:
        return w.parameters * (s.dense_bytes if s.bits >= 16 or not w.linear else 2)
    packed = rows * cols * s.bits / 8
    if s.scales == "group":
        groups = ceil_div(rows, s.group_size or rows)
        extra = groups * cols * (2 + (s.bits / 8 if s.zeros else 0))
        extra += rows * 4 if s.g_idx else 0
    elif s.scales == "channel":
        extra = cols * (2 if s.bits < 8 else 4) + (cols * s.bits / 8 if s.zeros else 0)
    elif s.scales == "block" and s.block:
        extra = ceil_div(cols, s.block[0]) * ceil_div(rows, s.block[1]) * 4
    else:  # one fp32 scale per tensor
        extra = 4
    return (packed + extra) * w.count


@dataclass(frozen=True)
class WeightBytes:
    total: int
    linear_params: int
    linear_bytes: int
    dense_params: int  # embeddings, head, norms, biases, routers
    dense_bytes: int


def weight_bytes(layout: Layout, s: Scheme) -> WeightBytes:
    lin_p = lin_b = den_p = den_b = 0
    for w in layout.weights:
        b = int(linear_bytes(w, s))
        if w.linear:
            lin_p, lin_b = lin_p + w.parameters, lin_b + b
        else:
            den_p, den_b = den_p + w.parameters, den_b + b
    return WeightBytes(lin_b + den_b, lin_p, lin_b, den_p, den_b)


def weight_bytes_per_gpu(layout: Layout, s: Scheme, tp: int, kv_heads: int) -> int:
    """One rank's share: sharded weights divided by TP, replicated ones whole."""
    return int(sum(linear_bytes(w, s) * shard_fraction(w, tp, kv_heads) for w in layout.weights))
