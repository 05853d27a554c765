"""Where engine binaries built on this machine are kept, for engine plugins that run a
native server on the `local` runtime (llama-server, ollama): their build scripts install
into `$A3S_ENGINE_CACHE` (default `~/.cache/a3s-engines`) as `<binary>-<version>/bin/`."""

from __future__ import annotations

import os
import re
from pathlib import Path

ENGINE_CACHE_ENV = "A3S_ENGINE_CACHE"


def engine_cache() -> Path:
    """The directory engine builds are cached in (shared by every engine's build script)."""
    return Path(os.environ.get(ENGINE_CACHE_ENV) or Path.home() / ".cache" / "a3s-engines")


def cached_builds(binary: str) -> list[Path]:
    """Executable cached builds of `binary`, newest version first."""
    found = [p for p in engine_cache().glob(f"{binary}-*/bin/{binary}")
             if p.is_file() and os.access(p, os.X_OK)]
    return sorted(found, key=lambda p: _version(p.parent.parent.name, binary), reverse=True)


def _version(name: str, binary: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", name.removeprefix(binary)))


__all__ = ["ENGINE_CACHE_ENV", "cached_builds", "engine_cache"]
