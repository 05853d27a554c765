"""Platform hooks: the simulator as an engine named `sim`, usable on any runtime.

On the `sim` runtime every replica runs the simulator whatever its engine is (imitating that
engine's dialect); `"engine": "sim"` additionally lets the `local` and `kubernetes` runtimes
run it, e.g. to try the platform on a laptop or to load-test a gateway without GPUs.
"""

from __future__ import annotations

from typing import ClassVar

from a3s_core import hookimpl
from a3s_core.contracts import Engine, LaunchContext, render_extra_args
from a3s_core.contracts.metrics import Samples
from a3s_core.registry import EngineRegistry
from a3s_core.types import LoadFigures
from a3s_engine_sim import __version__

# Names each simulator dialect uses for the common figures (see metrics.py).
_WAITING = ("vllm:num_requests_waiting", "sglang:num_queue_reqs", "tgi_queue_size",
            "llamacpp:requests_deferred")
_RUNNING = ("vllm:num_requests_running", "sglang:num_running_reqs", "tgi_batch_current_size",
            "llamacpp:requests_processing")
_KV = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage",
       "llamacpp:kv_cache_usage_ratio")
_GPU = ("a3s_sim_gpu_utilization_percent", "DCGM_FI_DEV_GPU_UTIL")
# Flags the command renders itself; extra_args may not repeat them.
_OWN = frozenset({"host", "port", "served_model_name", "model", "kind", "max_model_len",
                  "tensor_parallel_size", "gpu_memory_utilization", "gpu_indices", "api_key"})


def parse_load(text: str) -> LoadFigures:
    """Prometheus text in any simulator dialect → common load figures: counts summed over
    label sets, ratios (KV usage, GPU utilisation) averaged."""
    samples = Samples.parse(text, "sim", (*_WAITING, *_RUNNING, *_KV, *_GPU))
    return LoadFigures(
        waiting=samples.total(*_WAITING),
        running=samples.total(*_RUNNING),
        kv_cache_usage=samples.mean(*_KV),
        gpu_utilization=samples.mean(*_GPU),
    )


class SimEngine(Engine):
    """The simulator, as an engine in its own right (vLLM dialect)."""

    name = "sim"
    image = f"ghcr.io/a3s-platform/engine-sim:{__version__}"
    port = 8000
    health_path = "/health"
    ready_path = "/health"
    openai_paths: ClassVar[frozenset[str]] = frozenset(
        {"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models"}
    )
    has_metrics = True
    needs_gpu = False
    serves_embeddings = True

    def command(self, ctx: LaunchContext) -> list[str]:
        argv = [
            "a3s-engine-sim",
            "--host", ctx.host,
            "--port", str(ctx.port),
            "--served-model-name", ctx.served_model_name,
            "--model", ctx.model,
            "--kind", ctx.kind,
            "--max-model-len", str(ctx.max_model_len),
            "--tensor-parallel-size", str(ctx.tensor_parallel_size),
            "--gpu-memory-utilization", str(ctx.gpu_memory_utilization),
        ]
        if ctx.gpu_indices:
            argv += ["--gpu-indices", ",".join(map(str, ctx.gpu_indices))]
        if ctx.api_key:
            argv += ["--api-key", ctx.api_key]
        return argv + render_extra_args(ctx.extra_args, skip=_OWN)

    def parse_metrics(self, text: str) -> LoadFigures:
        return parse_load(text)


@hookimpl
def a3s_register_engines(registry: EngineRegistry) -> None:
    registry.register(SimEngine)
