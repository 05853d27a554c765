"""SGLang /metrics → waiting, running, KV token-pool usage."""

from __future__ import annotations

from pathlib import Path

import pytest
from a3s_engine_sglang import SglangEngine

HERE = Path(__file__).parent


def test_realistic_metrics_page() -> None:
    figures = SglangEngine().parse_metrics((HERE / "sglang_metrics_v0_5.txt").read_text())
    assert figures.waiting == 6
    assert figures.running == 14
    assert figures.kv_cache_usage == pytest.approx(0.57)


def test_data_parallel_ranks_sum_queues_and_average_usage() -> None:
    text = """\
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{dp_rank="0",model_name="m"} 3.0
sglang:num_running_reqs{dp_rank="1",model_name="m"} 5.0
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{dp_rank="0",model_name="m"} 0.0
sglang:num_queue_reqs{dp_rank="1",model_name="m"} 2.0
# TYPE sglang:token_usage gauge
sglang:token_usage{dp_rank="0",model_name="m"} 0.1
sglang:token_usage{dp_rank="1",model_name="m"} 0.3
"""
    figures = SglangEngine().parse_metrics(text)
    assert (figures.running, figures.waiting) == (8, 2)
    assert figures.kv_cache_usage == pytest.approx(0.2)


def test_metrics_not_enabled_means_unknown() -> None:
    figures = SglangEngine().parse_metrics("")
    assert figures.waiting is None and figures.running is None
