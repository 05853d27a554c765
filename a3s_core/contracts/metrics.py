"""Reading an engine's Prometheus text into numbers, summed over label sets (public:
engine plugins use it in `parse_metrics`).

The gateway scrapes every ready replica every half second, on its event loop, and a vLLM
page is hundreds of lines of histogram buckets of which a balancer needs three gauges. So
this is a line scanner rather than prometheus_client's character-by-character parser
(about 20x slower on a real vLLM page: benchmarks/bench_metrics_parse.py), and given the
`names` a plugin reads, it skips every other line after looking at its name only.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

# A metric name starts with a letter, "_" or ":" (the exposition format's rule).
_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_:")


class Samples:
    """Every sample value by metric name. A counter is findable under its family name as
    well as its sample name (`te_request_count` and `te_request_count_total`), because
    exporters disagree on the `_total` suffix."""

    def __init__(self, values: dict[str, list[float]]) -> None:
        self._values = values

    @classmethod
    def parse(cls, text: str, engine: str, names: Iterable[str] | None = None) -> Samples:
        """Parse Prometheus text exposition. With `names`, only those metrics (and their
        `_total` counter samples) are read: other lines are passed over after one C-level
        prefix test, and `has`/`total`/`mean` know nothing else. Raises ValueError, naming
        the engine and the line, on text that is not Prometheus exposition (an HTML error
        page, say)."""
        prefixes = tuple(_spellings(names)) if names is not None else None
        counters: set[str] = set()
        values: dict[str, list[float]] = defaultdict(list)
        checked = False  # with names, only the first line's shape is checked
        for number, raw in enumerate(text.splitlines(), 1):
            if prefixes is not None and checked and not raw.startswith(prefixes):
                if raw.startswith("# TYPE ") and raw.endswith("counter"):
                    counters.add(raw.split()[2].removesuffix("_total"))
                continue
            line = raw.strip()
            if not line:
                continue
            checked = True
            if line[0] == "#":
                parts = line.split(None, 3)
                if len(parts) == 4 and parts[1] == "TYPE" and parts[3] == "counter":
                    counters.add(parts[2].removesuffix("_total"))
                continue
            if line[0] not in _NAME_START:
                raise _bad(engine, number, raw)
            brace, space = line.find("{"), line.find(" ")
            if brace != -1 and (space == -1 or brace < space):
                name, rest = line[:brace], line[brace:]
            elif space != -1:
                name, rest = line[:space], line[space:]
            else:
                name, rest = line, ""
            if prefixes is None or name in prefixes:
                _add(values, counters, name, rest, engine, number)
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


def _add(
    values: dict[str, list[float]], counters: set[str], name: str, rest: str, engine: str,
    number: int,
) -> None:
    """One sample line: `rest` is what follows the name (labels, value, timestamp)."""
    if rest[:1] == "{":
        end = rest.rfind("}")
        if end == -1:
            raise _bad(engine, number, name + rest)
        fields = rest[end + 1 :].split()
    else:
        fields = rest.split()
    if not fields or len(fields) > 2:
        raise _bad(engine, number, name + rest)
    try:
        value = float(fields[0])
    except ValueError:
        raise _bad(engine, number, name + rest) from None
    if math.isnan(value):
        return
    values[name].append(value)
    # A counter answers to both spellings, whichever one the exporter used.
    if name in counters:
        values[name + "_total"].append(value)
    elif name.endswith("_total") and name[:-6] in counters:
        values[name[:-6]].append(value)


def _spellings(names: Iterable[str]) -> frozenset[str]:
    """The names and their other counter spelling (with or without `_total`)."""
    out = set(names)
    return frozenset(out | {n + "_total" for n in out} | {n.removesuffix("_total") for n in out})


def _bad(engine: str, number: int, line: str) -> ValueError:
    shown = line if len(line) <= 80 else line[:77] + "..."
    return ValueError(
        f"{engine} /metrics is not Prometheus text exposition: line {number}: {shown!r}"
    )
