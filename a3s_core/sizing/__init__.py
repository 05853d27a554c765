"""Model resource sizing: profiles (knowledge base, local directory, GGUF, Hugging Face Hub,
config formula) and plans (weights, KV cache, overhead, GPU candidates, TP, max_model_len).

Others call it through the plugin facade, so a plugin can replace either step:

    profile = plugins.model_profile(spec.model, revision)
    plan = plugins.size(profile, spec, load_catalog().gpus)

`render_plan_table(plan)` / `plan_rows(plan)` / `candidate_rows(plan)` show the arithmetic.
"""

from __future__ import annotations

from a3s_core.sizing.table import (
    CANDIDATE_COLUMNS,
    candidate_rows,
    plan_rows,
    render_plan_table,
)

__all__ = ["CANDIDATE_COLUMNS", "candidate_rows", "plan_rows", "render_plan_table"]
