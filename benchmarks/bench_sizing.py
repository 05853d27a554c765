"""Time to size a model from cache: `plugins.model_profile` (the in-process profile cache)
plus `plugins.size` over the whole GPU catalog. Target: under 5 ms per model.

    python benchmarks/bench_sizing.py [--repeat 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

from a3s_core.catalog import load_catalog
from a3s_core.plugins import Plugins, build_plugin_manager
from a3s_core.types import ModelSpec

CASES = [
    ("Qwen/Qwen2.5-72B-Instruct", "none"),
    ("Qwen/Qwen2.5-72B-Instruct", "awq"),
    ("meta-llama/Llama-3.1-8B-Instruct", "none"),
    ("deepseek-ai/DeepSeek-V3", "none"),
    ("BAAI/bge-large-zh-v1.5", "none"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    plugins = Plugins(build_plugin_manager(load_entry_points=False))
    gpus = load_catalog().gpus
    print(f"{'model':40} {'quant':6} {'median ms':>10} {'p99 ms':>8}  (profile from cache + plan "
          f"over {len(gpus)} GPU types, {args.repeat} runs)")
    worst = 0.0
    for model, quant in CASES:
        spec = ModelSpec(name="bench", model=model, quantization=quant)
        plugins.size(plugins.model_profile(model), spec, gpus)  # warm the cache
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            plugins.size(plugins.model_profile(model), spec, gpus)
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        med, p99 = statistics.median(times), times[int(0.99 * (len(times) - 1))]
        worst = max(worst, med)
        print(f"{model:40} {quant:6} {med:10.3f} {p99:8.3f}")
    print(f"worst median {worst:.3f} ms — target < 5 ms: {'met' if worst < 5 else 'NOT met'}")


if __name__ == "__main__":
    main()
