"""Model architecture from `config.json`, and the exact tensor layout it implies.

One normalised `Arch` is built from a config (or back from a ModelProfile), and `layout()`
lists every weight family with its shape, count and how tensor parallelism splits it. The
parameter count is the sum of that layout, so it is checked against real safetensors
totals (tests keep the real figures) rather than trusted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from a3s_core.errors import SizingError
from a3s_core.sizing.config_defaults import with_defaults
from a3s_core.types import MLA, ModelProfile, MoE

Split = Literal["column", "row", "kv", "vocab", "replicated"]
"""How a tensor-parallel group shares a weight: column/row-parallel linears and the
vocab-parallel embedding divide by TP; `kv` divides by TP until TP exceeds the kv heads
(then heads are replicated); `replicated` lives whole on every rank."""

ENCODER_TYPES = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "ernie", "electra"})
ROBERTA_TYPES = frozenset({"roberta", "xlm-roberta", "camembert"})
QKV_BIAS_TYPES = frozenset({"qwen2", "qwen2_moe", "qwen2_vl", "qwen2_5_vl", "qwen2_vl_text",
                            "qwen2_5_vl_text"})
QK_NORM_TYPES = frozenset({"qwen3", "qwen3_moe", "gemma3_text"})  # per-head RMSNorm of q and k
MLA_TYPES = frozenset({"deepseek_v2", "deepseek_v3", "kimi_k2"})
# RMSNorms per decoder layer (each `hidden` wide): input and post-attention in most;
# Gemma 2/3 also norm each sublayer's output (pre/post attention, pre/post feed-forward).
NORMS_PER_LAYER = {"gemma2": 4, "gemma3_text": 4}


@dataclass(frozen=True)
class Weight:
    """A family of identical weight tensors, e.g. every layer's q_proj."""

    name: str
    rows: int  # input features for a linear (the dimension quantization groups run along)
    cols: int  # output features
    count: int
    split: Split
    linear: bool = True  # a quantizable linear layer (embeddings, norms, biases, routers are not)

    @property
    def parameters(self) -> int:
        return self.rows * self.cols * self.count


@dataclass(frozen=True)
class Layout:
    weights: list[Weight]
    mtp_parameters: int = 0  # DeepSeek multi-token-prediction layers: in the checkpoint, not served

    @property
    def total(self) -> int:
        return sum(w.parameters for w in self.weights)

    @property
    def linear(self) -> int:
        return sum(w.parameters for w in self.weights if w.linear)

    @property
    def embedding(self) -> int:
        return sum(w.parameters for w in self.weights if w.name in ("embed_tokens", "lm_head"))

    @property
    def other(self) -> int:
        return self.total - self.linear - self.embedding


@dataclass(frozen=True)
class Arch:
    """The facts sizing needs, normalised across config.json dialects."""

    architecture: str
    model_type: str
    kind: Literal["decoder", "encoder"]
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    context_length: int
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    moe: MoE | None = None
    moe_layers: int = 0  # how many of num_layers are MoE layers
    mla: MLA | None = None
    mtp_layers: int = 0
    type_vocab_size: int = 0  # encoders: token-type embeddings
    checkpoint_dtype: str = "bfloat16"
    notes: list[str] = field(default_factory=list)


def _int(cfg: dict[str, Any], *keys: str, default: int | None = None) -> int:
    for key in keys:
        value = cfg.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    if default is not None:
        return default
    raise SizingError(f"config.json has no integer {' / '.join(keys)}; cannot size this model")


def context_length(cfg: dict[str, Any]) -> int:
    """vLLM's derivation: max_position_embeddings, or a YaRN-scaled original length."""
    length = _int(cfg, "max_position_embeddings", "n_positions", "max_seq_len", "seq_length",
                  default=2048)
    if cfg.get("model_type") in ROBERTA_TYPES:  # positions are offset by the padding index
        length -= 2
    rope = cfg.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type"))
    if rope_type == "yarn" and rope.get("original_max_position_embeddings") and rope.get("factor"):
        length = int(rope["original_max_position_embeddings"] * rope["factor"])
    return length


def arch_from_config(config: dict[str, Any]) -> Arch:
    """Normalise a config.json (text part of multimodal configs too)."""
    cfg = dict(config)
    if "hidden_size" not in cfg and isinstance(cfg.get("text_config"), dict):
        outer = cfg
        cfg = {**cfg["text_config"], "architectures": outer.get("architectures")}
        cfg.setdefault("model_type", outer.get("model_type"))
        if "tie_word_embeddings" in outer:  # multimodal configs keep it on the outside
            cfg.setdefault("tie_word_embeddings", outer["tie_word_embeddings"])
    cfg = with_defaults(cfg)
    archs = cfg.get("architectures") or ["unknown"]
    model_type = str(cfg.get("model_type", "unknown"))
    kind: Literal["decoder", "encoder"] = "encoder" if model_type in ENCODER_TYPES else "decoder"
    hidden = _int(cfg, "hidden_size", "n_embd", "d_model")
    heads = _int(cfg, "num_attention_heads", "n_head")
    kv_heads = _int(cfg, "num_key_value_heads", "num_kv_heads", default=heads)
    raw_head_dim = cfg.get("head_dim")
    head_dim = raw_head_dim if isinstance(raw_head_dim, int) else hidden // heads
    layers = _int(cfg, "num_hidden_layers", "n_layer", "num_layers")
    dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16")

    moe: MoE | None = None
    moe_layers = 0
    experts = _int(cfg, "n_routed_experts", "num_local_experts", "num_experts", default=0)
    if experts:
        expert_inter = _int(cfg, "moe_intermediate_size", "intermediate_size")
        shared = _int(cfg, "n_shared_experts", default=0)
        if cfg.get("shared_expert_intermediate_size"):  # qwen2_moe: one wide shared expert
            shared = int(cfg["shared_expert_intermediate_size"]) // expert_inter
        first_dense = _int(cfg, "first_k_dense_replace", default=0)
        moe = MoE(
            num_experts=experts,
            experts_per_token=_int(cfg, "num_experts_per_tok", "num_experts_per_token", default=2),
            expert_intermediate_size=expert_inter,
            shared_experts=shared,
            first_dense_layers=first_dense,
        )
        sparse_step = _int(cfg, "decoder_sparse_step", "moe_layer_freq", default=1) or 1
        dense_only = set(cfg.get("mlp_only_layers") or [])
        moe_layers = sum(
            1 for i in range(first_dense, layers)
            if i not in dense_only and (i + 1) % sparse_step == 0
        )

    mla: MLA | None = None
    if model_type in MLA_TYPES or "kv_lora_rank" in cfg:
        mla = MLA(
            kv_lora_rank=_int(cfg, "kv_lora_rank"),
            qk_rope_head_dim=_int(cfg, "qk_rope_head_dim"),
            qk_nope_head_dim=_int(cfg, "qk_nope_head_dim"),
            v_head_dim=_int(cfg, "v_head_dim"),
            q_lora_rank=cfg.get("q_lora_rank"),
        )
        head_dim = mla.qk_nope_head_dim + mla.qk_rope_head_dim

    attention_bias = bool(cfg.get("attention_bias", False))
    return Arch(
        architecture=str(archs[0]),
        model_type=model_type,
        kind=kind,
        num_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=_int(cfg, "intermediate_size", "ffn_dim", "n_inner", default=4 * hidden),
        vocab_size=_int(cfg, "vocab_size"),
        context_length=context_length(cfg),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", kind == "encoder")),
        qkv_bias=model_type in QKV_BIAS_TYPES or attention_bias or kind == "encoder",
        o_bias=attention_bias or kind == "encoder",
        mlp_bias=bool(cfg.get("mlp_bias", False)) or kind == "encoder",
        qk_norm=model_type in QK_NORM_TYPES,
        moe=moe,
        moe_layers=moe_layers,
        mla=mla,
        mtp_layers=_int(cfg, "num_nextn_predict_layers", default=0),
        type_vocab_size=_int(cfg, "type_vocab_size", default=2) if kind == "encoder" else 0,
        checkpoint_dtype=dtype,
    )


def arch_from_profile(p: ModelProfile) -> Arch:
    """The inverse of `profile_from_arch`, for sizing code that only holds a profile."""
    moe_layers = 0
    if p.moe:
        moe_layers = p.num_layers - p.moe.first_dense_layers
    return Arch(
        architecture=p.architecture,
        model_type=p.model_type,
        kind=p.kind,
        num_layers=p.num_layers,
        hidden_size=p.hidden_size,
        num_attention_heads=p.num_attention_heads,
        num_kv_heads=p.num_kv_heads,
        head_dim=p.head_dim,
        intermediate_size=p.intermediate_size,
        vocab_size=p.vocab_size,
        context_length=p.context_length,
        tie_word_embeddings=p.tie_word_embeddings,
        qkv_bias=p.model_type in QKV_BIAS_TYPES or p.kind == "encoder",
        o_bias=p.kind == "encoder",
        mlp_bias=p.kind == "encoder",
        qk_norm=p.model_type in QK_NORM_TYPES,
        moe=p.moe,
        moe_layers=moe_layers,
        mla=p.mla,
        type_vocab_size=2 if p.kind == "encoder" else 0,
        checkpoint_dtype=p.checkpoint_dtype,
    )


def _attention(a: Arch, n: int) -> list[Weight]:
    h, hd = a.hidden_size, a.head_dim
    q_out, kv_out = a.num_attention_heads * hd, a.num_kv_heads * hd
    if a.mla:
        m = a.mla
        heads = a.num_attention_heads
        qk = m.qk_nope_head_dim + m.qk_rope_head_dim
        out: list[Weight] = []
        if m.q_lora_rank:
            out += [
                Weight("attn.q_a_proj", h, m.q_lora_rank, n, "replicated"),
                Weight("attn.q_a_layernorm", 1, m.q_lora_rank, n, "replicated", linear=False),
                Weight("attn.q_b_proj", m.q_lora_rank, heads * qk, n, "column"),
            ]
        else:
            out.append(Weight("attn.q_proj", h, heads * qk, n, "column"))
        return [
            *out,
            Weight("attn.kv_a_proj_with_mqa", h, m.kv_lora_rank + m.qk_rope_head_dim, n,
                   "replicated"),
            Weight("attn.kv_a_layernorm", 1, m.kv_lora_rank, n, "replicated", linear=False),
            Weight("attn.kv_b_proj", m.kv_lora_rank,
                   heads * (m.qk_nope_head_dim + m.v_head_dim), n, "column"),
            Weight("attn.o_proj", heads * m.v_head_dim, h, n, "row"),
        ]
    out = [
        Weight("attn.q_proj", h, q_out, n, "column"),
        Weight("attn.k_proj", h, kv_out, n, "kv"),
        Weight("attn.v_proj", h, kv_out, n, "kv"),
        Weight("attn.o_proj", q_out, h, n, "row"),
    ]
    if a.qkv_bias:
        out += [
            Weight("attn.q_bias", 1, q_out, n, "column", linear=False),
            Weight("attn.kv_bias", 1, 2 * kv_out, n, "kv", linear=False),
        ]
    if a.o_bias:
        out.append(Weight("attn.o_bias", 1, h, n, "replicated", linear=False))
    if a.qk_norm:
        out.append(Weight("attn.qk_norm", 1, 2 * hd, n, "replicated", linear=False))
    return out


def _mlp(a: Arch, prefix: str, inter: int, n: int, gated: bool = True) -> list[Weight]:
    h = a.hidden_size
    if n == 0:
        return []
    out = [
        Weight(f"{prefix}.gate_up_proj", h, (2 if gated else 1) * inter, n, "column"),
        Weight(f"{prefix}.down_proj", inter, h, n, "row"),
    ]
    if a.mlp_bias:
        out += [
            Weight(f"{prefix}.up_bias", 1, (2 if gated else 1) * inter, n, "column", linear=False),
            Weight(f"{prefix}.down_bias", 1, h, n, "replicated", linear=False),
        ]
    return out


def _decoder_layers(a: Arch, layers: int, moe_layers: int) -> list[Weight]:
    h = a.hidden_size
    out = _attention(a, layers)
    norms = NORMS_PER_LAYER.get(a.model_type, 2)
    out.append(Weight("norms", 1, norms * h, layers, "replicated", linear=False))
    out += _mlp(a, "mlp", a.intermediate_size, layers - moe_layers)
    if a.moe and moe_layers:
        m = a.moe
        out += _mlp(a, "experts", m.expert_intermediate_size, moe_layers * m.num_experts)
        out.append(Weight("router", h, m.num_experts, moe_layers, "replicated", linear=False))
        if m.shared_experts:
            out += _mlp(a, "shared_experts", m.expert_intermediate_size * m.shared_experts,
                        moe_layers)
            if a.model_type == "qwen2_moe":
                out.append(Weight("shared_expert_gate", h, 1, moe_layers, "replicated",
                                  linear=False))
        if a.model_type in ("deepseek_v3", "kimi_k2"):  # noaux_tc routing bias
            out.append(Weight("router_bias", 1, m.num_experts, moe_layers, "replicated",
                              linear=False))
    return out


def layout(a: Arch) -> Layout:
    """Every weight the serving engine loads, with its shape and TP split."""
    h, v = a.hidden_size, a.vocab_size
    if a.kind == "encoder":
        weights = [
            Weight("embed_tokens", v, h, 1, "replicated", linear=False),
            Weight("position_embeddings",
                   a.context_length + (2 if a.model_type in ROBERTA_TYPES else 0), h, 1,
                   "replicated", linear=False),
            Weight("token_type_embeddings", a.type_vocab_size, h, 1, "replicated", linear=False),
            Weight("embeddings.layernorm", 1, 2 * h, 1, "replicated", linear=False),
            *_attention(a, a.num_layers),
            Weight("norms", 1, 4 * h, a.num_layers, "replicated", linear=False),
            *_mlp(a, "mlp", a.intermediate_size, a.num_layers, gated=False),
            Weight("pooler", h + 1, h, 1, "replicated"),
        ]
        return Layout(weights)
    weights = [Weight("embed_tokens", v, h, 1, "vocab", linear=False)]
    weights += _decoder_layers(a, a.num_layers, a.moe_layers)
    weights.append(Weight("final_norm", 1, h, 1, "replicated", linear=False))
    if not a.tie_word_embeddings:
        weights.append(Weight("lm_head", h, v, 1, "vocab", linear=False))
    mtp = 0
    if a.mtp_layers:
        # DeepSeek MTP: one more (MoE) decoder layer, eh_proj, three norms, and its own copies
        # of embed_tokens and the output head. Engines skip it unless speculating.
        extra = Layout(_decoder_layers(a, a.mtp_layers, a.mtp_layers if a.moe else 0)).total
        mtp = a.mtp_layers * (2 * h * h + 3 * h + 2 * v * h) + extra
    return Layout(weights, mtp_parameters=mtp)


def count_parameters(config: dict[str, Any]) -> int:
    """Total served parameters implied by a config.json."""
    return layout(arch_from_config(config)).total


def shard_fraction(w: Weight, tp: int, kv_heads: int) -> float:
    """Share of `w` one rank of a TP group holds."""
    if w.split == "replicated":
        return 1.0
    if w.split == "kv":
        return 1.0 / min(tp, kv_heads) if kv_heads else 1.0 / tp
    return 1.0 / tp


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def fmt_int(n: int | float) -> str:
    return f"{int(n):,}"


def size_str(n: int | float) -> str:
    """Bytes for people: GiB for model-sized figures, smaller units for tiny models."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:,.2f} {unit}"
    return f"{int(n):,} B"


def round_up(n: float, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple)
