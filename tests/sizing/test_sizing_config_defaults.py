"""The config defaults the sizing records (a3s_core/sizing/config_defaults.py), and every
model type the formula claims, checked against the installed `transformers` config
classes (transformers is a test dependency: the core does not import it)."""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import pytest

from a3s_core.sizing import architecture
from a3s_core.sizing.architecture import arch_from_config, count_parameters
from a3s_core.sizing.config_defaults import DEFAULTS, REMOTE_CODE, SIZING_KEYS, known_types

transformers = pytest.importorskip("transformers")  # in the `test` extra: CI has it
warnings.filterwarnings("ignore", module="transformers")
CONFIG_MAPPING: Any = transformers.CONFIG_MAPPING

# The model types the formula path names anywhere; each must be one transformers knows.
CLAIMED = sorted(
    known_types() | architecture.ENCODER_TYPES | architecture.ROBERTA_TYPES
    | architecture.QKV_BIAS_TYPES | architecture.QK_NORM_TYPES | architecture.MLA_TYPES
    | set(architecture.NORMS_PER_LAYER)
)
IN_TRANSFORMERS = [t for t in sorted(DEFAULTS) if t not in REMOTE_CODE]
# Composite (multimodal) configs: their text sizes live in a text sub-config.
COMPOSITE = [t for t in IN_TRANSFORMERS if "text_config" in
             getattr(CONFIG_MAPPING.get(t, None), "sub_configs", {})]


def transformers_defaults(model_type: str) -> dict[str, Any]:
    """What transformers fills in for each sizing key a config omits: the literal
    `__init__` default (a default computed from other keys is None there: not recorded),
    or, for a key that is no `__init__` argument, what an instance holds (inherited from
    PreTrainedConfig, or set in the body). Multimodal configs: their text sub-config, and
    tie_word_embeddings from the outer class."""
    cls = CONFIG_MAPPING[model_type]
    sized = cls.sub_configs.get("text_config", cls)
    params = inspect.signature(sized.__init__).parameters
    instance = sized().to_dict()
    out: dict[str, Any] = {}
    for key in SIZING_KEYS:
        value = params[key].default if key in params else instance.get(key)
        if value is not None and value is not inspect.Parameter.empty:
            out[key] = value
    if sized is not cls:
        out.pop("tie_word_embeddings", None)
        if (tie := cls().to_dict().get("tie_word_embeddings")) is not None:
            out["tie_word_embeddings"] = tie
    return out


@pytest.mark.parametrize("model_type", CLAIMED)
def test_every_claimed_model_type_is_a_transformers_config(model_type: str) -> None:
    assert model_type in known_types(), f"{model_type} has no recorded defaults"
    if model_type in REMOTE_CODE:  # ships its own class; the one it follows must exist
        assert model_type not in CONFIG_MAPPING, f"{model_type} is in transformers now"
        assert REMOTE_CODE[model_type] in CONFIG_MAPPING
    else:
        assert model_type in CONFIG_MAPPING


@pytest.mark.parametrize("model_type", IN_TRANSFORMERS)
def test_recorded_defaults_are_transformers_defaults(model_type: str) -> None:
    assert DEFAULTS[model_type] == transformers_defaults(model_type), (
        f"update DEFAULTS[{model_type!r}] to transformers {transformers.__version__}")


SIZED_FIELDS = ("kind", "num_layers", "hidden_size", "num_attention_heads", "num_kv_heads",
                "head_dim", "intermediate_size", "vocab_size", "context_length",
                "tie_word_embeddings", "qkv_bias", "o_bias", "mlp_bias", "qk_norm", "moe",
                "moe_layers", "mla", "mtp_layers", "type_vocab_size")


def sized(config: dict[str, Any]) -> dict[str, Any]:
    arch = arch_from_config(config)
    return {f: getattr(arch, f) for f in SIZED_FIELDS}


@pytest.mark.parametrize("given", [{}, {"hidden_size": 1024, "num_attention_heads": 16}],
                         ids=["all-omitted", "heads-given"])
@pytest.mark.parametrize("model_type", [t for t in IN_TRANSFORMERS if t not in COMPOSITE])
def test_omitted_keys_size_as_transformers_fills_them(model_type: str,
                                                      given: dict[str, Any]) -> None:
    """A config.json that omits keys sizes exactly like the full config transformers makes
    of it: the literal defaults from the table, the derived ones (kv heads, head_dim) as
    transformers derives them."""
    full = CONFIG_MAPPING[model_type](**given).to_dict()
    assert sized({"model_type": model_type, **given}) == sized(full)
    assert count_parameters({"model_type": model_type, **given}) == count_parameters(full)
