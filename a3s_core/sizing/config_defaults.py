"""What a config.json means by the keys it leaves out: the defaults of its architecture's
config class in `transformers`, which is how engines (vLLM, TGI, SGLang) read it.

`save_pretrained` writes only the values that differ from the class defaults, so real
checkpoints do omit keys: gemma-2-9b has no `tie_word_embeddings` (Gemma2Config: True),
a Qwen3 config may omit `head_dim` (Qwen3Config: 128, not hidden / heads). A default that
is computed from other keys in `transformers` (LlamaConfig: `num_key_value_heads` =
`num_attention_heads`, `head_dim` = hidden / heads) is not recorded here: the sizing code
derives it the same way.

The core does not depend on `transformers`, so the defaults are recorded, from
transformers 5.25 (`configuration_<model>.py`: the `__init__` defaults, and what the class
sets for keys that are no argument; for multimodal models those of the text config).
tests/sizing/test_sizing_config_defaults.py checks every entry, and that every model type
the formula claims is one of transformers' (or follows one, below), against the installed
`transformers`.
"""

from __future__ import annotations

from typing import Any

TRANSFORMERS_VERSION = "5.25.0"

# The keys sizing reads (architecture.arch_from_config); only these are recorded.
SIZING_KEYS = (
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "vocab_size", "max_position_embeddings",
    "tie_word_embeddings", "attention_bias", "mlp_bias", "type_vocab_size",
    "num_experts_per_tok", "moe_intermediate_size", "n_shared_experts", "first_k_dense_replace",
    "decoder_sparse_step", "shared_expert_intermediate_size", "num_experts", "num_local_experts",
    "n_routed_experts", "kv_lora_rank", "q_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim",
    "v_head_dim", "num_nextn_predict_layers", "mlp_only_layers", "moe_layer_freq",
)

_ENCODER = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
            "num_attention_heads": 12, "vocab_size": 30522, "max_position_embeddings": 512,
            "tie_word_embeddings": True, "type_vocab_size": 2}
_QWEN2_VL_TEXT = {"hidden_size": 8192, "intermediate_size": 29568, "num_hidden_layers": 80,
                  "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 152064,
                  "max_position_embeddings": 32768}

DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
              "num_attention_heads": 32, "vocab_size": 32000, "max_position_embeddings": 2048,
              "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False},
    "mistral": {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
                "max_position_embeddings": 131072, "tie_word_embeddings": False},
    "mixtral": {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
                "max_position_embeddings": 131072, "tie_word_embeddings": False,
                "num_experts_per_tok": 2, "num_local_experts": 8},
    "phi3": {"hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 32,
             "num_attention_heads": 32, "vocab_size": 32064, "max_position_embeddings": 4096,
             "tie_word_embeddings": False},
    "qwen2": {"hidden_size": 4096, "intermediate_size": 22016, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 151936,
              "max_position_embeddings": 32768, "tie_word_embeddings": False},
    "qwen2_moe": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 24,
                  "num_attention_heads": 16, "num_key_value_heads": 16, "vocab_size": 151936,
                  "max_position_embeddings": 32768, "tie_word_embeddings": False,
                  "num_experts_per_tok": 4, "moe_intermediate_size": 1408,
                  "decoder_sparse_step": 1, "shared_expert_intermediate_size": 5632,
                  "num_experts": 60},
    "qwen2_vl_text": {**_QWEN2_VL_TEXT},
    "qwen2_5_vl_text": {**_QWEN2_VL_TEXT},
    "qwen2_vl": {**_QWEN2_VL_TEXT, "tie_word_embeddings": False},
    "qwen2_5_vl": {**_QWEN2_VL_TEXT, "tie_word_embeddings": False},
    "qwen3": {"hidden_size": 4096, "intermediate_size": 22016, "num_hidden_layers": 32,
              "num_attention_heads": 32, "num_key_value_heads": 32, "head_dim": 128,
              "vocab_size": 151936, "max_position_embeddings": 32768,
              "tie_word_embeddings": False, "attention_bias": False},
    "qwen3_moe": {"hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 24,
                  "num_attention_heads": 32, "num_key_value_heads": 4, "vocab_size": 151936,
                  "max_position_embeddings": 32768, "tie_word_embeddings": False,
                  "attention_bias": False, "num_experts_per_tok": 8,
                  "moe_intermediate_size": 768, "decoder_sparse_step": 1, "num_experts": 128,
                  "num_local_experts": 128},
    "gemma": {"hidden_size": 3072, "intermediate_size": 24576, "num_hidden_layers": 28,
              "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 256,
              "vocab_size": 256000, "max_position_embeddings": 8192,
              "tie_word_embeddings": True, "attention_bias": False},
    "gemma2": {"hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
               "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
               "vocab_size": 256000, "max_position_embeddings": 8192,
               "tie_word_embeddings": True, "attention_bias": False},
    "gemma3_text": {"hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
                    "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
                    "vocab_size": 262208, "max_position_embeddings": 131072,
                    "tie_word_embeddings": True, "attention_bias": False},
    "deepseek_v2": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                    "num_attention_heads": 32, "vocab_size": 102400,
                    "max_position_embeddings": 2048, "tie_word_embeddings": False,
                    "attention_bias": False, "mlp_bias": False, "moe_intermediate_size": 1407,
                    "n_shared_experts": 2, "first_k_dense_replace": 0, "n_routed_experts": 64,
                    "kv_lora_rank": 512, "q_lora_rank": 1536, "qk_rope_head_dim": 64,
                    "qk_nope_head_dim": 128, "v_head_dim": 128},
    "deepseek_v3": {"hidden_size": 7168, "intermediate_size": 18432, "num_hidden_layers": 61,
                    "num_attention_heads": 128, "num_key_value_heads": 128, "vocab_size": 129280,
                    "max_position_embeddings": 4096, "tie_word_embeddings": False,
                    "attention_bias": False, "num_experts_per_tok": 8,
                    "moe_intermediate_size": 2048, "n_shared_experts": 1,
                    "first_k_dense_replace": 3, "n_routed_experts": 256, "kv_lora_rank": 512,
                    "q_lora_rank": 1536, "qk_rope_head_dim": 64, "qk_nope_head_dim": 128,
                    "v_head_dim": 128, "head_dim": 64, "num_nextn_predict_layers": 1},
    "bert": {**_ENCODER},
    "roberta": {**_ENCODER, "vocab_size": 50265},
    "xlm-roberta": {**_ENCODER},
    "camembert": {**_ENCODER},
    "ernie": {**_ENCODER},
    "electra": {**_ENCODER, "hidden_size": 256, "intermediate_size": 1024,
                "num_attention_heads": 4},
}

# Model types that ship their own config class (trust_remote_code), so transformers has
# none: the class of theirs the sizing follows. Kimi K2's configuration_deepseek.py is
# DeepseekV3Config.
REMOTE_CODE = {"kimi_k2": "deepseek_v3"}


def known_types() -> frozenset[str]:
    """Every model type whose layout the formula knows."""
    return frozenset(DEFAULTS) | frozenset(REMOTE_CODE)


def with_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """The config with the keys it omits filled in from its architecture's defaults. A key
    given as null stays null: transformers then derives it (e.g. kv heads = heads)."""
    model_type = str(config.get("model_type", ""))
    defaults = DEFAULTS.get(REMOTE_CODE.get(model_type, model_type), {})
    return {**defaults, **config}
