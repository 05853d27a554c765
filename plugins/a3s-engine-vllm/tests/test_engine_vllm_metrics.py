"""vLLM /metrics → waiting, running, KV-cache usage, under both metric generations."""

from __future__ import annotations

from pathlib import Path

import pytest
from a3s_engine_vllm import VllmEngine

HERE = Path(__file__).parent


def test_v1_engine_metrics_with_kv_cache_usage_perc() -> None:
    figures = VllmEngine().parse_metrics((HERE / "vllm_metrics_v0_11.txt").read_text())
    assert figures.waiting == 3
    assert figures.running == 7
    assert figures.kv_cache_usage == pytest.approx(0.4215)
    assert figures.gpu_utilization is None


def test_older_images_report_gpu_cache_usage_perc() -> None:
    figures = VllmEngine().parse_metrics((HERE / "vllm_metrics_v0_6.txt").read_text())
    assert (figures.waiting, figures.running) == (5, 12)
    assert figures.kv_cache_usage == pytest.approx(0.8731)


def test_transition_releases_emit_both_names_and_the_new_one_wins() -> None:
    text = """\
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.10
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
"""
    assert VllmEngine().parse_metrics(text).kv_cache_usage == pytest.approx(0.25)


def test_data_parallel_engines_sum_queues_and_average_cache_usage() -> None:
    text = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 4.0
vllm:num_requests_running{engine="1",model_name="m"} 6.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 1.0
vllm:num_requests_waiting{engine="1",model_name="m"} 2.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.2
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.6
"""
    figures = VllmEngine().parse_metrics(text)
    assert (figures.running, figures.waiting) == (10, 3)
    assert figures.kv_cache_usage == pytest.approx(0.4)


def test_missing_metrics_are_unknown_not_zero() -> None:
    figures = VllmEngine().parse_metrics("# TYPE process_cpu_seconds_total counter\n")
    assert figures.waiting is None and figures.running is None and figures.kv_cache_usage is None


def test_garbage_is_an_error_naming_the_engine() -> None:
    with pytest.raises(ValueError, match="vllm /metrics"):
        VllmEngine().parse_metrics('vllm:num_requests_running{engine="0" 3\n')
