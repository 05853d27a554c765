"""TGI and TEI /metrics → waiting and running."""

from __future__ import annotations

from pathlib import Path

from a3s_engine_tgi import TgiEngine

HERE = Path(__file__).parent


def test_tgi_queue_and_batch() -> None:
    figures = TgiEngine().parse_metrics((HERE / "tgi_metrics_v3.txt").read_text())
    assert figures.waiting == 9
    assert figures.running == 24
    assert figures.kv_cache_usage is None  # TGI does not expose it


def test_tei_queue_and_requests_in_flight() -> None:
    figures = TgiEngine().parse_metrics((HERE / "tei_metrics_v1_8.txt").read_text())
    assert figures.waiting == 17
    # 160 accepted − 153 succeeded − 2 failed
    assert figures.running == 5


def test_tei_before_any_request_exposes_nothing() -> None:
    # TEI's exporter prints nothing until a request was measured.
    figures = TgiEngine().parse_metrics("")
    assert figures.waiting is None and figures.running is None
