"""Build a ModelProfile from config.json facts (plus exact counts when a source has them)."""

from __future__ import annotations

from typing import Any

from a3s_core.errors import SizingError
from a3s_core.sizing.architecture import Arch, arch_from_config, fmt_int, layout
from a3s_core.sizing.config_defaults import known_types
from a3s_core.sizing.quantization import quantization_from_config
from a3s_core.types import ModelProfile
from a3s_core.types.profile import ProfileSource


def profile_from_config(
    config: dict[str, Any],
    *,
    model: str,
    source: ProfileSource,
    revision: str | None = None,
    parameters: int | None = None,
    parameters_by_dtype: dict[str, int] | None = None,
    weight_bytes: int | None = None,
    local_path: str | None = None,
    notes: list[str] | None = None,
) -> ModelProfile:
    """`parameters` given → an exact count from tensor metadata; otherwise the formula's."""
    try:
        arch = arch_from_config(config)
    except SizingError as exc:
        raise SizingError(f"model {model!r}: {exc.message}") from exc
    lay = layout(arch)
    quant = quantization_from_config(config.get("quantization_config"))
    out_notes = list(notes or [])
    if parameters is None:
        parameters = lay.total
        out_notes.append(f"parameters {fmt_int(parameters)} computed from config.json "
                         f"({arch.architecture}); no tensor metadata was read")
        if arch.model_type not in known_types():
            out_notes.append(
                f"model_type {arch.model_type!r} is not an architecture the formula knows: "
                "counted as a Llama-style decoder (two norms a layer, untied head unless the "
                "config says otherwise); give a local checkpoint for exact figures")
    if lay.mtp_parameters:
        out_notes.append(
            f"the checkpoint also holds {fmt_int(lay.mtp_parameters)} multi-token-prediction "
            "parameters that engines load only for speculative decoding; not counted"
        )
    return ModelProfile(
        model=model,
        revision=revision,
        source=source,
        architecture=arch.architecture,
        model_type=arch.model_type,
        kind=arch.kind,
        parameters=parameters,
        parameters_by_dtype=parameters_by_dtype or {},
        embedding_parameters=lay.embedding,
        checkpoint_dtype=arch.checkpoint_dtype,
        weight_bytes=weight_bytes,
        num_layers=arch.num_layers,
        hidden_size=arch.hidden_size,
        num_attention_heads=arch.num_attention_heads,
        num_kv_heads=arch.num_kv_heads,
        head_dim=arch.head_dim,
        intermediate_size=arch.intermediate_size,
        vocab_size=arch.vocab_size,
        context_length=arch.context_length,
        tie_word_embeddings=arch.tie_word_embeddings,
        moe=arch.moe,
        mla=arch.mla,
        quantization=quant,
        local_path=local_path,
        notes=out_notes,
    )


def describe_arch(a: Arch) -> str:
    parts = [f"{a.num_layers} layers", f"hidden {a.hidden_size}",
             f"{a.num_attention_heads} heads / {a.num_kv_heads} kv heads × {a.head_dim}"]
    if a.moe:
        parts.append(f"{a.moe.num_experts} experts (top-{a.moe.experts_per_token})")
    if a.mla:
        parts.append(f"MLA latent {a.mla.kv_lora_rank}+{a.mla.qk_rope_head_dim}")
    return ", ".join(parts)
