"""CLI tests run `a3s` against a real platform app served by uvicorn on 127.0.0.1: the
server and the tiny sizing plugin are the ones the event-stream tests use."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "events"))  # events_testkit

from events_testkit import Server, TinySizing

from a3s_core.api.app import create_app


@pytest.fixture
def platform(a3s_settings: Any, a3s_plugins: Any, register_plugin: Any) -> Iterator[Server]:
    register_plugin(a3s_plugins, TinySizing(), "cli-tiny-sizing")
    with Server(create_app(a3s_settings, a3s_plugins)) as s:
        yield s
