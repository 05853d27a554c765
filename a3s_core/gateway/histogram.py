"""A mergeable latency histogram: fixed log-spaced buckets, sparse counts.

Gateways publish their first-byte latencies as these (publish.py) and the control plane
adds them up across gateways and time slots (a3s_core/scaling/fleet.py) before taking a
percentile, which exact samples cannot do without shipping every sample.

Resolution: 16 buckets per doubling (each bucket's upper bound is 2^(1/16) ≈ 1.0443 × its
lower bound) from 1 ms to 2^14 ms (16.4 s) … up to 2^20 ms (about 17.5 minutes); below
1 ms is one bucket, above the top another. A percentile is reported as the geometric
middle of its bucket, so it is within ±2.2 % of the true sample (exact at the ends: a
0.5 ms P99 reads as 1 ms at most, anything over 17.5 min as the top bound). The counts
are stored sparse (`{bucket: count}`), so a histogram of latencies that cluster costs a
few dozen entries, not 321.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections import Counter
from collections.abc import Iterable, Mapping

PER_DOUBLING = 16
BASE_S = 0.001
DOUBLINGS = 20
TOP = PER_DOUBLING * DOUBLINGS + 1  # the bucket of everything above the top bound
_LOG_STEP = math.log(2) / PER_DOUBLING


def bucket_of(seconds: float) -> int:
    """0: under 1 ms; i ≥ 1: [BASE·2^((i-1)/16), BASE·2^(i/16)); TOP: above the range."""
    if seconds < BASE_S:
        return 0
    i = int(math.log(seconds / BASE_S) / _LOG_STEP) + 1
    return min(i, TOP)


def _edges() -> list[float]:
    """The least float of each bucket 1..TOP as `bucket_of` places it: found by stepping
    from the ideal bound a few floats down, then up, so that `bisect_right` over the list
    answers exactly what `bucket_of` does (rounding in the log included) without a log."""
    out = []
    for i in range(1, TOP + 1):
        at = BASE_S * 2.0 ** ((i - 1) / PER_DOUBLING)
        while bucket_of(at) >= i:
            at = math.nextafter(at, 0.0)
        while bucket_of(at) < i:
            at = math.nextafter(at, math.inf)
        out.append(at)
    return out


_EDGES = _edges()
_bucket_of_finite = functools.partial(bisect.bisect_right, _EDGES)


def bucket_value(i: int) -> float:
    """The figure a percentile in bucket `i` is reported as (the bucket's geometric
    middle; its upper bound at the bottom, its lower bound at the top)."""
    if i <= 0:
        return BASE_S
    if i >= TOP:
        return BASE_S * 2.0**DOUBLINGS
    return BASE_S * math.exp((i - 0.5) * _LOG_STEP)


class Histogram:
    """Bucket counts; `add`, `merge`, `percentile`. Not thread-safe (one owner at a time)."""

    __slots__ = ("counts",)

    def __init__(self, counts: Mapping[int, int] | None = None) -> None:
        self.counts: dict[int, int] = dict(counts or {})

    def add(self, seconds: float, n: int = 1) -> None:
        i = bucket_of(seconds)
        self.counts[i] = self.counts.get(i, 0) + n

    def add_all(self, values: Iterable[float]) -> None:
        """As `add` for each value, at a fraction of its cost (a publisher adds thousands a
        round): buckets by bisection over the edges and counts them in C."""
        values = list(values)
        if not math.isfinite(sum(values)):  # NaN/inf: `add` raises as it always did
            for v in values:
                self.add(v)
            return
        counts = self.counts
        for i, n in Counter(map(_bucket_of_finite, values)).items():
            counts[i] = counts.get(i, 0) + n

    def merge(self, other: Histogram | Mapping[int, int]) -> None:
        counts = other.counts if isinstance(other, Histogram) else other
        for i, n in counts.items():
            self.counts[i] = self.counts.get(i, 0) + n

    @property
    def count(self) -> int:
        return sum(self.counts.values())

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile (None when empty), as `latency.percentile` ranks."""
        total = self.count
        if total == 0:
            return None
        rank = max(1, math.ceil(q / 100 * total))
        seen = 0
        for i in sorted(self.counts):
            seen += self.counts[i]
            if seen >= rank:
                return bucket_value(i)
        return bucket_value(max(self.counts))  # unreachable: the counts add up to total

    def to_json(self) -> dict[str, int]:
        """JSON object keys are strings."""
        return {str(i): n for i, n in self.counts.items() if n}

    @classmethod
    def from_json(cls, data: Mapping[str, object] | None) -> Histogram:
        """Tolerant of a row written by another version: bad entries are skipped."""
        out = cls()
        for k, v in (data or {}).items():
            try:
                i, n = int(k), int(v)  # type: ignore[call-overload]
            except (TypeError, ValueError):
                continue
            if n > 0:
                i = min(max(i, 0), TOP)
                out.counts[i] = out.counts.get(i, 0) + n
        return out
