"""What an engine plugin gives the platform (registered via `a3s_register_engines`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from a3s_core.types import LoadFigures, ModelProfile, SizingPlan


class LaunchContext(BaseModel):
    """The values an engine renders its command line from (the plan, with overrides applied)."""

    served_model_name: str = Field(description="= the deployment name; what `model` must say")
    model: str = Field(description="checkpoint id or path to load")
    kind: str = "decoder"
    quantization: str | None = Field(None, description="engine quantization method, or None")
    tensor_parallel_size: int = 1
    max_model_len: int
    dtype: str = "auto"
    gpu_memory_utilization: float = 0.9
    port: int
    host: str = "0.0.0.0"
    api_key: str | None = Field(None, description="for engines that check one themselves")
    extra_args: dict[str, Any] = Field(default_factory=dict)
    gpu_indices: list[int] = Field(default_factory=list)
    cpu_threads: int | None = None
    in_container: bool | None = Field(
        None,
        description="True: the command runs inside image_for(ctx) (kubernetes); False: as a "
        "process on the platform's machine (local, sim); None: unknown",
    )
    concurrent_sequences: int | None = Field(
        None,
        description="full-length sequences the plan's KV budget holds per replica (GPU "
        "placements); None when the plan does not say (CPU placements)",
    )


class Engine(ABC):
    """An inference engine. Subclass, fill the class attributes, implement `command`."""

    name: ClassVar[str]
    image: ClassVar[str] = ""
    port: ClassVar[int] = 8000
    health_path: ClassVar[str] = "/health"
    ready_path: ClassVar[str] = "/health"
    openai_paths: ClassVar[frozenset[str]] = frozenset(
        {"/v1/chat/completions", "/v1/completions", "/v1/models"}
    )
    has_metrics: ClassVar[bool] = True
    """False when the engine has no /metrics; its load is then the gateway's in-flight count."""
    needs_gpu: ClassVar[bool] = True
    """False when the engine can serve on CPU (the `local` runtime then uses a CPU device)."""
    serves_embeddings: ClassVar[bool] = False

    def __init__(self, image: str | None = None) -> None:
        if image:
            self.image = image  # type: ignore[misc]  # settings override the pinned tag

    def openai_paths_for(self, kind: str) -> frozenset[str]:
        """The OpenAI paths a replica of this kind ('decoder' / 'encoder') answers."""
        return self.openai_paths

    def check(self, profile: ModelProfile, plan: SizingPlan | None) -> str | None:
        """Why this engine cannot serve the model (one sentence), or None when it can."""
        return None

    def image_for(self, ctx: LaunchContext) -> str:
        """The container image for this launch (an engine may switch for embedding models)."""
        return self.image

    def health_path_for(self, ctx: LaunchContext) -> str:
        """The liveness path for this launch: `health_path`, unless the engine runs a
        different server for it (llama.cpp: llama-server or llama-cpp-python)."""
        return self.health_path

    def ready_path_for(self, ctx: LaunchContext) -> str:
        """The readiness path for this launch (200 only once the model is loaded)."""
        return self.ready_path

    def needs_gpu_for(self, extra_args: dict[str, Any]) -> bool:
        """Whether this deployment's replicas need GPUs: `needs_gpu`, unless the engine
        lets a deployment choose (Ollama: `extra_args.device = "cpu"`). False makes the
        plan `cpu_only`."""
        return self.needs_gpu

    def model_for(self, ctx: LaunchContext) -> str:
        """The model reference the engine loads (Ollama maps HF ids to its own tags)."""
        return ctx.model

    @abstractmethod
    def command(self, ctx: LaunchContext) -> list[str]:
        """The launch argv: executable first (it replaces a container image's ENTRYPOINT),
        or, when `keeps_entrypoint(ctx)`, only the arguments to the image's ENTRYPOINT."""

    def keeps_entrypoint(self, ctx: LaunchContext) -> bool:
        """True when, inside its image (`ctx.in_container`), `command(ctx)` is only the
        arguments to the image's own ENTRYPOINT, which must run (e.g. TEI's picks the
        binary built for the GPU's compute capability). A container runtime then sets them
        as the container's args and leaves its command alone. Never consulted outside a
        container: there `command(ctx)` is a whole argv."""
        return False

    def parse_metrics(self, text: str) -> LoadFigures:
        """Prometheus text of the engine's /metrics → common load figures."""
        return LoadFigures()

    def env(self, ctx: LaunchContext) -> dict[str, str]:
        """Extra environment for the process or container."""
        return {}


def render_extra_args(
    extra: dict[str, Any], skip: set[str] | frozenset[str] = frozenset()
) -> list[str]:
    """`{"enable_prefix_caching": true, "max_num_seqs": 64}`
    → `--enable-prefix-caching --max-num-seqs 64`.

    True → bare flag; False/None → omitted; lists → the flag repeated; dicts → JSON.
    Keys may be given with underscores or dashes, with or without the leading `--`.
    """
    import json

    argv: list[str] = []
    for key, value in extra.items():
        flag = "--" + key.lstrip("-").replace("_", "-")
        if key in skip or key.lstrip("-").replace("-", "_") in skip:
            continue
        if value is True:
            argv.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, list | tuple):
            for item in value:
                argv += [flag, str(item)]
        elif isinstance(value, dict):
            argv += [flag, json.dumps(value)]
        else:
            argv += [flag, str(value)]
    return argv
