"""GPU utilisation and memory from NVIDIA DCGM exporters (optional)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

UTIL = "DCGM_FI_DEV_GPU_UTIL"  # percent
FB_USED = "DCGM_FI_DEV_FB_USED"  # MiB
# dcgm-exporter labels the node as Hostname; a Prometheus relabel often adds one of these.
NODE_LABELS = ("Hostname", "kubernetes_node", "node")


@dataclass
class GpuStats:
    utilization: float | None = None
    memory_used_bytes: int | None = None


GpuKey = tuple[str, int]  # (node name, GPU index as dcgm-exporter's `gpu` label)


def parse_dcgm(text: str, node: str | None = None) -> dict[GpuKey, GpuStats]:
    """Prometheus text from a dcgm-exporter → stats per (node, gpu). `node`, when the
    exporter's node is known (a discovered pod), wins over the labels."""
    out: dict[GpuKey, GpuStats] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in (UTIL, FB_USED):
            continue
        for sample in family.samples:
            host = node or next(
                (sample.labels[k] for k in NODE_LABELS if sample.labels.get(k)), None
            )
            gpu = sample.labels.get("gpu")
            if host is None or gpu is None or not gpu.isdigit():
                continue
            stats = out.setdefault((host, int(gpu)), GpuStats())
            if family.name == UTIL:
                stats.utilization = float(sample.value)
            else:
                stats.memory_used_bytes = int(sample.value * 1024 * 1024)
    return out


async def scrape(
    urls: list[str] | dict[str, str | None], timeout_s: float
) -> dict[GpuKey, GpuStats]:
    """Every exporter at once (a list of URLs, or URL → its node); one that fails is logged
    and left out (utilisation is a nice-to-have; the inventory must not fail for it)."""
    if not urls:
        return {}
    nodes: dict[str, str | None] = urls if isinstance(urls, dict) else dict.fromkeys(urls)
    urls = list(nodes)
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        results = await asyncio.gather(*(client.get(u) for u in urls), return_exceptions=True)
    merged: dict[GpuKey, GpuStats] = {}
    for url, result in zip(urls, results, strict=True):
        if isinstance(result, BaseException):
            log.warning("DCGM exporter %s unreachable: %s", url, result)
            continue
        if result.status_code != 200:
            log.warning("DCGM exporter %s answered HTTP %s", url, result.status_code)
            continue
        try:
            merged.update(parse_dcgm(result.text, nodes[url]))
        except ValueError as exc:
            log.warning("DCGM exporter %s sent unparsable metrics: %s", url, exc)
    return merged
