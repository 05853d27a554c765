"""Hugging Face ids → Ollama library tags (data in `library.toml`)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Entry:
    id: str
    tag: str
    q4: str | None = None


@dataclass(frozen=True)
class Library:
    models: dict[str, Entry]  # by lower-cased Hugging Face id
    unsupported: dict[str, str]  # lower-cased id → why Ollama cannot serve it

    def find(self, model: str) -> Entry | None:
        return self.models.get(model.strip().lower())

    def why_not(self, model: str) -> str | None:
        return self.unsupported.get(model.strip().lower())

    def ids(self) -> list[str]:
        return sorted({e.id for e in self.models.values()})


@cache
def library() -> Library:
    data = tomllib.loads(resources.files(__package__).joinpath("library.toml").read_text())
    models = {
        row["id"].lower(): Entry(row["id"], row["tag"], row.get("q4")) for row in data["model"]
    }
    unsupported = {row["id"].lower(): row["reason"] for row in data.get("unsupported", [])}
    return Library(models, unsupported)
