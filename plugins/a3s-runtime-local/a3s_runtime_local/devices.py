"""This machine's devices: NVIDIA GPUs through NVML (`nvidia-ml-py`, imported lazily), and
the CPU and RAM for engines that run without a GPU."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class GpuInfo:
    index: int
    name: str
    memory_mib: int
    utilization: float | None
    memory_used_bytes: int | None

    @property
    def product_label(self) -> str:
        """NVML's name as GPU feature discovery writes it (`nvidia.com/gpu.product`)."""
        return self.name.replace(" ", "-")


class Nvml:
    """A lazily initialised NVML session. `reason` says why there are no GPUs."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self.reason = ""

    def open(self) -> bool:
        if self._nvml is not None:
            return True
        try:
            import pynvml
        except ImportError:
            self.reason = "nvidia-ml-py (pynvml) is not installed"
            return False
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            self.reason = f"NVML unavailable: {exc}"
            return False
        self._nvml = pynvml
        return True

    def gpus(self) -> list[GpuInfo]:
        if not self.open():
            return []
        nv = self._nvml
        out: list[GpuInfo] = []
        try:
            count = nv.nvmlDeviceGetCount()
        except nv.NVMLError as exc:
            self.reason = f"NVML cannot count devices: {exc}"
            return []
        if count == 0:
            self.reason = "NVML reports no GPU"
        for i in range(count):
            handle = nv.nvmlDeviceGetHandleByIndex(i)
            name = nv.nvmlDeviceGetName(handle)
            if isinstance(name, bytes):  # older bindings return bytes
                name = name.decode()
            memory = nv.nvmlDeviceGetMemoryInfo(handle)
            try:
                util: float | None = float(nv.nvmlDeviceGetUtilizationRates(handle).gpu)
            except nv.NVMLError:  # not supported on some boards / MIG
                util = None
            out.append(GpuInfo(i, str(name), int(memory.total) // (1024 * 1024), util,
                               int(memory.used)))
        return out

    def close(self) -> None:
        if self._nvml is not None:
            with contextlib.suppress(self._nvml.NVMLError):
                self._nvml.nvmlShutdown()
            self._nvml = None


def host_memory_bytes() -> int | None:
    """Total RAM: /proc/meminfo where there is one, else sysconf."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
