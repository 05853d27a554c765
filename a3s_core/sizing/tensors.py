"""Exact counts from safetensors tensor metadata (local headers or the Hub's), and the
profile they make together with config.json."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from a3s_core.sizing.architecture import fmt_int
from a3s_core.sizing.profiles import profile_from_config
from a3s_core.types import ModelProfile
from a3s_core.types.profile import ProfileSource

SAFETENSORS_BYTES = {
    "F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2,
    "U16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "I8": 1, "U8": 1, "BOOL": 1,
}
# Quantization side tensors: part of the weight bytes, not of the model's parameters.
AUX_SUFFIXES = ("_scale_inv", ".weight_scale", ".input_scale", ".k_scale", ".v_scale",
                ".scales", ".qzeros", ".g_idx", ".weight_zero_point", ".weight_g_idx")
PACKED_SUFFIXES = (".qweight", ".weight_packed")
LAYER_RE = re.compile(r"(?:^|\.)layers\.(\d+)\.")
NON_PARAM_SUFFIXES = ("position_ids",)  # buffers some BERT checkpoints save (int64)


def count_tensors(
    tensors: Iterable[tuple[str, str, list[int]]], num_layers: int
) -> tuple[dict[str, int], int, int, int, bool]:
    """(parameters by dtype, parameters, weight bytes, skipped MTP tensors, packed?) over
    (name, safetensors dtype, shape). Layers numbered ≥ num_layers (DeepSeek's MTP
    module) are skipped: engines do not load them for plain serving."""
    by_dtype: dict[str, int] = {}
    params = nbytes = skipped = 0
    packed = False
    for name, dtype, shape in tensors:
        m = LAYER_RE.search(name)
        if m and int(m.group(1)) >= num_layers:
            skipped += 1
            continue
        if name.endswith(NON_PARAM_SUFFIXES):
            continue
        n = math.prod(shape) if shape else 1
        by_dtype[dtype] = by_dtype.get(dtype, 0) + n
        nbytes += n * SAFETENSORS_BYTES.get(dtype, 2)
        if name.endswith(PACKED_SUFFIXES):
            packed = True
        if not name.endswith(AUX_SUFFIXES):
            params += n
    return by_dtype, params, nbytes, skipped, packed


def profile_from_tensors(
    config: dict[str, Any],
    tensors: Iterable[tuple[str, str, list[int]]],
    *,
    model: str,
    source: ProfileSource,
    revision: str | None = None,
    local_path: str | None = None,
) -> ModelProfile:
    layers = int(config.get("num_hidden_layers") or config.get("text_config", {}).get(
        "num_hidden_layers") or 10**9)
    by_dtype, params, nbytes, skipped, packed = count_tensors(tensors, layers)
    notes = ["exact count from safetensors headers: "
             + ", ".join(f"{k} {fmt_int(v)}" for k, v in sorted(by_dtype.items()))]
    if skipped:
        notes.append(f"{skipped} tensors of layers ≥ {layers} (multi-token prediction) skipped")
    exact: int | None = params
    if packed:
        # 4-bit weights are packed eight to an int32: the logical count comes from the config
        notes.append("weights are packed integers; parameters are the unpacked count from config")
        exact = None
    profile = profile_from_config(
        config, model=model, source=source, revision=revision, parameters=exact,
        parameters_by_dtype=by_dtype, weight_bytes=nbytes, local_path=local_path, notes=notes,
    )
    return profile
