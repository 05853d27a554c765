"""Where `ollama` is on this machine, for the `local` runtime: on PATH, else the newest
build of `scripts/build-ollama.sh` in the engine cache (`$A3S_ENGINE_CACHE`, default
`~/.cache/a3s-engines`, as `ollama-<version>/bin/ollama`)."""

from __future__ import annotations

import shutil

from a3s_core.contracts.binaries import cached_builds

BINARY = "ollama"
BUILD_SCRIPT = "plugins/a3s-engine-ollama/scripts/build-ollama.sh"


def locate_ollama() -> str | None:
    """How the entry script names ollama here: `ollama` when it is on PATH, the absolute
    path of the newest cached build otherwise, None when there is neither."""
    if shutil.which(BINARY):
        return BINARY
    builds = cached_builds(BINARY)
    return str(builds[0]) if builds else None

