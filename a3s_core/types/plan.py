"""The sizing plan: how much memory a model needs and which GPUs can hold it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

# The CUDA runtime's total is below nvidia-smi's by what the driver reserves: gaps seen are
# 250-620 MiB (T4, RTX 4090, A100-40GB, H100), about 770 MiB on A100-80GB; 1 %, at least
# 640 MiB, covers each (docs/sizing.md).
ALLOCATABLE_RESERVE = 0.01
ALLOCATABLE_RESERVE_MIN_MIB = 640

# The compute capability each quantization method needs, by vLLM's kernels: the one rule
# that sizing (which GPUs are candidates) and scheduling (which suggestions are offered)
# both apply, through `GpuType.quantization_shortfall`. FP8 runs natively (W8A8, FP8
# tensor cores) from 8.9 and weight-only (W8A16, vLLM's FP8 Marlin kernels) from 8.0
# (Ampere); below that there is no FP8 kernel (docs/sizing.md §6).
QUANTIZATION_MIN_CC: dict[str, tuple[int, int]] = {
    "awq": (7, 5), "gptq": (6, 0), "fp8": (8, 0), "compressed-tensors": (8, 0),
}
FP8_NATIVE_CC = (8, 9)


class GpuType(BaseModel):
    """One entry of the GPU catalog (data, not code: `a3s_core/data/gpus.toml`)."""

    name: str = Field(description="catalog name, e.g. A100-80GB")
    memory_mib: int = Field(description="memory per GPU as nvidia-smi / GFD report it, MiB")
    allocatable_mib: int | None = Field(
        None, description="what the CUDA runtime reports as the GPU's total "
        "(cudaMemGetInfo, torch.cuda.mem_get_info), MiB: the figure vLLM's "
        "gpu_memory_utilization multiplies; a few hundred MiB below memory_mib. Unset: "
        "memory_mib less 1 % (at least 640 MiB)")
    bandwidth_gbs: float = Field(description="memory bandwidth, GB/s")
    bf16_tflops: float = Field(description="dense bf16 (fp16 where bf16 is absent) TFLOPS")
    fp8_tflops: float | None = None
    compute_capability: str = Field(description="e.g. '8.0'")
    product_labels: list[str] = Field(default_factory=list, description="nvidia.com/gpu.product")

    @property
    def memory_bytes(self) -> int:
        return self.memory_mib * 1024 * 1024

    @property
    def allocatable_bytes(self) -> int:
        """What an engine on this GPU can allocate at most (before its utilisation cap)."""
        mib = self.allocatable_mib
        if mib is None:
            mib = self.memory_mib - max(ALLOCATABLE_RESERVE_MIN_MIB,
                                        round(self.memory_mib * ALLOCATABLE_RESERVE))
        return mib * 1024 * 1024

    @property
    def cc(self) -> tuple[int, int]:
        major, _, minor = self.compute_capability.partition(".")
        return int(major), int(minor or 0)

    @property
    def has_bf16(self) -> bool:
        return self.cc >= (8, 0)

    @property
    def has_fp8(self) -> bool:
        """FP8 tensor cores (W8A8). FP8 weights also run weight-only from 8.0: whether a
        GPU can serve FP8 at all is `quantization_shortfall("fp8")`."""
        return self.cc >= FP8_NATIVE_CC

    def quantization_shortfall(self, method: str | None) -> tuple[int, int] | None:
        """The compute capability `method` (awq, gptq, fp8, compressed-tensors; an
        engine's `*_marlin` spelling too) needs when this GPU has less; None when it can
        serve it (or the method has no known floor)."""
        key = (method or "").lower().replace("-", "_").removesuffix("_marlin")
        need = QUANTIZATION_MIN_CC.get(key.replace("_", "-"))
        return need if need is not None and self.cc < need else None


class Candidate(BaseModel):
    """One way to serve the model: a GPU type and a tensor-parallel group on one node."""

    gpu: str = Field(description="catalog GPU name")
    gpu_count: int = Field(description="GPUs per replica (= tensor_parallel_size)")
    tensor_parallel_size: int
    dtype: str = Field(description="activation dtype the engine will use on this GPU")
    weights_per_gpu_bytes: int
    overhead_per_gpu_bytes: int
    usable_per_gpu_bytes: int = Field(
        description="GPU memory the CUDA runtime reports × gpu_memory_utilization")
    kv_budget_per_gpu_bytes: int = Field(description="what is left for KV cache on each GPU")
    max_model_len: int
    concurrent_sequences: float = Field(description="full-length sequences the KV budget holds")
    notes: list[str] = Field(default_factory=list)


class Rejection(BaseModel):
    gpu: str
    reason: str


class SizingPlan(BaseModel):
    """The answer of `a3s_size`: every figure, and the arithmetic behind it."""

    model: str = Field(description="the model that was asked for")
    checkpoint: str = Field(description="what the engine will load (may be a quantized twin)")
    kind: Literal["decoder", "encoder"] = "decoder"
    quantization: str = Field(description="awq / gptq / fp8 / none, as served")
    engine_quantization: str | None = Field(
        None, description="quantization method for the engine flag, None when not quantized"
    )
    parameters: int
    bytes_per_parameter: float
    weight_bytes: int
    kv_bytes_per_token: int
    kv_bytes_per_sequence: int
    overhead_bytes: int
    gpu_memory_utilization: float
    max_model_len: int
    max_model_len_source: str = Field(description="'request', 'model', 'extra_args' or 'lowered'")
    candidates: list[Candidate] = Field(default_factory=list, description="best first")
    rejected: list[Rejection] = Field(default_factory=list)
    overrides: dict[str, Any] = Field(default_factory=dict, description="values from extra_args")
    explanation: list[str] = Field(default_factory=list, description="the arithmetic, in lines")
    cpu_only: bool = Field(False, description="engine serves on CPU (no GPU needed)")
    memory_bytes: int = Field(0, description="total memory one replica needs (CPU or GPU)")

    def candidate_for(self, gpu: str) -> Candidate | None:
        return next((c for c in self.candidates if c.gpu == gpu), None)
