"""The plugin system: entry points, allow/block lists, duplicates, broken imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from a3s_core import hookimpl
from a3s_core.contracts import Engine, LaunchContext
from a3s_core.errors import PluginError, UnknownPlugin
from a3s_core.plugins import Plugins

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "contrib" / "a3s-observer-jsonl"


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin installed with pip into a directory of its own."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        check=True,
    )
    return target


def _a3s_plugins(site: Path, **env: str) -> str:
    full = {**os.environ, "PYTHONPATH": str(site), **env}
    out = subprocess.run(
        [sys.executable, "-m", "a3s_core.cli.main", "plugins"],
        env=full,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def test_pip_installed_plugin_is_listed_and_can_be_turned_off(example_site: Path) -> None:
    assert "observer-jsonl" in _a3s_plugins(example_site)
    assert "a3s_on_event" in _a3s_plugins(example_site)
    assert "observer-jsonl" not in _a3s_plugins(example_site, A3S_LOAD_PLUGINS="")
    assert "observer-jsonl" not in _a3s_plugins(example_site, A3S_DISABLED_PLUGINS="observer-jsonl")
    listed = _a3s_plugins(example_site, A3S_LOAD_PLUGINS="observer-jsonl")
    assert "observer-jsonl" in listed and "engine-vllm" not in listed


def test_pip_installed_plugin_hooks_are_called(
    example_site: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    make_app: Any,
    a3s_plugins: Plugins,
) -> None:
    monkeypatch.syspath_prepend(str(example_site))
    log = tmp_path / "events.jsonl"
    monkeypatch.setenv("A3S_EVENTS_JSONL", str(log))
    plugins = Plugins()
    from a3s_core.testing import FakeRuntimePlugin

    plugins.register(FakeRuntimePlugin(), name="fake-runtime")
    assert "observer-jsonl" in [p.name for p in plugins.describe()]
    client = make_app(plugins=plugins, controllers=False)
    r = client.post("/v1/deployments", json={"models": [{"name": "m", "model": "x/y"}]})
    assert r.status_code == 202
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert lines and lines[0]["type"] == "deployment.accepted"
    listed = client.get("/v1/plugins").json()
    entry = next(p for p in listed if p["name"] == "observer-jsonl")
    assert entry["distribution"] == "a3s-observer-jsonl" and entry["version"] == "0.1.0"
    assert entry["hooks"] == ["a3s_on_event"]


class _TwinVllm(Engine):
    name = "vllm"

    def command(self, ctx: LaunchContext) -> list[str]:
        return ["true"]


class _TwinPlugin:
    @hookimpl
    def a3s_register_engines(self, registry: Any) -> None:
        registry.register(_TwinVllm)


def test_duplicate_engine_name_fails_start_up_naming_both(make_app: Any) -> None:
    plugins = Plugins()
    plugins.register(_TwinPlugin(), name="my-twin-vllm")
    with pytest.raises(PluginError) as info:
        make_app(plugins=plugins)
    assert "engine-vllm" in info.value.message and "my-twin-vllm" in info.value.message


def test_broken_entry_point_names_its_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = tmp_path / "a3s_broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: a3s-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[a3s]\nbroken = a3s_broken_mod\n")
    (tmp_path / "a3s_broken_mod.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as info:
        Plugins().check()
    assert "a3s-broken" in info.value.message and "boom at import" in info.value.message
    monkeypatch.setenv("A3S_DISABLED_PLUGINS", "broken")
    Plugins().check()  # the escape hatch works


def test_unknown_name_lists_installed(a3s_plugins: Plugins) -> None:
    with pytest.raises(UnknownPlugin) as info:
        a3s_plugins.engines.get("nope")
    assert "(plugin may not be installed)" in info.value.message
    assert "vllm" in info.value.message


def test_defaults_only_manager_has_no_third_party(a3s_default_plugins: Plugins) -> None:
    names = [p.name for p in a3s_default_plugins.describe()]
    assert all(n.startswith("a3s_core.") for n in names)
    assert len(a3s_default_plugins.engines) == 0


def test_register_plugin_fixture_removes_after(register_plugin: Any, a3s_plugins: Plugins) -> None:
    class Extra(Engine):
        name = "extra-engine"

        def command(self, ctx: LaunchContext) -> list[str]:
            return ["true"]

    class P:
        @hookimpl
        def a3s_register_engines(self, registry: Any) -> None:
            registry.register(Extra)

    register_plugin(a3s_plugins, P(), "extra")
    assert "extra-engine" in a3s_plugins.engines
