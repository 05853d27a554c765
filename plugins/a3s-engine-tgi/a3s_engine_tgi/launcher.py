"""`text-generation-launcher` (TGI) argv for decoder models."""

from __future__ import annotations

from typing import ClassVar

from a3s_core.contracts import LaunchContext
from a3s_core.contracts.argv import Option, merge, number, user_options
from a3s_core.errors import InvalidRequest
from a3s_engine_tgi.render import render_clap

RESERVED = frozenset(
    {"model", "model_id", "served_model_name", "host", "hostname", "port", "api_key"}
)

# Plan quantization method → `--quantize` value. TGI picks Marlin kernels for AWQ/GPTQ
# checkpoints by itself, so the *_marlin spellings map to the checkpoint format.
QUANTIZE = {
    "awq": "awq",
    "awq_marlin": "awq",
    "gptq": "gptq",
    "gptq_marlin": "gptq",
    "marlin": "marlin",
    "fp8": "fp8",
    "eetq": "eetq",
    "exl2": "exl2",
    "bitsandbytes": "bitsandbytes",
    "bitsandbytes-nf4": "bitsandbytes-nf4",
    "bitsandbytes-fp4": "bitsandbytes-fp4",
}
# Read from the checkpoint's quantization_config; TGI has no flag value for it.
FROM_CHECKPOINT = frozenset({"compressed-tensors"})

DTYPE = {"bfloat16": "bfloat16", "float16": "float16", "half": "float16"}


class Launcher:
    superseded_by: ClassVar[dict[str, tuple[str, ...]]] = {
        "--max-input-tokens": ("--max-input-length",),
        # `--dtype` cannot be combined with `--quantize`; a user's quantize replaces it.
        "--dtype": ("--quantize",),
    }

    @classmethod
    def argv(cls, ctx: LaunchContext) -> list[str]:
        if ctx.max_model_len < 2:
            raise InvalidRequest(
                f"max_model_len must be at least 2 for engine tgi (input + one new token), got "
                f"{ctx.max_model_len}",
                field="max_model_len",
                value=ctx.max_model_len,
            )
        own: list[Option] = [
            ("--model-id", [ctx.model]),
            ("--hostname", [ctx.host]),
            ("--port", [str(ctx.port)]),
            ("--num-shard", [str(ctx.tensor_parallel_size)]),
            # TGI bounds prompt and prompt + completion separately; the prompt must leave
            # room for at least one generated token.
            ("--max-input-tokens", [str(ctx.max_model_len - 1)]),
            ("--max-total-tokens", [str(ctx.max_model_len)]),
            ("--cuda-memory-fraction", [number(ctx.gpu_memory_utilization)]),
        ]
        quantize = cls.quantize(ctx.quantization)
        if quantize:
            own.append(("--quantize", [quantize]))
        elif dtype := cls.dtype(ctx.dtype):  # TGI refuses --dtype together with --quantize
            own.append(("--dtype", [dtype]))
        own.append(("--usage-stats", ["off"]))  # no reports from inside a customer's cluster
        user = user_options(ctx.extra_args, engine="tgi", reserved=RESERVED, render=render_clap)
        return ["text-generation-launcher", *merge(own, user, cls.superseded_by)]

    @staticmethod
    def quantize(method: str | None) -> str | None:
        if not method or method in FROM_CHECKPOINT:
            return None
        try:
            return QUANTIZE[method]
        except KeyError:
            raise InvalidRequest(
                f"quantization {method!r} has no TGI --quantize value; TGI accepts "
                f"{', '.join(sorted(set(QUANTIZE.values())))}",
                field="quantization",
                value=method,
            ) from None

    @staticmethod
    def dtype(dtype: str) -> str | None:
        if dtype == "auto":
            return None
        try:
            return DTYPE[dtype]
        except KeyError:
            raise InvalidRequest(
                f"dtype {dtype!r} cannot be served by engine tgi; it runs float16 or bfloat16",
                field="dtype",
                value=dtype,
            ) from None
