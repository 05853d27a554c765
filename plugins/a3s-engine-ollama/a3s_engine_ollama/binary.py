"""Where `ollama` is on this machine, for the `local` runtime: on PATH, else the newest
build of `scripts/build-ollama.sh` in the engine cache (`$A3S_ENGINE_CACHE`, default
`~/.cache/a3s-engines`, as `ollama-<version>/bin/ollama`)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

BINARY = "ollama"
CACHE_ENV = "A3S_ENGINE_CACHE"
BUILD_SCRIPT = "plugins/a3s-engine-ollama/scripts/build-ollama.sh"


def engine_cache() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "a3s-engines")


def cached_builds() -> list[Path]:
    """Executable cached builds, newest version first."""
    found = [p for p in engine_cache().glob(f"{BINARY}-*/bin/{BINARY}")
             if p.is_file() and os.access(p, os.X_OK)]
    return sorted(found, key=lambda p: _version(p.parent.parent.name), reverse=True)


def locate_ollama() -> str | None:
    """How the entry script names ollama here: `ollama` when it is on PATH, the absolute
    path of the newest cached build otherwise, None when there is neither."""
    if shutil.which(BINARY):
        return BINARY
    builds = cached_builds()
    return str(builds[0]) if builds else None


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", name.removeprefix(BINARY)))
