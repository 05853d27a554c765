"""What the platform knows about a model's architecture and checkpoint."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ProfileSource = Literal["knowledge-base", "local", "hub", "config", "gguf"]


class ExistingQuantization(BaseModel):
    """A checkpoint that is already quantized (its `quantization_config`)."""

    method: str  # "awq", "gptq", "fp8", "compressed-tensors", "gguf:Q4_K_M", …
    bits: int
    group_size: int | None = None  # None = per-channel / block given elsewhere
    weight_block: tuple[int, int] | None = None  # FP8 block quantization (DeepSeek-V3: 128×128)


class MoE(BaseModel):
    num_experts: int
    experts_per_token: int
    expert_intermediate_size: int
    shared_experts: int = 0
    first_dense_layers: int = 0  # DeepSeek: first_k_dense_replace


class MLA(BaseModel):
    """Multi-head latent attention (DeepSeek-V2/V3): the KV cache holds a compressed latent."""

    kv_lora_rank: int
    qk_rope_head_dim: int
    qk_nope_head_dim: int
    v_head_dim: int
    q_lora_rank: int | None = None


class ModelProfile(BaseModel):
    """Architecture facts for sizing. Produced by the `a3s_model_profile` hook."""

    model: str = Field(description="the id or path that was asked for")
    revision: str | None = None
    source: ProfileSource
    architecture: str = Field(description="e.g. Qwen2ForCausalLM")
    model_type: str = Field(description="config.json model_type, e.g. qwen2")
    kind: Literal["decoder", "encoder"] = "decoder"
    parameters: int = Field(description="total parameters, counted exactly where possible")
    parameters_by_dtype: dict[str, int] = Field(default_factory=dict)
    embedding_parameters: int = Field(0, description="input embeddings + untied lm_head")
    checkpoint_dtype: str = Field("bfloat16", description="dtype of the unquantized weights")
    weight_bytes: int | None = Field(None, description="exact bytes of the checkpoint tensors")
    num_layers: int
    hidden_size: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    context_length: int = Field(description="max_position_embeddings (or rope-scaled length)")
    tie_word_embeddings: bool = False
    moe: MoE | None = None
    mla: MLA | None = None
    quantization: ExistingQuantization | None = None
    local_path: str | None = Field(None, description="where the checkpoint lives on disk, if local")
    notes: list[str] = Field(default_factory=list)
