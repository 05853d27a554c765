"""Bin-packing and spreading. Both score from the node's free GPU count and the
candidate, so nodes of one GPU type with the same free count (and, for spread, the same
size) are equivalent: the framework evaluates one of them, not all."""

from __future__ import annotations

import math
from typing import ClassVar

from a3s_core.contracts import Demand, NodeView, SchedulerStrategy
from a3s_core.types import Candidate

# Candidates whose total GPU memory is within this fraction of the leanest one count as
# equally lean: an H100-80GB (81,559 MiB) is not "less wasteful" than an A100-80GB
# (81,920 MiB) in any way that matters, so node fullness and plan order decide there.
WASTE_STEP = 0.05


def _rank(demand: Demand, cand: Candidate) -> int:
    """The candidate's position in the sizing plan's order (best first)."""
    for i, c in enumerate(demand.candidates):
        if c is cand:
            return i
    return len(demand.candidates)


def _memory(cand: Candidate) -> int:
    """GPU memory one replica takes on this candidate (usable bytes × GPUs)."""
    return cand.usable_per_gpu_bytes * cand.gpu_count


class BinPack(SchedulerStrategy):
    """Take the fewest GPUs, waste the least GPU memory, fill the fullest node that fits.

    1. the candidate with the fewest GPUs per replica: GPUs are the unit nodes are carved
       into, and a tensor-parallel group pays for every extra GPU in communication (a
       32B AWQ model takes one L40S, not two T4s);
    2. among those, the GPU type taking the least memory per replica (within 5 %), so a
       7B model goes to a 48 GB L40S, not an 80 GB A100, and big GPUs stay free for big
       models;
    3. the node with the fewest free GPUs left after placing, so partly used nodes fill
       up and whole nodes stay whole for 8-GPU models;
    4. the less powerful GPU (bf16 TFLOPS) of equal memory: an A100 before an H100 when
       either holds the model, so premium GPUs stay free for work that needs them;
    5. the sizing plan's order (best first) breaks remaining ties."""

    name: ClassVar[str] = "binpack"

    def __init__(self) -> None:
        self._lean: tuple[Demand | None, int] = (None, 0)

    def _leanest(self, demand: Demand) -> int:
        cached, value = self._lean
        if cached is not demand:
            value = min((_memory(c) for c in demand.candidates), default=0)
            self._lean = (demand, value)
        return value

    def waste_class(self, demand: Demand, cand: Candidate) -> int:
        lean = self._leanest(demand)
        if lean <= 0:
            return 0
        excess = _memory(cand) / lean - 1.0
        return min(999, max(0, math.floor(excess / WASTE_STEP + 1e-9)))

    def score(self, node: NodeView, demand: Demand, candidate: Candidate) -> float:
        free_after = node.free - candidate.gpu_count
        tflops = node.gpu_type.bf16_tflops if node.gpu_type else 0.0
        # Lexicographic order packed into one float; each term stays below the next
        # one's unit: waste classes < 1,000, free GPUs < 1,000, TFLOPS < 10,000, plan
        # rank < 100; the total stays below 1e13 (8 GPUs), exact enough in a float.
        return -(
            candidate.gpu_count * 1e12
            + self.waste_class(demand, candidate) * 1e9
            + free_after * 1e6
            + min(tflops, 9_999.0) * 100.0
            + _rank(demand, candidate)
        )

    def equivalence_key(self, node: NodeView) -> object | None:
        return ("binpack", node.gpu, node.free)


class Spread(SchedulerStrategy):
    """The emptiest node first (largest share of its GPUs still free after placing),
    then the sizing plan's order. Spreads replicas for blast radius and thermal
    headroom, at the price of fragmentation: an 8-GPU model may find no whole node."""

    name: ClassVar[str] = "spread"

    def score(self, node: NodeView, demand: Demand, candidate: Candidate) -> float:
        share_free_after = (node.free - candidate.gpu_count) / max(node.gpu_count, 1)
        return share_free_after * 1_000.0 - _rank(demand, candidate)

    def equivalence_key(self, node: NodeView) -> object | None:
        return ("spread", node.gpu, node.gpu_count, node.free)
