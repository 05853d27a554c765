"""Where the upstream `llama-server` is on this machine, for the `local` runtime.

Looked for on PATH (and next to the platform's interpreter, as the `local` runtime does),
then among the builds of `scripts/build-llama-server.sh` in the engine cache
(`$A3S_ENGINE_CACHE`, default `~/.cache/a3s-engines`, as `llama-server-<version>/bin/`; the
newest version first). A binary on PATH is named bare, so the runtime's own `search_path`
still comes first; a cached build is named by its absolute path.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

BINARY = "llama-server"
CACHE_ENV = "A3S_ENGINE_CACHE"
BUILD_SCRIPT = "plugins/a3s-engine-llamacpp/scripts/build-llama-server.sh"


def engine_cache() -> Path:
    """The directory engine builds are cached in (shared with the Ollama build script)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "a3s-engines")


def cached_builds() -> list[Path]:
    """Executable cached builds, newest version first."""
    found = [p for p in engine_cache().glob(f"{BINARY}-*/bin/{BINARY}")
             if p.is_file() and os.access(p, os.X_OK)]
    return sorted(found, key=lambda p: _version(p.parent.parent.name), reverse=True)


def locate_llama_server() -> str | None:
    """argv[0] for llama-server on this machine: `llama-server` when it is on PATH, the
    absolute path of the newest cached build otherwise, None when there is neither."""
    dirs = [str(Path(sys.executable).parent), os.environ.get("PATH", "")]
    if shutil.which(BINARY, path=os.pathsep.join(d for d in dirs if d)):
        return BINARY
    builds = cached_builds()
    return str(builds[0]) if builds else None


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", name.removeprefix(BINARY)))
