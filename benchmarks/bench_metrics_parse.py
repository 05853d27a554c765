"""What reading a replica's /metrics costs the gateway, which scrapes every ready replica
every half second on its event loop: `Samples.parse` (all names, and only the names a
plugin reads) against prometheus_client's parser, on the same pages, in one run.

    /work/venv/bin/python benchmarks/bench_metrics_parse.py

Pages: the recorded engine pages under plugins/*/tests/, and a synthetic vLLM page the
size a busy server exposes (the v0.11 gauges plus 12 latency histograms of 30 buckets, for
2 engine cores): about 800 lines.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from a3s_core.contracts.metrics import Samples

ROOT = Path(__file__).resolve().parents[1]
VLLM_NAMES = ("vllm:num_requests_waiting", "vllm:num_requests_running",
              "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")


def synthetic_vllm_page() -> str:
    base = (ROOT / "plugins/a3s-engine-vllm/tests/vllm_metrics_v0_11.txt").read_text()
    lines = [base]
    histograms = ["time_to_first_token_seconds", "inter_token_latency_seconds",
                  "e2e_request_latency_seconds", "request_queue_time_seconds",
                  "request_inference_time_seconds", "request_prefill_time_seconds",
                  "request_decode_time_seconds", "request_prompt_tokens",
                  "request_generation_tokens", "iteration_tokens_total",
                  "request_max_num_generation_tokens", "request_params_max_tokens"]
    for h in histograms:
        lines.append(f"# HELP vllm:{h} Histogram of {h}.\n# TYPE vllm:{h} histogram")
        for engine in range(2):
            labels = f'engine="{engine}",model_name="Qwen/Qwen2.5-72B-Instruct-AWQ"'
            for i in range(30):
                le = "+Inf" if i == 29 else f"{0.001 * 2 ** i:.6g}"
                lines.append(f'vllm:{h}_bucket{{{labels},le="{le}"}} {i * 17.0}')
            lines.append(f"vllm:{h}_count{{{labels}}} 493.0")
            lines.append(f"vllm:{h}_sum{{{labels}}} 1234.5")
    return "\n".join(lines) + "\n"


def prometheus_client_parse(text: str) -> int:
    n = 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not math.isnan(sample.value):
                n += 1
    return n


def per_call_us(fn: Callable[[], object], budget_s: float = 0.5) -> float:
    fn()
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < budget_s:
        fn()
        calls += 1
    return elapsed / calls * 1e6


def main() -> None:
    pages = {p.parent.parent.name + "/" + p.name: p.read_text()
             for p in sorted(ROOT.glob("plugins/*/tests/*metrics*.txt"))}
    pages["synthetic busy vLLM"] = synthetic_vllm_page()
    print(f"{'page':44} {'lines':>5} {'prometheus_client':>18} {'Samples.parse':>14} "
          f"{'with names':>11} {'speed-up':>9}")
    for name, text in pages.items():
        ref = per_call_us(lambda t=text: prometheus_client_parse(t))  # type: ignore[misc]
        ours = per_call_us(lambda t=text: Samples.parse(t, "bench"))  # type: ignore[misc]
        named = per_call_us(lambda t=text: Samples.parse(t, "bench", VLLM_NAMES))  # type: ignore[misc]
        print(f"{name:44} {text.count(chr(10)):>5} {ref:>15.0f} µs {ours:>11.0f} µs "
              f"{named:>8.0f} µs {ref / named:>8.1f}x")
    busy = pages["synthetic busy vLLM"]
    cost = per_call_us(lambda: Samples.parse(busy, "bench", VLLM_NAMES)) / 1e6
    print(f"\nbusy vLLM page, names given: 100 replicas scraped every 0.5 s cost the gateway "
          f"{cost * 100 / 0.5 * 100:.1f}% of one core (prometheus_client: "
          f"{per_call_us(lambda: prometheus_client_parse(busy)) / 1e6 * 100 / 0.5 * 100:.0f}%)")


if __name__ == "__main__":
    main()
