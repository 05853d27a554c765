"""Reading an engine's Prometheus text into numbers, summed over label sets (public:
engine plugins use it in `parse_metrics`)."""

from __future__ import annotations

import math
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families


class Samples:
    """Every sample value by metric name. A counter is findable under its family name as
    well as its sample name (`te_request_count` and `te_request_count_total`), because
    exporters disagree on the `_total` suffix and the parser adds it."""

    def __init__(self, values: dict[str, list[float]]) -> None:
        self._values = values

    @classmethod
    def parse(cls, text: str, engine: str) -> Samples:
        values: dict[str, list[float]] = defaultdict(list)
        try:
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if math.isnan(sample.value):
                        continue
                    values[sample.name].append(sample.value)
                    if sample.name == family.name + "_total":
                        values[family.name].append(sample.value)
        except (ValueError, IndexError, KeyError) as exc:
            raise ValueError(f"{engine} /metrics is not Prometheus text exposition: {exc}") from exc
        return cls(dict(values))

    def has(self, name: str) -> bool:
        return name in self._values

    def total(self, *names: str) -> float | None:
        """The sum over label sets of the first name present (older names last)."""
        for name in names:
            if name in self._values:
                return sum(self._values[name])
        return None

    def mean(self, *names: str) -> float | None:
        """The mean over label sets of the first name present: for ratios such as KV-cache
        usage, where one series per engine core / data-parallel rank must not add up."""
        for name in names:
            if vals := self._values.get(name):
                return sum(vals) / len(vals)
        return None
