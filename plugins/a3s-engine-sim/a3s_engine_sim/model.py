"""How long things take on a given GPU for a given model, and what the model "says".

Roofline arithmetic, the same the sizing docs use:
- prefill is compute-bound: 2 × parameters × prompt tokens FLOPs over the TP group's
  bf16 TFLOPS × an efficiency (MFU);
- a decode step reads every weight once plus the KV cache of every running sequence, so it
  takes max(bytes read / bandwidth, 2 × parameters × batch / compute) — flat while the batch
  is small (memory-bound), then rising once compute dominates.
"""

from __future__ import annotations

import hashlib
import math
import random
import struct

from a3s_engine_sim.config import SimConfig

_WORDS = (
    "the quick brown fox jumps over a lazy dog while distant engines hum softly and "
    "tensor cores stream weights through high bandwidth memory to answer every prompt "
    "with patient deterministic filler text that means nothing yet counts tokens well"
)
_VOCAB = tuple(_WORDS.split(" "))


class LatencyModel:
    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        tp = cfg.tensor_parallel_size
        self._flops = cfg.bf16_tflops * 1e12 * tp * cfg.compute_efficiency
        self._bandwidth = cfg.bandwidth_gbs * 1e9 * tp * cfg.bandwidth_efficiency
        self._rng = random.Random(cfg.seed)

    def prefill_s(self, prompt_tokens: int) -> float:
        """Simulated seconds to process the prompt and emit the first token."""
        compute = 2.0 * self.cfg.parameters * max(1, prompt_tokens) / self._flops
        return compute + self.decode_step_s(1, prompt_tokens)

    def decode_step_s(self, batch: int, context_tokens: int) -> float:
        """Simulated seconds for one decode step of `batch` sequences holding
        `context_tokens` tokens of KV cache between them."""
        read = self.cfg.weight_bytes + context_tokens * self.cfg.kv_bytes_per_token
        memory = read / self._bandwidth
        compute = 2.0 * self.cfg.parameters * max(1, batch) / self._flops
        return max(memory, compute) + self.cfg.step_overhead_s

    def saturation_batch(self) -> float:
        """Batch size at which a decode step turns compute-bound (GPU fully busy)."""
        memory = self.cfg.weight_bytes / self._bandwidth
        per_seq = 2.0 * self.cfg.parameters / self._flops
        return max(1.0, min(float(self.cfg.max_num_seqs), memory / per_seq))

    def wall(self, simulated_s: float) -> float:
        """Simulated seconds → wall seconds to sleep: time-scaled, with jitter."""
        spread = self.cfg.jitter
        factor = 1.0 + (self._rng.uniform(-spread, spread) if spread else 0.0)
        return max(0.0, simulated_s * self.cfg.time_scale * factor)

    def kv_capacity_tokens(self) -> int:
        """Tokens of KV cache the replica holds: usable memory minus weights and a 5 %
        activation/runtime reserve, over the KV bytes per token."""
        usable = self.cfg.gpu_memory_mib * 1024 * 1024 * self.cfg.gpu_memory_utilization
        free = usable * self.cfg.tensor_parallel_size * 0.95 - self.cfg.weight_bytes
        tokens = int(free // self.cfg.kv_bytes_per_token) if self.cfg.kv_bytes_per_token else 0
        # A plan the sizer produced always fits one full-length sequence; if the figures
        # given here do not, fall back to exactly that instead of refusing everything.
        return max(tokens, self.cfg.max_model_len)


def estimate_tokens(text: str) -> int:
    """≈ 4 characters per token, at least one for non-empty text."""
    return math.ceil(len(text) / 4) if text else 0


def _digest(*parts: str | int) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(str(part).encode())
        h.update(b"\x00")
    return h.digest()


def token_text(prompt_key: bytes, choice: int, position: int) -> str:
    """The `position`-th token of choice `choice`: a filler word, same prompt → same text."""
    seed = int.from_bytes(_digest(prompt_key.hex(), choice, position)[:4], "little")
    word = _VOCAB[seed % len(_VOCAB)]
    return word if position == 0 else " " + word


def prompt_key(text: str, seed: int) -> bytes:
    return _digest(text, seed)


def embedding(text: str, dim: int, seed: int) -> list[float]:
    """A unit vector that depends only on (text, dim, seed): similar inputs are not close,
    equal inputs are identical — enough to test plumbing, caching and routing."""
    rng = random.Random(int.from_bytes(_digest(text, seed), "little"))
    vec = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def pack_base64(vec: list[float]) -> str:
    """OpenAI's `encoding_format: base64`: little-endian float32, base64-encoded."""
    import base64

    return base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode("ascii")
