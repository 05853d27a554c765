"""A SizingPlan as a table for people (`a3s plan`, the API's dry run, events)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from a3s_core.types import SizingPlan

if TYPE_CHECKING:
    from rich.table import Table

from a3s_core.sizing.architecture import size_str as _gib


def plan_rows(plan: SizingPlan) -> list[tuple[str, str]]:
    """(figure, value) rows: the summary every surface shows, in this order."""
    rows = [
        ("model", plan.model),
        ("checkpoint", plan.checkpoint),
        ("quantization", plan.quantization
         + (f" (engine flag: {plan.engine_quantization})" if plan.engine_quantization else "")),
        ("parameters", f"{plan.parameters:,}"),
        ("bytes per parameter", f"{plan.bytes_per_parameter:g}"),
        ("weights", _gib(plan.weight_bytes)),
        ("KV per token", f"{plan.kv_bytes_per_token:,} B" if plan.kind == "decoder"
         else "none (encoder)"),
        ("max_model_len", f"{plan.max_model_len:,} ({plan.max_model_len_source})"),
        ("KV for one full sequence", _gib(plan.kv_bytes_per_sequence)),
        ("overhead (per replica)", _gib(plan.overhead_bytes)),
        ("gpu_memory_utilization", f"{plan.gpu_memory_utilization:g}"),
        ("memory per replica", _gib(plan.memory_bytes)),
    ]
    if plan.candidates:
        c = plan.candidates[0]
        rows.append(("per-GPU need", _gib(c.weights_per_gpu_bytes + c.overhead_per_gpu_bytes)
                     + f" + KV (of {_gib(c.usable_per_gpu_bytes)} usable)"))
    if plan.overrides:
        rows.append(("overridden", ", ".join(f"{k}={v}" for k, v in plan.overrides.items())))
    return rows


def candidate_rows(plan: SizingPlan) -> list[tuple[str, ...]]:
    """One row per candidate, best first: rank, GPUs, TP, dtype, weights/GPU, overhead/GPU,
    KV budget/GPU, max_model_len, concurrent full-length sequences."""
    return [
        (str(i), f"{c.gpu_count} × {c.gpu}", str(c.tensor_parallel_size), c.dtype,
         _gib(c.weights_per_gpu_bytes), _gib(c.overhead_per_gpu_bytes),
         _gib(c.kv_budget_per_gpu_bytes), f"{c.max_model_len:,}", f"{c.concurrent_sequences:g}")
        for i, c in enumerate(plan.candidates, 1)
    ]


CANDIDATE_COLUMNS = ("#", "GPUs", "TP", "dtype", "weights/GPU", "overhead/GPU", "KV budget/GPU",
                     "max_model_len", "full sequences")


def render_plan_table(plan: SizingPlan, limit: int | None = None) -> Table:
    """A rich Table: the figures, then the ranked candidates, then the rejected GPU types."""
    from rich.table import Table

    table = Table(title=f"sizing plan for {plan.model}", show_header=False, expand=False)
    table.add_column("figure", style="bold")
    table.add_column("value")
    for label, value in plan_rows(plan):
        table.add_row(label, value)
    cands = Table(*CANDIDATE_COLUMNS, title="candidates (best first)")
    for row in candidate_rows(plan)[:limit]:
        cands.add_row(*row)
    table.add_row("candidates", cands if plan.candidates else "none")
    if plan.rejected:
        table.add_row("not possible", "\n".join(f"{r.gpu}: {r.reason}" for r in plan.rejected))
    return table
