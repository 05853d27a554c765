"""The built-in knowledge base (`a3s_core/data/models.toml`): architecture facts and exact
parameter counts of well-known checkpoints and their quantized twins."""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from a3s_core.sizing.profiles import profile_from_config
from a3s_core.types import ModelProfile


class KnownModel(BaseModel):
    id: str
    aliases: list[str] = Field(default_factory=list)
    base: str | None = None
    parameters: int | None = None
    parameters_by_dtype: dict[str, int] = Field(default_factory=dict)
    weight_bytes: int | None = None
    twins: dict[str, str] = Field(default_factory=dict)
    source: str | None = None
    config: dict[str, Any] = Field(default_factory=dict)


class KnowledgeBase:
    def __init__(self, entries: list[KnownModel]) -> None:
        self.entries = entries
        self._by_key: dict[str, KnownModel] = {}
        self._cache: dict[tuple[str, str | None], ModelProfile] = {}
        for e in entries:
            for key in (e.id, *e.aliases):
                self._by_key[key.lower()] = e

    @classmethod
    def from_toml(cls, text: str) -> KnowledgeBase:
        return cls([KnownModel(**row) for row in tomllib.loads(text).get("model", [])])

    def get(self, model: str) -> KnownModel | None:
        return self._by_key.get(model.strip().lower())

    def config(self, entry: KnownModel) -> dict[str, Any]:
        """The entry's config, merged over its base's for quantized twins."""
        if entry.base:
            base = self.get(entry.base)
            if base is None:
                raise ValueError(f"knowledge base: {entry.id} names unknown base {entry.base}")
            return {**self.config(base), **entry.config}
        return dict(entry.config)

    def twin(self, model: str, method: str) -> str | None:
        """The id of a `method`-quantized checkpoint of `model`, if one is known."""
        entry = self.get(model)
        return entry.twins.get(method) if entry else None

    def profile(self, model: str, revision: str | None = None) -> ModelProfile | None:
        entry = self.get(model)
        if entry is None:
            return None
        key = (model, revision)
        if key not in self._cache:
            notes = [f"knowledge base: {entry.source}"] if entry.source else ["knowledge base"]
            if entry.id.lower() != model.strip().lower():
                notes.append(f"same architecture as {entry.id}")
            self._cache[key] = profile_from_config(
                self.config(entry),
                model=model,
                source="knowledge-base",
                revision=revision,
                parameters=entry.parameters,
                parameters_by_dtype=entry.parameters_by_dtype,
                weight_bytes=entry.weight_bytes,
                notes=notes,
            )
        # Hand out copies so a caller's edit cannot leak into the cache.
        return self._cache[key].model_copy(deep=True)


def knowledge_base() -> KnowledgeBase:
    """The built-in knowledge base, extended (and overridden, by id) by the TOML file that
    A3S_MODELS_FILE names, so an operator teaches the platform a model without a release."""
    return _load(os.environ.get("A3S_MODELS_FILE") or None)


@lru_cache(maxsize=4)
def _load(extra: str | None) -> KnowledgeBase:
    rows = tomllib.loads(resources.files("a3s_core").joinpath("data/models.toml").read_text())
    entries = {e["id"].lower(): e for e in rows.get("model", [])}
    if extra:
        try:
            more = tomllib.loads(Path(extra).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"A3S_MODELS_FILE {extra!r} cannot be read: {exc}") from exc
        entries |= {e["id"].lower(): e for e in more.get("model", [])}
    return KnowledgeBase([KnownModel(**row) for row in entries.values()])
