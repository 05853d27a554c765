"""What several platform processes mean for the local runtime, said at start-up on a
shared (PostgreSQL) store, and not on a single process's SQLite."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from a3s_core.plugins import Plugins

NOTE = "local runtime, several platform processes"


@pytest.mark.postgres
def test_local_says_at_start_up_that_its_engines_live_on_one_host(
    make_app: Any, pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="a3s")
    make_app(plugins=Plugins(), runtime="local", database_url=pg_url,
             runtime_options={"use_gpus": False, "node_name": "box",
                              "state_dir": str(tmp_path / "local")})
    (line,) = [r.getMessage() for r in caplog.records if NOTE in r.getMessage()]
    assert "on this host (box)" in line and str(tmp_path / "local") in line
    assert "A3S_CONTROLLERS=false" in line and "kubernetes" in line


def test_a_single_process_on_sqlite_is_not_told(
    make_app: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="a3s")
    make_app(plugins=Plugins(), runtime="local",
             runtime_options={"use_gpus": False, "state_dir": str(tmp_path / "local")})
    assert not [r for r in caplog.records if NOTE in r.getMessage()]
