"""SGLang: `python3 -m sglang.launch_server` in the `lmsysorg/sglang` image, and its /metrics."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from a3s_core.contracts import Engine, LaunchContext
from a3s_core.contracts.argv import (
    Option,
    check_context,
    key_of,
    merge,
    number,
    user_options,
)
from a3s_core.contracts.metrics import Samples
from a3s_core.types import LoadFigures, ModelProfile, SizingPlan

RESERVED = frozenset({"model", "model_path", "served_model_name", "host", "port", "api_key"})

# As in vLLM: SGLang reads AWQ/GPTQ from the checkpoint's quantization_config and moves to
# the Marlin kernels when the GPU allows; naming the method pins the slower kernel.
CHECKPOINT_DEFINED = frozenset({"awq", "gptq"})

DECODER_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/models"})
ENCODER_PATHS = frozenset({"/v1/embeddings", "/v1/models"})
# The gauges parse_metrics reads; Samples.parse passes over every other line.
METRICS = ("sglang:num_queue_reqs", "sglang:num_running_reqs", "sglang:token_usage")


class SglangEngine(Engine):
    """SGLang's OpenAI-compatible server (RadixAttention). Metrics need `--enable-metrics`."""

    name = "sglang"
    image = "lmsysorg/sglang:v0.5.6.post1"
    port = 30000
    health_path = "/health"
    ready_path = "/health"
    openai_paths = DECODER_PATHS | ENCODER_PATHS
    has_metrics = True
    needs_gpu = True
    serves_embeddings = True

    # A user's native spelling of a flag the plan sets replaces the plan's value.
    superseded_by: ClassVar[dict[str, tuple[str, ...]]] = {
        "--tp-size": ("--tp", "--tensor-parallel-size"),
    }

    def openai_paths_for(self, kind: str) -> frozenset[str]:
        return ENCODER_PATHS if kind == "encoder" else DECODER_PATHS

    def check(self, profile: ModelProfile, plan: SizingPlan | None) -> str | None:
        method = profile.quantization.method if profile.quantization else ""
        if profile.source == "gguf" or method.startswith("gguf"):
            return (
                f"SGLang cannot serve {profile.model!r}: it is a GGUF file; serve the "
                "safetensors checkpoint or use engine 'ollama'"
            )
        return None

    def command(self, ctx: LaunchContext) -> list[str]:
        check_context(ctx, self.name)
        own: list[Option] = [
            ("--model-path", [ctx.model]),
            ("--served-model-name", [ctx.served_model_name]),
            ("--host", [ctx.host]),
            ("--port", [str(ctx.port)]),
            ("--tp-size", [str(ctx.tensor_parallel_size)]),
            ("--context-length", [str(ctx.max_model_len)]),
            ("--dtype", [ctx.dtype]),
        ]
        if asked_utilization(ctx):
            # SGLang's fraction covers weights + KV pool only (activations and CUDA graphs
            # live outside it), so an asked-for utilisation is an upper bound here. Unasked,
            # SGLang's own formula applies: 1 - reserve/memory, the reserve sized from the
            # real GPU memory, chunked-prefill size, CUDA-graph batch and TP (about 0.82 on an
            # H100 at TP 4; ServerArgs._handle_gpu_memory_settings). The platform's 0.9
            # default would leave less room than that for long prefills and graph capture.
            own.append(("--mem-fraction-static", [number(ctx.gpu_memory_utilization)]))
        if ctx.quantization and ctx.quantization not in CHECKPOINT_DEFINED:
            own.append(("--quantization", [ctx.quantization]))
        if ctx.kind == "encoder":
            own.append(("--is-embedding", []))
        own.append(("--enable-metrics", []))  # /metrics is off by default
        user = user_options(
            ctx.extra_args, engine=self.name, reserved=RESERVED, render=render_sglang
        )
        return ["python3", "-m", "sglang.launch_server", *merge(own, user, self.superseded_by)]

    def parse_metrics(self, text: str) -> LoadFigures:
        samples = Samples.parse(text, self.name, METRICS)
        return LoadFigures(
            waiting=samples.total("sglang:num_queue_reqs"),
            running=samples.total("sglang:num_running_reqs"),
            # Fraction of the KV token pool in use (0–1), one series per DP rank.
            kv_cache_usage=samples.mean("sglang:token_usage"),
        )


def asked_utilization(ctx: LaunchContext) -> bool:
    """Whether the deployment's extra_args set gpu_memory_utilization (the plan then carries
    it), as opposed to the platform's default."""
    return any(key_of(str(k)) == "gpu_memory_utilization" for k in ctx.extra_args)


# List-valued options SGLang takes as ONE JSON string (type=json_list_type, no nargs).
JSON_LISTS = frozenset(
    {"piecewise_cuda_graph_tokens", "remote_instance_weight_loader_send_weights_group_ports",
     "forward_hooks"}
)


def render_sglang(flag: str, key: str, value: Any) -> list[Option]:
    """SGLang's argparse: switches are store_true (a False is simply left out; turning a
    feature off has its own `--disable-…` switch), lists are nargs='+' except the few typed
    `json_list_type` (one JSON string), dicts are JSON (`--json-model-override-args`). The
    contract test checks these rules against the wheel."""
    if value is True:
        return [(flag, [])]
    if value is False or value is None:
        return []
    if isinstance(value, list | tuple):
        if key in JSON_LISTS:
            return [(flag, [json.dumps(list(value), separators=(",", ":"))])]
        return [(flag, [str(v) for v in value])]
    if isinstance(value, dict):
        return [(flag, [json.dumps(value, separators=(",", ":"))])]
    return [(flag, [str(value)])]
