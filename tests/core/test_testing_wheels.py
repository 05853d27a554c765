"""The contract tests' wheel cache: a cached wheel is read without a registry; without
either the test is skipped saying why, not failed."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from a3s_core.testing_wheels import published_sources


def test_a_cached_wheel_is_read_without_any_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("A3S_WHEEL_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens
    with zipfile.ZipFile(tmp_path / "some_engine-1.2.3-py3-none-any.whl", "w") as zf:
        zf.writestr("some_engine/args.py", "FLAGS = ['--x']\n")
        zf.writestr("some_engine/other.py", "")
    root = published_sources("some-engine", "1.2.3", ["some_engine/args.py"])
    assert (root / "some_engine/args.py").read_text() == "FLAGS = ['--x']\n"
    assert not (root / "some_engine/other.py").exists()
    # A second call reuses the extracted files.
    (tmp_path / "some_engine-1.2.3-py3-none-any.whl").unlink()
    assert published_sources("some-engine", "1.2.3", ["some_engine/args.py"]) == root


def test_no_cache_and_no_registry_skips_saying_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("A3S_WHEEL_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(pytest.skip.Exception, match="registry could not be reached"):
        published_sources("some-engine", "1.2.3", ["some_engine/args.py"])
    assert not list(tmp_path.glob("*.whl"))
