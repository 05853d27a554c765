"""`gateway/latency.py`: the sliding window's count agrees with its samples."""

from __future__ import annotations

from a3s_core.gateway.latency import LatencyWindow


def test_count_is_the_number_of_samples_in_the_window_at_any_time() -> None:
    w = LatencyWindow(window_s=10.0)
    for i in range(200):
        w.add(0.1, 1000.0 + i * 0.125)  # 1000.0 … 1024.875 (exact), expiring as they come
    for now in (1024.875, 1020.0, 1015.0625, 1030.0, 1034.875, 1035.0, 2000.0):
        assert w.count(now) == len(w.values(now)), now
    assert w.count(1024.875) == 81  # 1014.875 … 1024.875: a sample at the cutoff counts
    assert w.count(1035.0) == 0 and LatencyWindow().count() == 0
