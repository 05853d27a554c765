"""llama.cpp: GGUF models on CPU (or GPUs), through one of two OpenAI-compatible servers.

- `llama-cpp-python`: `python -m llama_cpp.server` (pip extra `[server]`), run as a process
  on the platform's own machine by the `local` runtime. Flags are spelled with underscores
  (`--n_ctx`), booleans take a value (`--flash_attn true`).
- `llama-server`: upstream llama.cpp's C++ server, as shipped in the
  `ghcr.io/ggml-org/llama.cpp:server-*` images (Kubernetes), or on this machine when it is
  on PATH or built by `scripts/build-llama-server.sh` (see binary.py). Flags are spelled
  with dashes (`--ctx-size`), booleans are bare (`--cont-batching` / `--no-…`).

Which one runs is decided by `server_for(ctx)`; see docs/engine-llamacpp.md.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Literal

from a3s_core.contracts import Engine, LaunchContext
from a3s_core.contracts.argv import Option, check_context, key_of, merge, user_options
from a3s_core.contracts.metrics import Samples
from a3s_core.errors import InvalidRequest
from a3s_core.types import LoadFigures, ModelProfile, SizingPlan
from a3s_engine_llamacpp.binary import locate_llama_server

Server = Literal["llama-cpp-python", "llama-server"]
SERVERS: tuple[Server, ...] = ("llama-cpp-python", "llama-server")

# Pinned upstream build (CPU image and its CUDA 12 twin share the build number): b11312 is
# ggml-org/llama.cpp@0c1e57098, the tree llama-cpp-python 0.3.36 vendors, which
# scripts/build-llama-server.sh builds and the real-engine tests run.
LLAMA_CPP_BUILD = "b11312"
IMAGE = f"ghcr.io/ggml-org/llama.cpp:server-{LLAMA_CPP_BUILD}"
CUDA_IMAGE = f"ghcr.io/ggml-org/llama.cpp:server-cuda-{LLAMA_CPP_BUILD}"
IMAGE_BINARY = "/app/llama-server"  # the image's ENTRYPOINT; a pod command replaces it

# extra_args keys that choose how to launch rather than being passed on as flags.
SERVER_KEY = "server"
PYTHON_KEY = "python"
OWN_KEYS = frozenset({SERVER_KEY, PYTHON_KEY})

# Flags the platform owns (routing and health checks depend on them), in both spellings.
RESERVED = frozenset(
    {
        "model", "m", "served_model_name", "model_alias", "alias", "a", "host", "port",
        "api_key", "n_ctx", "ctx_size", "c", "config_file", "hf_repo", "hf_file",
        "metrics",  # llama-server's /metrics feeds least-queue; it has no --no-metrics
    }
)

# llama-server's /metrics gauges (with --metrics), as parse_metrics reads them.
PROCESSING = "llamacpp:requests_processing"
DEFERRED = "llamacpp:requests_deferred"
KV_USAGE = "llamacpp:kv_cache_usage_ratio"  # older builds only; later ones dropped it
METRICS = (PROCESSING, DEFERRED, KV_USAGE)

SPLIT = re.compile(r"-\d{5}-of-\d{5}\.gguf$")


def in_container(ctx: LaunchContext) -> bool | None:
    """Whether the command runs inside `image_for(ctx)` (True, kubernetes) or as a process
    on the platform's machine (False, local); None when the runtime does not say, which
    is taken as a process on this machine."""
    return ctx.in_container


def server_for(ctx: LaunchContext) -> Server:
    """`extra_args.server` when given; else llama-server inside a container (the upstream
    image); on this machine (in_container False) llama-server when it is found (on PATH or
    built into the engine cache: `locate_llama_server()`) unless `extra_args.python` names
    an interpreter for llama-cpp-python, else llama-cpp-python (what `[server]` installs)."""
    chosen = ctx.extra_args.get(SERVER_KEY)
    if chosen is not None:
        if chosen not in SERVERS:
            raise InvalidRequest(
                f"extra_args.{SERVER_KEY} must be one of {', '.join(SERVERS)} for engine "
                f"llamacpp, got {chosen!r}",
                field=f"extra_args.{SERVER_KEY}",
                value=chosen,
            )
        return chosen  # type: ignore[no-any-return]
    if in_container(ctx):
        return "llama-server"
    if PYTHON_KEY not in ctx.extra_args and ctx.in_container is False and locate_llama_server():
        return "llama-server"
    return "llama-cpp-python"


def is_gguf(model: str) -> bool:
    return PurePosixPath(model).suffix.lower() == ".gguf"


class LlamaCppEngine(Engine):
    """llama.cpp serving one GGUF model per replica under the deployment's name."""

    name = "llamacpp"
    image = IMAGE
    port = 8080  # llama-server's default (the upstream image's HEALTHCHECK uses it)
    # llama-server (the pod's program): /health is the one path that is both open when an
    # API key is set and 503 until the model is loaded. llama_cpp.server has no /health
    # (404); it loads the model before binding its port, so its probe is /v1/models (see
    # health_path_for).
    health_path = "/health"
    ready_path = "/health"
    openai_paths = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/models"})
    # llama-server runs with --metrics (llamacpp:requests_processing / _deferred).
    # llama_cpp.server has none: its /metrics is a 404, which the scraper takes as "alive,
    # no figures", so least-queue falls back to the gateway's in-flight count there.
    has_metrics = True
    needs_gpu = False
    serves_embeddings = False

    superseded_by: ClassVar[dict[str, tuple[str, ...]]] = {}

    def check(self, profile: ModelProfile, plan: SizingPlan | None) -> str | None:
        if profile.source == "gguf" or is_gguf(profile.model):
            if profile.kind == "encoder":
                return (
                    f"{profile.model!r} is an embedding model ({profile.model_type}); engine "
                    "llamacpp serves chat and completions only"
                )
            return None
        return (
            f"llama.cpp serves GGUF files, and {profile.model!r} is not one; give the path of "
            "a .gguf file (or a directory holding one), or use engine 'vllm'"
        )

    def health_path_for(self, ctx: LaunchContext) -> str:
        return "/v1/models" if server_for(ctx) == "llama-cpp-python" else self.health_path

    def ready_path_for(self, ctx: LaunchContext) -> str:
        return "/v1/models" if server_for(ctx) == "llama-cpp-python" else self.ready_path

    def parse_metrics(self, text: str) -> LoadFigures:
        """llama-server's gauges: requests being decoded (`requests_processing`) and those
        waiting for a free slot (`requests_deferred`)."""
        s = Samples.parse(text, self.name, METRICS)
        return LoadFigures(waiting=s.total(DEFERRED), running=s.total(PROCESSING),
                           kv_cache_usage=s.mean(KV_USAGE))

    def image_for(self, ctx: LaunchContext) -> str:
        """The upstream server image; its CUDA build when the replica holds GPUs (unless
        the operator pinned another image in settings.engine_images)."""
        if self.image != IMAGE:
            return self.image
        return CUDA_IMAGE if ctx.gpu_indices else IMAGE

    def model_for(self, ctx: LaunchContext) -> str:
        """The .gguf file to load. On this machine a directory becomes its one model file
        (the first part of a split model) and a relative path becomes absolute, since the
        engine's working directory is not the caller's."""
        if not ctx.model.strip():
            raise InvalidRequest("model must name a .gguf file for engine llamacpp",
                                 field="model", value=ctx.model)
        if in_container(ctx):
            return ctx.model
        path = Path(ctx.model).expanduser()
        if path.is_dir():
            path = model_file(path)
        return str(path.absolute()) if path.exists() else ctx.model

    def command(self, ctx: LaunchContext) -> list[str]:
        check_context(ctx, self.name)
        model = self.model_for(ctx)
        server = server_for(ctx)
        container = in_container(ctx)
        if server == "llama-cpp-python":
            if ctx.api_key:
                raise InvalidRequest(
                    "api_key cannot be enforced by llama-cpp-python's server for engine "
                    "llamacpp: it would also lock /v1/models, the health check; let the "
                    "gateway authenticate (the default)",
                    field="api_key",
                    value="***",
                )
            host = ctx.host if container else "127.0.0.1"
            own: list[Option] = [
                ("--model", [model]),
                ("--model_alias", [ctx.served_model_name]),
                ("--host", [host]),
                ("--port", [str(ctx.port)]),
                ("--n_ctx", [str(ctx.max_model_len)]),
            ]
            if ctx.cpu_threads:
                own.append(("--n_threads", [str(ctx.cpu_threads)]))
            if ctx.gpu_indices:
                own.append(("--n_gpu_layers", ["-1"]))  # -1: every layer on the GPU(s)
            user = user_options(_flags(ctx.extra_args), engine=self.name, reserved=RESERVED,
                                render=render_python)
            return [*python_argv(ctx, container), *merge(own, user, self.superseded_by)]

        host = ctx.host if container is not False else "127.0.0.1"
        own = [
            ("--model", [model]),
            ("--alias", [ctx.served_model_name]),
            ("--host", [host]),
            ("--port", [str(ctx.port)]),
            ("--ctx-size", [str(ctx.max_model_len)]),
            ("--metrics", []),  # /metrics: the queue figures least-queue balances on
        ]
        if ctx.cpu_threads:
            own.append(("--threads", [str(ctx.cpu_threads)]))
        if ctx.gpu_indices:
            own.append(("--n-gpu-layers", ["999"]))  # more than any model has: all layers
        user = user_options(_flags(ctx.extra_args), engine=self.name, reserved=RESERVED,
                            render=render_native)
        # Unknown (None): an explicit llama-server means the image. Here: the one found, or
        # the bare name, which the runtime reports as not installed.
        local = locate_llama_server() or "llama-server"
        binary = IMAGE_BINARY if container is not False else local
        return [binary, *merge(own, user, self.superseded_by)]

    def env(self, ctx: LaunchContext) -> dict[str, str]:
        if server_for(ctx) == "llama-cpp-python":
            # llama_cpp.server lets $HOST and $PORT override its --host/--port flags: pin
            # them, so a HOST or PORT in the platform's environment cannot move the engine.
            host = ctx.host if in_container(ctx) else "127.0.0.1"
            return {"HOST": host, "PORT": str(ctx.port)}
        if ctx.api_key:
            # From the environment rather than argv, so `ps` does not show it; llama-server
            # keeps /health and /v1/models open to probes.
            return {"LLAMA_API_KEY": ctx.api_key}
        return {}


def model_file(directory: Path) -> Path:
    """The one GGUF model in a directory (projector files for vision models are not it)."""
    files = [p for p in sorted(directory.glob("*.gguf")) if "mmproj" not in p.name.lower()]
    firsts = [p for p in files if not SPLIT.search(p.name) or "-00001-of-" in p.name]
    if len(firsts) != 1:
        found = ", ".join(p.name for p in firsts[:4]) or "none"
        raise InvalidRequest(
            f"model directory {str(directory)!r} must hold exactly one GGUF model for engine "
            f"llamacpp (found: {found}); give the path of the .gguf file",
            field="model",
            value=str(directory),
        )
    return firsts[0]


def python_argv(ctx: LaunchContext, container: bool | None) -> list[str]:
    """The interpreter that runs `-m llama_cpp.server`: `extra_args.python` when given; in a
    container `python3`; else the platform's own interpreter (`sys.executable`), where
    `pip install 'a3s-engine-llamacpp[server]'` put llama-cpp-python."""
    chosen = ctx.extra_args.get(PYTHON_KEY)
    if chosen is not None:
        if not isinstance(chosen, str) or not chosen.strip():
            raise InvalidRequest(
                f"extra_args.{PYTHON_KEY} must be the path of a Python interpreter with "
                f"llama-cpp-python[server] installed, got {chosen!r}",
                field=f"extra_args.{PYTHON_KEY}",
                value=chosen,
            )
        python = chosen.strip()
    elif container:
        python = "python3"
    else:
        python = sys.executable or str(Path(sys.base_prefix) / "bin" / "python3")
    return [python, "-m", "llama_cpp.server"]


def _flags(extra: dict[str, Any]) -> dict[str, Any]:
    """extra_args without the keys that choose the launch rather than being flags."""
    return {k: v for k, v in extra.items() if key_of(str(k)) not in OWN_KEYS}


def render_python(flag: str, key: str, value: Any) -> list[Option]:
    """llama_cpp.server's argparse (built from its pydantic settings): flags keep the
    field's underscores, booleans take a value, lists are one flag with several values
    (nargs='*'), dicts are JSON (`--chat_template_kwargs`)."""
    flag = "--" + key
    if value is None:
        return []
    if isinstance(value, bool):
        return [(flag, ["true" if value else "false"])]
    if isinstance(value, list | tuple):
        return [(flag, [str(v) for v in value])]
    if isinstance(value, dict):
        return [(flag, [json.dumps(value, separators=(",", ":"))])]
    return [(flag, [str(value)])]


def render_native(flag: str, key: str, value: Any) -> list[Option]:
    """llama-server's flags: dashes, bare booleans with `--no-…` for False, lists joined by
    commas (`--tensor-split 3,1`), dicts as JSON (`--chat-template-kwargs`)."""
    if value is None:
        return []
    if value is True:
        return [(flag, [])]
    if value is False:
        return [("--no-" + flag[2:], [])]
    if isinstance(value, list | tuple):
        return [(flag, [",".join(str(v) for v in value)])]
    if isinstance(value, dict):
        return [(flag, [json.dumps(value, separators=(",", ":"))])]
    return [(flag, [str(value)])]
