"""The simulator's command line. Plain argparse + a dataclass: start-up time matters here
(a replica should answer its first health check well under a second after launch), so
this process imports neither pydantic nor the platform core."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

DIALECTS = ("vllm", "vllm-v0", "tgi", "sglang", "ollama", "llamacpp")


@dataclass
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    served_model_names: list[str] = field(default_factory=lambda: ["sim"])
    model: str = "sim"
    dialect: str = "vllm"
    kind: str = "decoder"
    # The GPU (per device) and how many the replica spans.
    gpu: str = "A100-80GB"
    gpu_memory_mib: int = 81920
    bandwidth_gbs: float = 2039.0
    bf16_tflops: float = 312.0
    tensor_parallel_size: int = 1
    gpu_indices: list[int] = field(default_factory=list)
    gpu_memory_utilization: float = 0.9
    # The model.
    parameters: float = 8.0e9
    weight_bytes: float = 16.0e9
    kv_bytes_per_token: float = 131072.0
    max_model_len: int = 8192
    # Engine behaviour.
    max_num_seqs: int = 256
    max_queue: int = 1024
    compute_efficiency: float = 0.5
    bandwidth_efficiency: float = 0.8
    step_overhead_s: float = 0.0015
    jitter: float = 0.1
    time_scale: float = 1.0
    default_max_tokens: int = 16
    enable_prefix_caching: bool = True  # vLLM V1's default
    serial_prefill: bool = True  # concurrent prefills share the GPU's compute
    embedding_dim: int = 1024
    seed: int = 0
    api_key: str | None = None
    access_log: bool = False
    # Fault knobs (wall-clock, not scaled).
    fail_rate: float = 0.0
    crash_after: int | None = None
    crash_exit_code: int = 1
    slow_start: float = 0.0
    orphan_timeout: float | None = None

    @property
    def served_name(self) -> str:
        return self.served_model_names[0]


def _positive(kind: type[float] | type[int], allow_zero: bool = False):  # type: ignore[no-untyped-def]
    def convert(text: str) -> float | int:
        value = kind(text)
        if value < 0 or (value == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    return convert


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _indices(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        message = f"must be comma-separated integers, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def build_parser() -> argparse.ArgumentParser:
    d = SimConfig()
    p = argparse.ArgumentParser(
        prog="python -m a3s_engine_sim",
        description="OpenAI-compatible inference engine simulator (A3S).",
    )
    a = p.add_argument
    a("--host", default=d.host)
    a("--port", type=int, default=d.port)
    a("--served-model-name", dest="served_model_names", nargs="+", default=None,
      help="name(s) the API answers to; the first is listed by /v1/models")
    a("--model", default=d.model, help="the checkpoint this replica stands for (informational)")
    a("--dialect", "--engine", dest="dialect", choices=DIALECTS, default=d.dialect,
      help="the engine imitated: /metrics names and health paths")
    a("--kind", choices=("decoder", "encoder"), default=d.kind,
      help="decoder: completions and chat; encoder: embeddings")
    a("--gpu", default=d.gpu, help="catalog GPU name (informational)")
    a("--gpu-memory-mib", type=_positive(int), default=d.gpu_memory_mib)
    a("--bandwidth-gbs", type=_positive(float), default=d.bandwidth_gbs)
    a("--bf16-tflops", type=_positive(float), default=d.bf16_tflops)
    a("--tensor-parallel-size", "--tp", type=_positive(int), default=d.tensor_parallel_size)
    a("--gpu-indices", type=_indices, default=None, help="e.g. 0,1 (labels of GPU gauges)")
    a("--gpu-memory-utilization", type=_fraction, default=d.gpu_memory_utilization)
    a("--parameters", type=_positive(float), default=d.parameters)
    a("--weight-bytes", type=_positive(float), default=None, help="default: 2 × parameters")
    a("--kv-bytes-per-token", type=_positive(float, allow_zero=True),
      default=d.kv_bytes_per_token, help="0 for an embedding model (no KV cache)")
    a("--max-model-len", type=_positive(int), default=d.max_model_len)
    a("--max-num-seqs", type=_positive(int), default=d.max_num_seqs,
      help="requests decoded at once; the rest wait")
    a("--max-queue", type=_positive(int, allow_zero=True), default=d.max_queue,
      help="waiting requests beyond which new ones get 429")
    a("--compute-efficiency", type=_fraction, default=d.compute_efficiency)
    a("--bandwidth-efficiency", type=_fraction, default=d.bandwidth_efficiency)
    a("--step-overhead-s", type=_positive(float, allow_zero=True), default=d.step_overhead_s)
    a("--jitter", type=_fraction, default=d.jitter, help="relative spread of every delay")
    a("--time-scale", type=_positive(float), default=d.time_scale,
      help="multiplies every simulated delay (tests use 0.001–0.05)")
    a("--enable-prefix-caching", action=argparse.BooleanOptionalAction,
      default=d.enable_prefix_caching,
      help="reuse the KV blocks of prompt prefixes already computed (vLLM's automatic "
           "prefix caching); --no-enable-prefix-caching prefills every prompt in full")
    a("--serial-prefill", action=argparse.BooleanOptionalAction, default=d.serial_prefill,
      help="prefills of concurrent requests take turns on the GPU (as on a real one); "
           "--no-serial-prefill lets them overlap at no cost")
    a("--default-max-tokens", type=_positive(int), default=d.default_max_tokens)
    a("--embedding-dim", type=_positive(int), default=d.embedding_dim)
    a("--seed", type=int, default=d.seed)
    a("--api-key", default=None, help="require this bearer token (like vLLM's --api-key)")
    a("--access-log", action="store_true", help="log every request to stderr")
    a("--fail-rate", type=_fraction, default=d.fail_rate,
      help="fraction of inference requests answered 500")
    a("--crash-after", type=_positive(int), default=None,
      help="exit after answering this many inference requests")
    a("--crash-exit-code", type=int, default=d.crash_exit_code)
    a("--orphan-timeout", type=_positive(float), default=None,
      help="exit when no HTTP request at all (health checks included) arrived for this "
           "many wall-clock seconds: nobody supervises the replica any more")
    a("--slow-start", type=_positive(float, allow_zero=True), default=d.slow_start,
      help="seconds (wall clock) before /health answers 200")
    return p


def parse_args(argv: list[str] | None = None) -> SimConfig:
    ns = build_parser().parse_args(argv)
    values = vars(ns)
    names = values.pop("served_model_names") or [values["model"]]
    indices = values.pop("gpu_indices")
    weight_bytes = values.pop("weight_bytes")
    cfg = SimConfig(**values, served_model_names=names)
    cfg.gpu_indices = indices if indices is not None else list(range(cfg.tensor_parallel_size))
    cfg.weight_bytes = weight_bytes if weight_bytes is not None else 2.0 * cfg.parameters
    return cfg
