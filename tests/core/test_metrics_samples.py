"""`Samples.parse`, the Prometheus text reader every engine plugin's parse_metrics uses:
it must agree with prometheus_client's parser on real engine pages, read only what a
plugin names when asked to, and refuse text that is not exposition format."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from a3s_core.contracts.metrics import Samples

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "plugins").glob("*/tests/*metrics*.txt"))

PAGE = """\
# HELP te_request_count Total requests
# TYPE te_request_count counter
te_request_count_total{method="batch"} 3
te_request_count_total{method="single"} 4
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="a model {with} braces"} 2
vllm:num_requests_waiting{engine="1",model_name="b"} 5 1700000000000
vllm:kv_cache_usage_perc{engine="0"} 0.25
vllm:kv_cache_usage_perc{engine="1"} 0.75
vllm:kv_cache_usage_perc{engine="2"} NaN
plain_gauge 7
inf_gauge +Inf
"""


def reference(text: str) -> dict[str, float]:
    """Sums per sample name as prometheus_client reads them."""
    sums: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not math.isnan(sample.value):
                sums[sample.name] += sample.value
    return dict(sums)


@pytest.mark.parametrize("page", PAGES, ids=[p.parent.parent.name + "/" + p.name for p in PAGES])
def test_agrees_with_prometheus_client_on_real_engine_pages(page: Path) -> None:
    text = page.read_text()
    samples = Samples.parse(text, "test")
    expected = reference(text)
    assert expected, "the page has samples"
    for name, total in expected.items():
        assert samples.total(name) == pytest.approx(total), name


def test_sums_means_counters_labels_and_timestamps() -> None:
    s = Samples.parse(PAGE, "test")
    assert s.total("vllm:num_requests_waiting") == 7  # braces in a label value, a timestamp
    assert s.mean("vllm:kv_cache_usage_perc") == 0.5  # NaN is no sample
    assert s.total("te_request_count") == 7 == s.total("te_request_count_total")
    assert s.total("plain_gauge") == 7
    assert s.total("inf_gauge") == math.inf
    assert s.total("absent", "plain_gauge") == 7  # the first name present
    assert s.total("absent") is None and not s.has("absent")


def test_names_reads_only_what_is_asked() -> None:
    s = Samples.parse(PAGE, "test", names=["vllm:num_requests_waiting", "te_request_count"])
    assert s.total("vllm:num_requests_waiting") == 7
    assert s.total("te_request_count") == 7
    assert not s.has("plain_gauge") and not s.has("vllm:kv_cache_usage_perc")


@pytest.mark.parametrize("text", [
    "<html><body>502 Bad Gateway</body></html>",
    "vllm:num_requests_waiting{engine=\"0\"} lots",
    "vllm:num_requests_waiting{engine=\"0\"",
    "vllm:num_requests_waiting",
    "vllm:num_requests_waiting 1 2 3",
])
def test_text_that_is_not_exposition_names_the_engine_and_line(text: str) -> None:
    with pytest.raises(ValueError, match=r"vllm /metrics is not Prometheus text exposition: "
                                         r"line 2"):
        Samples.parse("# a comment\n" + text, "vllm", names=["vllm:num_requests_waiting"]
                      if text.startswith("vllm") else None)
