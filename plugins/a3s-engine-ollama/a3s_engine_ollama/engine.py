"""Ollama: its own model library (tags, GGUF), configured by environment, no /metrics."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from a3s_core.contracts import Engine, LaunchContext
from a3s_core.contracts.argv import CONSUMED, check_context, key_of
from a3s_core.errors import InvalidRequest
from a3s_core.types import ModelProfile, SizingPlan
from a3s_engine_ollama.binary import locate_ollama
from a3s_engine_ollama.library import library
from a3s_engine_ollama.script import entry_script

# `ollama serve` has no flags: every setting is an OLLAMA_* variable. These are the ones a
# deployment may set through extra_args (OLLAMA_HOST belongs to the platform).
SETTINGS = frozenset(
    {
        "num_parallel",
        "max_queue",
        "flash_attention",
        "kv_cache_type",
        "gpu_overhead",
        "load_timeout",
        "keep_alive",
        "models",
        "debug",
        "noprune",
        "origins",
        "sched_spread",
        "llm_library",
        "multiuser_cache",
        "new_engine",
    }
)
TAG_KEY = "ollama_tag"  # extra_args: serve this library tag instead of the mapped one
DEVICE_KEY = "device"  # extra_args: "gpu" (the default) or "cpu" (a CPU replica, no GPU)
DEVICES = ("gpu", "cpu")
# OLLAMA_NUM_PARALLEL (default 1: one request at a time) is taken from the plan: the
# full-length sequences its KV budget holds, since Ollama gives every parallel slot the
# whole context (KV size = OLLAMA_CONTEXT_LENGTH × OLLAMA_NUM_PARALLEL). At most this many:
# past it a replica's slots outgrow what one decode batch (512 tokens) keeps busy, and the
# gateway's queue (with least-queue routing) serves the rest better.
MAX_PARALLEL = 16
RESERVED = frozenset({"host", "model", "served_model_name", "port", "context_length"})

# Methods that name a checkpoint format Ollama cannot load: it serves GGUF only.
NOT_GGUF = {"awq": "AWQ", "gptq": "GPTQ", "fp8": "FP8"}


class OllamaEngine(Engine):
    """Ollama serving one model per replica, under the deployment's name."""

    name = "ollama"
    image = "ollama/ollama:0.12.6"
    port = 11434
    health_path = "/api/version"
    # The replica's address is bound only after the model is on disk (see script.py).
    ready_path = "/api/version"
    openai_paths = frozenset(
        {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models"}
    )
    has_metrics = False  # the gateway's own in-flight count is the load figure
    needs_gpu = True
    serves_embeddings = True

    def openai_paths_for(self, kind: str) -> frozenset[str]:
        if kind == "encoder":
            return frozenset({"/v1/embeddings", "/v1/models"})
        return frozenset({"/v1/chat/completions", "/v1/completions", "/v1/models"})

    def check(self, profile: ModelProfile, plan: SizingPlan | None) -> str | None:
        if is_gguf_file(profile.model) or profile.source == "gguf":
            return None
        if reason := library().why_not(profile.model):
            return reason
        entry = library().find(profile.model)
        if entry is None:
            return (
                f"Ollama serves models from its own library by tag, and {profile.model!r} has "
                "no known Ollama tag; known ids: "
                + ", ".join(library().ids())
                + "; or give a local .gguf file, or use engine 'vllm'"
            )
        quantization = plan.quantization if plan else "none"
        if quantization in NOT_GGUF:
            hint = f" such as {entry.q4!r}" if entry.q4 else ""
            return (
                f"Ollama serves GGUF files, not {NOT_GGUF[quantization]} checkpoints: ask for "
                f"quantization 'none' (served from Ollama's fp16 build of {profile.model!r}), "
                f"or name a 4-bit GGUF build{hint} in extra_args.{TAG_KEY}, or use engine "
                "'vllm'"
            )
        return None

    def needs_gpu_for(self, extra_args: dict[str, Any]) -> bool:
        """GPUs unless `extra_args.device` is "cpu" (Ollama serves on either)."""
        return device(extra_args) == "gpu"

    def model_for(self, ctx: LaunchContext) -> str:
        """The Ollama tag (or GGUF path) this replica serves."""
        chosen = ctx.extra_args.get(TAG_KEY)
        if chosen is not None:
            if (
                not isinstance(chosen, str)
                or not chosen.strip()
                or any(c.isspace() for c in chosen)
            ):
                raise InvalidRequest(
                    f"extra_args.{TAG_KEY} must be an Ollama tag such as "
                    f"'qwen2.5:7b-instruct-q4_K_M', got {chosen!r}",
                    field=f"extra_args.{TAG_KEY}",
                    value=chosen,
                )
            return chosen.strip()
        if is_gguf_file(ctx.model):
            if not ctx.model.startswith("/"):
                raise InvalidRequest(
                    f"a GGUF model for engine ollama must be an absolute path, got {ctx.model!r}",
                    field="model",
                    value=ctx.model,
                )
            return ctx.model
        entry = library().find(ctx.model)
        if entry is None:
            raise InvalidRequest(
                library().why_not(ctx.model)
                or f"model {ctx.model!r} has no known Ollama tag; set extra_args.{TAG_KEY}",
                field="model",
                value=ctx.model,
            )
        return entry.tag

    def command(self, ctx: LaunchContext) -> list[str]:
        check_context(ctx, self.name)
        source = self.model_for(ctx)
        settings(ctx.extra_args)  # refuse bad extra_args before anything starts
        device(ctx.extra_args)
        from_file = source == ctx.model and is_gguf_file(source)
        if ctx.in_container is False:
            # A process on the platform's machine: loopback only (the gateway checks the
            # key, Ollama checks none), and the binary found here (PATH or the build cache).
            script = entry_script(ctx, source, from_file=from_file, host="127.0.0.1",
                                  ollama=locate_ollama() or "ollama")
        else:
            script = entry_script(ctx, source, from_file=from_file)
        return ["/bin/sh", "-c", script]

    def env(self, ctx: LaunchContext) -> dict[str, str]:
        env = {
            # One model per replica: keep it resident, and never hold two copies (the tag
            # and the deployment-name alias share weights but are separate model names).
            "OLLAMA_KEEP_ALIVE": "-1",
            "OLLAMA_MAX_LOADED_MODELS": "1",
            "OLLAMA_CONTEXT_LENGTH": str(ctx.max_model_len),
            "OLLAMA_NUM_PARALLEL": str(parallel_for(ctx)),
        }
        if ctx.tensor_parallel_size > 1:
            # Ollama has no tensor parallelism; this spreads the layers over every GPU the
            # replica holds (pipeline style) instead of filling one first.
            env["OLLAMA_SCHED_SPREAD"] = "1"
        env.update(settings(ctx.extra_args))
        return env


def parallel_for(ctx: LaunchContext) -> int:
    """Requests one replica serves at once: the full-length sequences the plan's KV budget
    holds (GPU placements), at most MAX_PARALLEL; 1 on CPU, where the plan reserves memory
    for one full-length sequence. extra_args.num_parallel overrides it (see env)."""
    if ctx.concurrent_sequences is None:
        return 1
    return max(1, min(ctx.concurrent_sequences, MAX_PARALLEL))


def device(extra: dict[str, Any]) -> str:
    """extra_args.device: "gpu" (default) or "cpu"."""
    value = extra.get(DEVICE_KEY, "gpu")
    if value not in DEVICES:
        raise InvalidRequest(
            f"extra_args.{DEVICE_KEY} must be one of {', '.join(DEVICES)} for engine ollama, "
            f"got {value!r}",
            field=f"extra_args.{DEVICE_KEY}",
            value=value,
        )
    return str(value)


def is_gguf_file(model: str) -> bool:
    return PurePosixPath(model).suffix.lower() == ".gguf"


def settings(extra: dict[str, Any]) -> dict[str, str]:
    """extra_args → OLLAMA_* variables: `{"num_parallel": 4}` → OLLAMA_NUM_PARALLEL=4."""
    env: dict[str, str] = {}
    for raw, value in extra.items():
        key = key_of(str(raw)).lower().removeprefix("ollama_")
        if key_of(str(raw)).lower() in (TAG_KEY, DEVICE_KEY) or key in CONSUMED or value is None:
            continue
        if key in RESERVED:
            raise InvalidRequest(
                f"extra_args.{raw} is set by the platform for engine ollama",
                field=f"extra_args.{raw}",
                value=value,
            )
        if key not in SETTINGS:
            raise InvalidRequest(
                f"extra_args.{raw} is not an Ollama setting; engine ollama takes "
                + ", ".join(sorted(SETTINGS))
                + f" (as OLLAMA_* variables) and {TAG_KEY}",
                field=f"extra_args.{raw}",
                value=value,
            )
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list | tuple):
            text = ",".join(str(v) for v in value)  # OLLAMA_ORIGINS is comma-separated
        elif isinstance(value, dict):
            raise InvalidRequest(
                f"extra_args.{raw} must be a string, number, boolean or list for engine ollama",
                field=f"extra_args.{raw}",
                value=value,
            )
        else:
            text = str(value)
        env["OLLAMA_" + key.upper()] = text
    return env
