"""Published wheels for contract tests: an engine plugin checks the flags it renders against
the argument definitions in the engine's own release, read from its source, never imported.

`published_sources("vllm", "0.11.0", ["vllm/engine/*.py"])` downloads the wheel once
(`pip download --no-deps`) into a cache outside the work tree (`A3S_WHEEL_CACHE`, by default
`~/.cache/a3s-wheels`), extracts the named files beside it and returns that directory.
Without a cached wheel and without a registry the calling test is skipped, saying so; a
registry that lists the project's releases without this one fails the test (a pin that
cannot be had).
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

import pytest

DOWNLOAD_TIMEOUT_S = 900.0  # vLLM's wheel is ~440 MB


def wheel_cache() -> Path:
    return Path(os.environ.get("A3S_WHEEL_CACHE") or Path.home() / ".cache" / "a3s-wheels")


def published_sources(dist: str, version: str, patterns: Iterable[str]) -> Path:
    """A directory holding the wheel's files that match `patterns` (fnmatch globs on the
    paths inside the wheel), as published for `dist==version`."""
    wanted = sorted(patterns)
    out = wheel_cache() / "src" / f"{dist}-{version}"
    done = out / ".extracted"
    if done.exists() and done.read_text().splitlines() == wanted:
        return out
    wheel = _wheel(dist, version)
    with zipfile.ZipFile(wheel) as zf:
        members = [n for n in zf.namelist() if any(fnmatch.fnmatch(n, p) for p in wanted)]
        missing = [p for p in wanted if not any(fnmatch.fnmatch(n, p) for n in members)]
        if missing:
            raise AssertionError(f"{wheel.name} has no file matching {missing}")
        zf.extractall(out, members)
    done.write_text("\n".join(wanted) + "\n")
    return out


def _wheel(dist: str, version: str) -> Path:
    cache = wheel_cache()
    prefix = f"{dist.replace('-', '_')}-{version}-"
    found = sorted(cache.glob(prefix + "*.whl")) if cache.is_dir() else []
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    # Into a private directory first, so a concurrent or interrupted run never leaves a
    # partial wheel under the name the cache is searched by.
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--no-cache-dir", "--disable-pip-version-check", "-q", "-d", tmp,
               f"{dist}=={version}"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=DOWNLOAD_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            pytest.skip(f"{dist}=={version}: no wheel cached in {cache} and the download "
                        f"did not finish in {DOWNLOAD_TIMEOUT_S:.0f} s")
        got = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not got:
            said = (proc.stderr or proc.stdout).strip().splitlines()
            if "(from versions: " in proc.stderr and "(from versions: none)" not in proc.stderr:
                # The registry answered with a list of releases, and this one is not there.
                raise AssertionError(f"{dist}=={version} is not published as a wheel: "
                                     + " ".join(said[-2:]))
            pytest.skip(f"{dist}=={version}: no wheel cached in {cache} and the package "
                        f"registry could not be reached ({said[-1] if said else 'pip failed'})")
        target = cache / got[0].name
        os.replace(got[0], target)
        return target
