"""The namespace derived from metadata.teamId when none is given: deterministic (a repeat
meets its twin), and two different teams never share one by accident."""

from __future__ import annotations

from typing import Any

import pytest

from a3s_core.types.spec import DNS1123_LABEL, DeploymentRequest


def ns(team: Any) -> str:
    body = {"models": [{"name": "a", "model": "m/x"}], "metadata": {"teamId": team}}
    return DeploymentRequest.model_validate(body).resolved_namespace()


def test_ascii_team_ids_keep_their_readable_slug() -> None:
    assert ns("team-001") == "team-001"
    assert ns("Team_001") == "team-001"
    assert ns("") == "default"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("研发团队", "测试团队"),  # both slugged to nothing: both were "default"
        ("团队 A", "A"),  # both were "a"
        ("x" * 63 + "1", "x" * 63 + "2"),  # cut at 63 characters: both were "xxx…x"
        (1001, 1002),  # numbers: both were "default"
    ],
    ids=["chinese", "partly chinese", "long", "numeric"],
)
def test_different_teams_get_different_namespaces(a: Any, b: Any) -> None:
    assert ns(a) != ns(b)
    for team in (a, b):
        assert DNS1123_LABEL.fullmatch(ns(team)), ns(team)
        assert ns(team) == ns(team)  # deterministic: a repeat meets its twin (409)
        assert ns(team) != "default"


def test_a_numeric_team_id_reads_as_its_digits() -> None:
    assert ns(1001) == "1001"
    assert ns(True) == "default"  # a boolean is no team
