"""vLLM: `vllm serve` in the `vllm/vllm-openai` image, its flags and its /metrics."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from a3s_core.contracts import Engine, LaunchContext
from a3s_core.contracts.argv import Option, check_context, merge, number, user_options
from a3s_core.contracts.metrics import Samples
from a3s_core.types import LoadFigures, ModelProfile, SizingPlan

# Flags the platform owns: routing and health checks depend on them.
RESERVED = frozenset({"model", "served_model_name", "host", "port", "api_key"})

# Methods a checkpoint declares in its quantization_config. vLLM upgrades them to the Marlin
# kernels by itself when the GPU allows (compute capability ≥ 8.0), but only when no method
# is forced: `--quantization awq` pins the slower AWQ kernel. So these are left to vLLM.
CHECKPOINT_DEFINED = frozenset({"awq", "gptq"})

DECODER_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/models"})
ENCODER_PATHS = frozenset({"/v1/embeddings", "/v1/models"})
# The gauges parse_metrics reads; Samples.parse passes over every other line.
METRICS = ("vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc",
           "vllm:gpu_cache_usage_perc")


class VllmEngine(Engine):
    """vLLM's OpenAI-compatible server. Flags are those of the pinned image's `vllm serve`."""

    name = "vllm"
    image = "vllm/vllm-openai:v0.11.0"
    port = 8000
    health_path = "/health"
    # /health answers 200 only once the engine has loaded the weights and profiled memory.
    ready_path = "/health"
    openai_paths = DECODER_PATHS | ENCODER_PATHS
    has_metrics = True
    needs_gpu = True
    serves_embeddings = True

    superseded_by: ClassVar[dict[str, tuple[str, ...]]] = {}

    def openai_paths_for(self, kind: str) -> frozenset[str]:
        """What a replica of this kind answers: chat and completions, or embeddings."""
        return ENCODER_PATHS if kind == "encoder" else DECODER_PATHS

    def check(self, profile: ModelProfile, plan: SizingPlan | None) -> str | None:
        method = profile.quantization.method if profile.quantization else ""
        if profile.source == "gguf" or method.startswith("gguf"):
            return (
                f"vLLM cannot serve {profile.model!r}: it is a GGUF file, which vLLM loads only "
                "experimentally and without its own tokenizer; serve the safetensors checkpoint "
                "or use engine 'ollama'"
            )
        return None

    def command(self, ctx: LaunchContext) -> list[str]:
        check_context(ctx, self.name)
        own: list[Option] = [
            ("--served-model-name", [ctx.served_model_name]),
            ("--host", [ctx.host]),
            ("--port", [str(ctx.port)]),
            ("--tensor-parallel-size", [str(ctx.tensor_parallel_size)]),
            ("--max-model-len", [str(ctx.max_model_len)]),
            ("--dtype", [ctx.dtype]),
            ("--gpu-memory-utilization", [number(ctx.gpu_memory_utilization)]),
        ]
        if ctx.quantization and ctx.quantization not in CHECKPOINT_DEFINED:
            own.append(("--quantization", [ctx.quantization]))
        if ctx.kind == "encoder":
            # v0.10.1 replaced `--task embed` with the pooling runner (BERT-style models are
            # detected as embedders; saying so keeps the intent explicit).
            own.append(("--runner", ["pooling"]))
        user = user_options(ctx.extra_args, engine=self.name, reserved=RESERVED, render=render_vllm)
        return ["vllm", "serve", ctx.model, *merge(own, user, self.superseded_by)]

    def env(self, ctx: LaunchContext) -> dict[str, str]:
        # No usage reports from inside a customer's cluster.
        env = {"VLLM_NO_USAGE_STATS": "1"}
        if ctx.api_key:
            # From the environment rather than argv, so `ps` does not show it. vLLM checks it
            # on /v1/* only; /health and /metrics stay open to probes and the scraper.
            env["VLLM_API_KEY"] = ctx.api_key
        return env

    def parse_metrics(self, text: str) -> LoadFigures:
        samples = Samples.parse(text, self.name, METRICS)
        return LoadFigures(
            waiting=samples.total("vllm:num_requests_waiting"),
            running=samples.total("vllm:num_requests_running"),
            # Renamed in v0.9.2 (PR #18354). v0.9.2–v0.10.x export both names; v0.11 only
            # kv_ (gpu_ only with --show-hidden-metrics-for-version=0.10); images before
            # v0.9.2 only gpu_.
            kv_cache_usage=samples.mean("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
        )


# List-valued options vLLM takes as ONE JSON string (`type=json.loads`, no nargs), e.g.
# `--allowed-origins '["https://a.example"]'`.
JSON_LISTS = frozenset({"allowed_origins", "allowed_methods", "allowed_headers"})
# List-valued options with action='append': the flag is repeated, one value each.
REPEATED = frozenset({"middleware"})
# Presence switches (store_true, or nargs='?' with a const): there is no `--no-` form, so a
# False is left out.
SWITCHES = frozenset({"headless", "disable_log_stats", "disable_mm_preprocessor_cache",
                      "enable_multimodal_encoder_data_parallel", "hf_token"})


def render_vllm(flag: str, key: str, value: Any) -> list[Option]:
    """vLLM's argparse: booleans are `--x` / `--no-x` (it uses BooleanOptionalAction, so a
    False must be said, e.g. to turn prefix caching off; the few store_true switches just
    leave it out), lists are one flag with several values (nargs='+') except the CORS lists
    (one JSON string) and `middleware` (repeated), dicts are JSON (`--hf-overrides`,
    `--speculative-config`). The contract test checks these rules against the wheel."""
    if value is True:
        return [(flag, [])]
    if value is False:
        return [] if key in SWITCHES else [("--no-" + flag[2:], [])]
    if value is None:
        return []
    if isinstance(value, list | tuple):
        if key in JSON_LISTS:
            return [(flag, [_json(list(value))])]
        if key in REPEATED:
            return [(flag, [_item(v)]) for v in value]
        return [(flag, [_item(v) for v in value])]
    if isinstance(value, dict):
        return [(flag, [_json(value)])]
    return [(flag, [str(value)])]


def _item(value: Any) -> str:
    """A list element: JSON for a structured one (e.g. a `--lora-modules` entry)."""
    return _json(value) if isinstance(value, dict | list) else str(value)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
