"""Built-in sizing: the `trylast` implementation of `a3s_size` (see `sizing/sizer.py`)."""

from __future__ import annotations

from a3s_core import hookimpl
from a3s_core.sizing.sizer import size
from a3s_core.types import GpuType, ModelProfile, ModelSpec, SizingPlan


@hookimpl(trylast=True)
def a3s_size(profile: ModelProfile, spec: ModelSpec, catalog: list[GpuType]) -> SizingPlan | None:
    return size(profile, spec, catalog)
