"""`/metrics` in the dialect of the engine the simulator stands in for.

Names follow each engine's own exporter, so the engine plugins' parsers read the simulator
exactly as they read the real thing:
- vLLM (V1): vllm:num_requests_running / _waiting, vllm:kv_cache_usage_perc (0–1),
  histograms vllm:time_to_first_token_seconds, vllm:e2e_request_latency_seconds,
  vllm:inter_token_latency_seconds, prefix caching as vllm:prefix_cache_queries_total /
  vllm:prefix_cache_hits_total (tokens); `vllm-v0` says vllm:gpu_cache_usage_perc and
  vllm:time_per_output_token_seconds and vllm:gpu_prefix_cache_hit_rate instead.
- TGI: tgi_queue_size, tgi_batch_current_size, tgi_request_duration, tgi_request_count …
- SGLang: sglang:num_running_reqs, sglang:num_queue_reqs, sglang:token_usage,
  sglang:cache_hit_rate, sglang:cached_tokens_total{cache_source="device"} …
- llama.cpp server: llamacpp:requests_processing, llamacpp:requests_deferred,
  llamacpp:kv_cache_usage_ratio.
- Ollama has no /metrics; the simulator still serves the GPU gauges below there.
Every dialect adds DCGM-like GPU gauges (DCGM_FI_DEV_GPU_UTIL, DCGM_FI_DEV_FB_USED per GPU)
and `a3s_sim_gpu_utilization_percent`, as a DCGM exporter beside the engine would.
"""

from __future__ import annotations

from a3s_engine_sim.state import EngineState, Histogram


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return "{" + inner + "}"


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(
        self, name: str, kind: str, help_: str, value: float, labels: dict[str, str]
    ) -> None:
        self.lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
        self.lines.append(f"{name}{_labels(labels)} {float(value)!r}")

    def series(
        self, name: str, kind: str, help_: str, rows: list[tuple[dict[str, str], float]]
    ) -> None:
        self.lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
        for labels, value in rows:
            self.lines.append(f"{name}{_labels(labels)} {float(value)!r}")

    def histogram(self, name: str, help_: str, h: Histogram, labels: dict[str, str]) -> None:
        self.lines += [f"# HELP {name} {help_}", f"# TYPE {name} histogram"]
        for bound, count in zip(h.buckets, h.counts, strict=True):
            self.lines.append(f"{name}_bucket{_labels({**labels, 'le': repr(bound)})} {count}.0")
        self.lines.append(f"{name}_bucket{_labels({**labels, 'le': '+Inf'})} {h.count}.0")
        self.lines.append(f"{name}_sum{_labels(labels)} {h.total!r}")
        self.lines.append(f"{name}_count{_labels(labels)} {h.count}.0")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _vllm(w: _Writer, s: EngineState, legacy: bool) -> None:
    lb = {"model_name": s.cfg.served_name, "engine": "0"}
    w.metric("vllm:num_requests_running", "gauge",
             "Number of requests in model execution batches.", len(s.running), lb)
    w.metric("vllm:num_requests_waiting", "gauge",
             "Number of requests waiting to be processed.", len(s.waiting), lb)
    kv = "vllm:gpu_cache_usage_perc" if legacy else "vllm:kv_cache_usage_perc"
    w.metric(kv, "gauge", "KV-cache usage. 1 means 100 percent usage.", s.kv_usage(), lb)
    w.metric("vllm:prompt_tokens_total", "counter", "Number of prefill tokens processed.",
             s.prompt_tokens_total, lb)
    w.metric("vllm:generation_tokens_total", "counter",
             "Number of generation tokens processed.", s.generation_tokens_total, lb)
    if legacy:  # V0 exported a rate; V1 exports the two counters (tokens)
        w.metric("vllm:gpu_prefix_cache_hit_rate", "gauge", "GPU prefix cache block hit rate.",
                 s.prefix.hit_rate(), lb)
    else:
        w.metric("vllm:prefix_cache_queries_total", "counter",
                 "Prefix cache queries, in terms of number of queried tokens.",
                 s.prefix.queries, lb)
        w.metric("vllm:prefix_cache_hits_total", "counter",
                 "Prefix cache hits, in terms of number of cached tokens.", s.prefix.hits, lb)
    w.series("vllm:request_success_total", "counter", "Count of successfully processed requests.",
             [({**lb, "finished_reason": r}, n) for r, n in sorted(s.success.items())])
    w.histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                s.ttft, lb)
    itl = "vllm:time_per_output_token_seconds" if legacy else "vllm:inter_token_latency_seconds"
    w.histogram(itl, "Histogram of time per output token in seconds.", s.itl, lb)
    w.histogram("vllm:e2e_request_latency_seconds",
                "Histogram of end to end request latency in seconds.", s.e2e, lb)
    w.histogram("vllm:request_queue_time_seconds",
                "Histogram of time spent in WAITING phase for request.", s.queue_time, lb)


def _tgi(w: _Writer, s: EngineState) -> None:
    w.metric("tgi_queue_size", "gauge", "Current queue size", len(s.waiting), {})
    w.metric("tgi_batch_current_size", "gauge", "Current batch size", len(s.running), {})
    w.metric("tgi_batch_current_max_tokens", "gauge", "Maximum tokens for the current batch",
             s.context_tokens(), {})
    w.metric("tgi_request_count", "counter", "Total number of requests", s.requests_total, {})
    w.metric("tgi_request_success", "counter", "Number of successful requests",
             sum(s.success.values()), {})
    w.metric("tgi_request_failure", "counter", "Number of failed requests", s.failures, {})
    w.histogram("tgi_request_duration", "Total time spent processing the request", s.e2e, {})
    w.histogram("tgi_request_queue_duration", "Time spent in the queue per request",
                s.queue_time, {})
    w.histogram("tgi_request_mean_time_per_token_duration", "Mean time per token per request",
                s.itl, {})


def _sglang(w: _Writer, s: EngineState) -> None:
    lb = {"model_name": s.cfg.served_name}
    w.metric("sglang:num_running_reqs", "gauge", "The number of running requests",
             len(s.running), lb)
    w.metric("sglang:num_queue_reqs", "gauge", "The number of requests in the waiting queue",
             len(s.waiting), lb)
    w.metric("sglang:token_usage", "gauge", "The token usage", s.kv_usage(), lb)
    w.metric("sglang:num_used_tokens", "gauge", "The number of used tokens",
             s.context_tokens(), lb)
    w.metric("sglang:prompt_tokens_total", "counter", "Number of prefill tokens processed.",
             s.prompt_tokens_total, lb)
    w.metric("sglang:generation_tokens_total", "counter",
             "Number of generation tokens processed.", s.generation_tokens_total, lb)
    w.metric("sglang:cache_hit_rate", "gauge", "The prefix cache hit rate.",
             s.prefix.hit_rate(), lb)
    w.series("sglang:cached_tokens_total", "counter",
             "Number of cached prompt tokens by source.",
             [({**lb, "cache_source": "device"}, s.prefix.hits)])
    w.histogram("sglang:time_to_first_token_seconds",
                "Histogram of time to first token in seconds.", s.ttft, lb)
    w.histogram("sglang:e2e_request_latency_seconds",
                "Histogram of End-to-end request latency in seconds", s.e2e, lb)


def _llamacpp(w: _Writer, s: EngineState) -> None:
    w.metric("llamacpp:requests_processing", "gauge", "Number of requests processing.",
             len(s.running), {})
    w.metric("llamacpp:requests_deferred", "gauge", "Number of requests deferred.",
             len(s.waiting), {})
    w.metric("llamacpp:kv_cache_usage_ratio", "gauge", "KV-cache usage. 1 means 100 percent usage.",
             s.kv_usage(), {})
    w.metric("llamacpp:prompt_tokens_total", "counter", "Number of prompt tokens processed.",
             s.prompt_tokens_total, {})
    w.metric("llamacpp:tokens_predicted_total", "counter", "Number of generation tokens processed.",
             s.generation_tokens_total, {})


def _gpu(w: _Writer, s: EngineState) -> None:
    util = s.gpu_utilization()
    tp = s.cfg.tensor_parallel_size
    used_mib = (s.cfg.weight_bytes + s.kv_used_bytes()) / tp / (1024 * 1024)
    # vLLM preallocates its KV cache, so the framebuffer looks full from the first second.
    fb_used = max(used_mib, s.cfg.gpu_memory_mib * s.cfg.gpu_memory_utilization)
    per_gpu = [
        {"gpu": str(i), "modelName": s.cfg.gpu, "Hostname": "sim"} for i in s.cfg.gpu_indices
    ]
    w.series("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).",
             [(lb, util) for lb in per_gpu])
    w.series("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).",
             [(lb, round(fb_used)) for lb in per_gpu])
    w.metric("a3s_sim_gpu_utilization_percent", "gauge",
             "Simulated GPU utilisation of this replica's GPUs (percent).", util,
             {"model_name": s.cfg.served_name})


def render(state: EngineState) -> str:
    w = _Writer()
    dialect = state.cfg.dialect
    if dialect in ("vllm", "vllm-v0"):
        _vllm(w, state, legacy=dialect == "vllm-v0")
    elif dialect == "tgi":
        _tgi(w, state)
    elif dialect == "sglang":
        _sglang(w, state)
    elif dialect == "llamacpp":
        _llamacpp(w, state)
    _gpu(w, state)
    return w.text()
