"""The cluster as every runtime reports it, and what the scheduler decides."""

from __future__ import annotations

from pydantic import BaseModel, Field


class GpuDevice(BaseModel):
    index: int
    utilization: float | None = Field(None, description="percent, 0–100, where known")
    memory_used_bytes: int | None = None
    allocated_to: str | None = Field(None, description="replica id holding this GPU, if any")


class Node(BaseModel):
    """A machine that can host replicas. One shape for sim, local and kubernetes."""

    name: str
    gpu_product: str | None = Field(None, description="catalog GPU name, e.g. A100-80GB")
    gpu_product_label: str | None = Field(None, description="raw nvidia.com/gpu.product")
    gpu_memory_mib: int = 0
    gpu_count: int = 0
    gpus: list[GpuDevice] = Field(default_factory=list)
    external_gpus: int = Field(
        0, description="GPUs taken by workloads the platform does not own (counted, not indexed)"
    )
    cpu_cores: int | None = None
    memory_bytes: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    schedulable: bool = True

    def free_indices(self, taken: set[int] | frozenset[int] = frozenset()) -> list[int]:
        """GPU indices neither allocated nor taken; external GPUs come off the top."""
        free = [g.index for g in self.gpus if g.allocated_to is None and g.index not in taken]
        return free[: max(0, len(free) - self.external_gpus)]


class Placement(BaseModel):
    """Where one replica goes."""

    node: str
    gpu: str | None = Field(None, description="catalog GPU name; None for CPU placements")
    gpu_indices: list[int] = Field(default_factory=list)
    tensor_parallel_size: int = 1
    max_model_len: int = 0
    score: float = 0.0
