"""Built-in model profile sources, tried in order: the knowledge base, a local directory
or GGUF file, the Hugging Face Hub (safetensors headers, or the config formula).

A `trylast` implementation: any plugin that answers `a3s_model_profile` first wins."""

from __future__ import annotations

from a3s_core import hookimpl
from a3s_core.sizing.hub import hub_profile
from a3s_core.sizing.knowledge import knowledge_base
from a3s_core.sizing.local import local_profile
from a3s_core.types import ModelProfile


def find_profile(model: str, revision: str | None = None) -> ModelProfile | None:
    """Knowledge base → local path / GGUF → Hub. None when `model` is neither a known id, a
    path nor a Hub id; ModelNotFound / ModelUnavailable when a source knows it fails."""
    if revision is None:  # the knowledge base describes the default revision only
        profile = knowledge_base().profile(model)
        if profile is not None:
            return profile
    return local_profile(model, revision) or hub_profile(model, revision)


@hookimpl(trylast=True)
def a3s_model_profile(model: str, revision: str | None) -> ModelProfile | None:
    return find_profile(model, revision)
