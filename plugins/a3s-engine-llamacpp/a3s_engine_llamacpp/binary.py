"""Where the upstream `llama-server` is on this machine, for the `local` runtime.

Looked for on PATH (and next to the platform's interpreter, as the `local` runtime does),
then among the builds of `scripts/build-llama-server.sh` in the engine cache
(`$A3S_ENGINE_CACHE`, default `~/.cache/a3s-engines`, as `llama-server-<version>/bin/`; the
newest version first). A binary on PATH is named bare, so the runtime's own `search_path`
still comes first; a cached build is named by its absolute path.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from a3s_core.contracts.binaries import cached_builds

BINARY = "llama-server"
BUILD_SCRIPT = "plugins/a3s-engine-llamacpp/scripts/build-llama-server.sh"


def locate_llama_server() -> str | None:
    """argv[0] for llama-server on this machine: `llama-server` when it is on PATH, the
    absolute path of the newest cached build otherwise, None when there is neither."""
    dirs = [str(Path(sys.executable).parent), os.environ.get("PATH", "")]
    if shutil.which(BINARY, path=os.pathsep.join(d for d in dirs if d)):
        return BINARY
    builds = cached_builds(BINARY)
    return str(builds[0]) if builds else None

