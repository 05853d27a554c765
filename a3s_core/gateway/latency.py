"""Sliding-window latency samples with percentiles on demand.

Samples are appended in time order, so expiry pops from the left, on append, so only the
event loop mutates a window. Percentiles sort a copy only when asked (the API and the
autoscaler ask every few seconds, requests append thousands of times a second). The window
is bounded in samples too, so a flood cannot grow memory without limit.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque


class LatencyWindow:
    def __init__(self, window_s: float = 60.0, max_samples: int = 50_000) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_samples)

    def add(self, seconds: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        samples = self._samples
        samples.append((now, seconds))
        cutoff = now - self.window_s
        while samples[0][0] < cutoff:  # expiry happens here only, on the event loop
            samples.popleft()

    def values(self, now: float | None = None, since: float | None = None) -> list[float]:
        """The samples of the window (only those taken at or after `since`, a monotonic
        time, when given). Reads a copy (list() of a deque is one C call under the GIL),
        so the API may ask from a worker thread while the loop appends."""
        cutoff = (time.monotonic() if now is None else now) - self.window_s
        if since is not None:
            cutoff = max(cutoff, since)
        return [v for t, v in list(self._samples) if t >= cutoff]

    def between(self, after: float, upto: float) -> list[tuple[float, float]]:
        """The (time, value) samples taken in (after, upto], oldest first: what a publisher
        has not seen yet (publish.py). Any thread: one C-level copy, then two bisections."""
        samples = list(self._samples)
        lo = bisect.bisect_right(samples, after, key=_time)
        hi = bisect.bisect_right(samples, upto, lo, key=_time)
        return samples[lo:hi]

    def count(self, now: float | None = None) -> int:
        """How many samples the window holds now. By bisection on a copy: the workers'
        shared book counts every window on the event loop each scrape round, and a pass
        over a full window (50,000 samples) was a 1.3 ms stall of every request."""
        cutoff = (time.monotonic() if now is None else now) - self.window_s
        samples = list(self._samples)
        return len(samples) - bisect.bisect_left(samples, cutoff, key=_time)

    def summary(self, now: float | None = None) -> dict[str, float | int | None]:
        values = sorted(self.values(now))
        return {
            "count": len(values),
            "p50_s": percentile(values, 50),
            "p99_s": percentile(values, 99),
        }


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _time(sample: tuple[float, float]) -> float:
    return sample[0]
