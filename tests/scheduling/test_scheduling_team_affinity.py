"""The contrib example strategy, installed with pip and found through its entry point."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from scheduling_testkit import demand, hand_plan, node, snapshot

from a3s_core.errors import Unschedulable
from a3s_core.plugins import Plugins
from a3s_core.scheduling import Scheduler

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "a3s-scheduler-team-affinity"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pip-install the package into a private directory (the shared environment is left
    alone): a copy of the source, so the build leaves nothing in the checkout."""
    tmp = tmp_path_factory.mktemp("team-affinity")
    src = tmp / "src"
    shutil.copytree(CONTRIB, src, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    target = tmp / "site"
    base = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    base += ["--target", str(target), str(src)]
    # Offline, with the environment's own setuptools, when it is new enough for the
    # package's pyproject (SPDX `license`: setuptools >= 77; `python -m venv` seeds 65);
    # otherwise, or with no backend at all, pip's isolated build, which fetches it.
    done = (_pip([*base, "--no-build-isolation", "--no-index"]) if _setuptools_major() >= 77
            else None)
    if done is None or (done.returncode != 0 and _missing_backend(done.stderr)):
        done = _pip(base)
        if done.returncode != 0 and "satisfies the requirement setuptools" in done.stderr:
            pytest.skip("no build backend: no setuptools/wheel here and no package index")
    assert done.returncode == 0, done.stderr
    return target


def _pip(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"pip is not usable here: {exc}")
    if done.returncode != 0 and "No module named pip" in done.stderr:
        pytest.skip("pip is not installed in this interpreter")
    return done


def _setuptools_major() -> int:
    try:
        return int(version("setuptools").split(".")[0])
    except (PackageNotFoundError, ValueError):
        return 0


def _missing_backend(stderr: str) -> bool:
    return "bdist_wheel" in stderr or "No module named 'setuptools'" in stderr


@pytest.fixture
def plugins(installed: Path, monkeypatch: pytest.MonkeyPatch) -> Plugins:
    monkeypatch.syspath_prepend(str(installed))
    # only the two scheduler plugins: other installed plugins are not under test here
    monkeypatch.setenv("A3S_LOAD_PLUGINS", "scheduler-standard,scheduler-team-affinity")
    return Plugins()


CLUSTER = [
    node("gpu-shared-0", "A100-80GB", 8, used=range(6)),
    node("gpu-team1-0", "A100-80GB", 8, labels={"a3s.io/team": "team-001"}),
    node("gpu-team2-0", "A100-80GB", 8, labels={"a3s.io/team": "team-002"}),
]
PLAN = hand_plan("Qwen/Qwen2.5-7B-Instruct", 15.2, kv_gb=0.5, heads=28, gpus=["A100-80GB"])


def test_installed_with_pip_and_registered_through_the_entry_point(plugins: Plugins) -> None:
    assert plugins.schedulers.names() == ["binpack", "spread", "team-affinity"]
    assert plugins.schedulers.owner("team-affinity") == "scheduler-team-affinity"
    dists = {p.name: p.distribution for p in plugins.describe()}
    assert dists["scheduler-team-affinity"] == "a3s-scheduler-team-affinity"


def test_team_nodes_preferred_and_other_teams_kept_off(plugins: Plugins) -> None:
    sched = Scheduler(plugins.schedulers.get("team-affinity")())
    snap = snapshot(CLUSTER)
    # binpack alone would fill the shared node (2 free) first
    p = sched.place(snap, demand(PLAN, teamId="team-001"))
    assert p.node == "gpu-team1-0"
    # no team: shared node only; team-002's node is never used by others
    placed = []
    for _ in range(2):
        p = sched.place(snap, demand(PLAN))
        snap.apply(p)
        placed.append(p.node)
    assert placed == ["gpu-shared-0", "gpu-shared-0"]
    with pytest.raises(Unschedulable) as exc:
        sched.place(snap, demand(PLAN))
    assert exc.value.message == (
        "needs 1× A100-80GB on one node; A100-80GB nodes: gpu-shared-0 has 0 of 8 free, "
        "gpu-team1-0 has 8 of 8 free but is reserved for team team-001, "
        "gpu-team2-0 has 8 of 8 free but is reserved for team team-002"
    )


def test_team_falls_back_to_shared_nodes_when_its_own_are_full(plugins: Plugins) -> None:
    sched = Scheduler(plugins.schedulers.get("team-affinity")())
    snap = snapshot(CLUSTER)
    nodes = []
    for _ in range(10):
        p = sched.place(snap, demand(PLAN, teamId="team-001"))
        snap.apply(p)
        nodes.append(p.node)
    assert nodes == ["gpu-team1-0"] * 8 + ["gpu-shared-0"] * 2
