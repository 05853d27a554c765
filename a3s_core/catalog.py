"""The GPU catalog, loaded from data (`data/gpus.toml`, or a file named in settings)."""

from __future__ import annotations

import tomllib
from functools import lru_cache
from importlib import resources
from pathlib import Path

from a3s_core.types import GpuType


class GpuCatalog:
    def __init__(self, gpus: list[GpuType]) -> None:
        self.gpus = list(gpus)
        self._by_name = {g.name.lower(): g for g in gpus}
        self._by_label = {lbl.lower(): g for g in gpus for lbl in g.product_labels}

    @classmethod
    def from_toml(cls, text: str) -> GpuCatalog:
        return cls([GpuType(**row) for row in tomllib.loads(text)["gpu"]])

    def get(self, name: str) -> GpuType | None:
        """By catalog name (`A100-80GB`), product label (`NVIDIA-A100-SXM4-80GB`), or a
        loose spelling (`a100-80g`, `H100`)."""
        key = name.lower()
        hit = self._by_name.get(key) or self._by_label.get(key)
        if hit:
            return hit
        # Loose: a unique catalog entry whose name starts with the given prefix.
        loose = [g for n, g in self._by_name.items() if n.startswith(key.removesuffix("gb"))]
        return loose[0] if len(loose) == 1 else None

    def from_label(self, label: str, memory_mib: int | None = None) -> GpuType | None:
        """A node label value → catalog entry; unknown labels fall back to a family match
        by memory (e.g. a new A100 variant with 80 GiB)."""
        hit = self._by_label.get(label.lower()) or self._by_name.get(label.lower())
        if hit or memory_mib is None:
            return hit
        for g in self.gpus:
            family = g.name.split("-")[0].lower()
            if family in label.lower() and abs(g.memory_mib - memory_mib) <= 0.05 * g.memory_mib:
                return g
        return None

    def names(self) -> list[str]:
        return [g.name for g in self.gpus]


@lru_cache(maxsize=8)
def load_catalog(path: str | None = None) -> GpuCatalog:
    if path:
        return GpuCatalog.from_toml(Path(path).read_text())
    text = resources.files("a3s_core").joinpath("data/gpus.toml").read_text()
    return GpuCatalog.from_toml(text)
