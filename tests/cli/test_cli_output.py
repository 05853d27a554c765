"""Tables that never cut what a user copies: columns dropped by importance, then one block
per object; tab-separated lines when piped; documents whole."""

from __future__ import annotations

import io
import json

import pytest
import yaml
from rich.console import Console

from a3s_core.cli.output import Col, Output, dump, plain_lines, print_rows, stdout_console

KEY = "sk-a3s-2ik5nQ0c7sVJtq1m3RkQxWbW6Zr8yHc4pL0aE9fTnUg"
ENDPOINT = "http://127.0.0.1:8080/d/team-ai/qwen-72b-instruct/v1"
ROWS = [
    {
        "id": "dep-0123456789ab",
        "name": "qwen-72b-instruct",
        "namespace": "team-ai",
        "endpoint": ENDPOINT,
        "apiKey": KEY,
        "status": "pending",
        "note": "a longer note that may wrap onto several lines when the terminal is narrow",
    }
]
COLS = [
    Col("name", lambda r: r["name"], copy=True),
    Col("id", lambda r: r["id"], copy=True),
    Col("namespace", lambda r: r["namespace"], drop=1),
    Col("endpoint", lambda r: r["endpoint"], copy=True),
    Col("apiKey", lambda r: r["apiKey"], copy=True),
    Col("status", lambda r: r["status"], drop=2),
]


def terminal(width: int) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=width, force_terminal=True, color_system=None), out


@pytest.mark.parametrize("width", [40, 80, 120, 160, 250])
def test_copy_values_are_whole_on_one_line_at_every_width(width: int) -> None:
    con, out = terminal(width)
    print_rows(con, Output.table, COLS, ROWS)
    lines = out.getvalue().splitlines()
    for value in (KEY, ENDPOINT, "dep-0123456789ab", "qwen-72b-instruct"):
        assert any(value in line for line in lines), f"{value} cut at width {width}"
    assert "…" not in out.getvalue()


def test_least_important_columns_go_first_then_one_block_per_object() -> None:
    con, out = terminal(250)
    print_rows(con, Output.table, COLS, ROWS)
    header = out.getvalue().splitlines()[0].split()
    assert header == ["name", "id", "namespace", "endpoint", "apiKey", "status"]

    natural = sum(len(str(v)) for k, v in ROWS[0].items() if k != "note") + 2 * 5
    con, out = terminal(natural - 1)  # one short: status (drop=2) goes, namespace stays
    print_rows(con, Output.table, COLS, ROWS)
    assert out.getvalue().splitlines()[0].split() == [
        "name", "id", "namespace", "endpoint", "apiKey"
    ]
    assert all(len(line) <= natural - 1 for line in out.getvalue().splitlines())

    con, out = terminal(80)  # the must-copy columns alone do not fit: a block of fields
    print_rows(con, Output.table, COLS, ROWS)
    assert out.getvalue().splitlines() == [
        "qwen-72b-instruct",
        "  id:        dep-0123456789ab",
        "  namespace: team-ai",
        f"  endpoint:  {ENDPOINT}",
        f"  apiKey:    {KEY}",
        "  status:    pending",
    ]


def test_prose_columns_wrap_and_never_squeeze_the_others() -> None:
    cols = [
        Col("id", lambda r: r["id"], copy=True),
        Col("status", lambda r: r["status"]),
        Col("note", lambda r: r["note"], wrap=True),
    ]
    con, out = terminal(60)
    print_rows(con, Output.table, cols, ROWS)
    lines = out.getvalue().splitlines()
    assert lines[1].startswith("dep-0123456789ab  pending  a longer note")
    assert len(lines) > 2 and all(len(line) <= 60 for line in lines)
    assert "several" in out.getvalue()


def test_plain_is_tab_separated_whole_with_a_header() -> None:
    rows = [{**ROWS[0], "namespace": "team\tai\nx"}]
    assert plain_lines(COLS, rows) == [
        "name\tid\tnamespace\tendpoint\tapiKey\tstatus",
        f"qwen-72b-instruct\tdep-0123456789ab\tteam ai x\t{ENDPOINT}\t{KEY}\tpending",
    ]
    out = io.StringIO()
    con = Console(file=out, width=20, force_terminal=False)
    print_rows(con, Output.plain, COLS, ROWS)
    assert out.getvalue().splitlines()[1].split("\t")[4] == KEY


def test_documents_are_the_objects_whole() -> None:
    for form, load in ((Output.json, json.loads), (Output.yaml, yaml.safe_load)):
        out = io.StringIO()
        dump(Console(file=out, width=20), {"deployments": ROWS}, form)
        assert load(out.getvalue()) == {"deployments": ROWS}


def test_stdout_that_is_not_a_terminal_is_never_wrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    for var in ("TTY_COMPATIBLE", "FORCE_COLOR"):
        monkeypatch.delenv(var, raising=False)
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    con = stdout_console()
    con.print(f"endpoint {ENDPOINT} key {KEY}")
    assert out.getvalue() == f"endpoint {ENDPOINT} key {KEY}\n"


@pytest.mark.parametrize("width", [30, 40, 80])
def test_the_watch_table_fits_without_cutting_names(width: int) -> None:
    from a3s_core.cli.watch import Progress, _table

    rows = [
        Progress(id="dep-1", name="a-rather-long-deployment-name", status="starting",
                 step="replica.starting", message="starting replica a-rather-long-deploy…"),
        Progress(id="dep-2", name="short", status="running", step="deployment.running"),
    ]
    con, out = terminal(width)
    con.print(_table(rows, con))
    text = out.getvalue()
    assert "a-rather-long-deployment-name" in text and "short" in text
    assert "running" in text and "starting" in text
    assert all(len(line) <= width for line in text.splitlines())


def test_a_dropped_column_comes_back_when_a_wider_one_had_to_go() -> None:
    """`a3s ls` at 60 columns: the endpoint cannot fit, so it goes; id and namespace, left
    out before it because they matter less, fit once it is gone and must come back — else
    the same name in two namespaces shows as two identical rows."""
    from a3s_core.cli.deployment_commands import LIST_COLS

    rows = [
        {"name": "qwen-72b", "id": f"dep-{i}0a748f98cbb", "namespace": ns,
         "model": "Qwen/Qwen2.5-72B-Instruct", "engine": "vllm", "status": "running",
         "readyReplicas": 1, "desiredReplicas": 1,
         "endpoint": f"http://127.0.0.1:35981/d/{ns}/qwen-72b/v1"}
        for i, ns in enumerate(["team-ai", "default"])
    ]
    con, out = terminal(60)
    print_rows(con, Output.table, LIST_COLS, rows)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["name", "id", "namespace", "status", "replicas"]
    assert "team-ai" in lines[1] and "default" in lines[2]
    assert all(len(line) <= 60 for line in lines)


@pytest.mark.parametrize(
    ("retry_at", "said"),
    [
        ("2026-12-06T22:00:34.086522Z", "retry:        at 2026-12-06 22:00:34 UTC, by itself"),
        (None, "retry:        no; fix the request, then delete and deploy again"),
    ],
)
def test_get_says_whether_a_failed_deployment_is_retried(retry_at: str | None, said: str) -> None:
    """`a3s get` of a failed deployment: the API's retryAt says whether to wait (the hub
    was unreachable) or to act (the model cannot be served); the user sees it too."""
    from a3s_core.cli.render import print_deployment

    d = {
        "id": "dep-ca104d1def99", "name": "ghost", "namespace": "ghost", "status": "failed",
        "readyReplicas": 0, "desiredReplicas": 1, "model": "nobody/NoSuchModel-7B",
        "engine": "vllm", "quantization": "none", "endpoint": ENDPOINT,
        "reason": "the Hugging Face Hub cannot be reached", "retryAt": retry_at,
        "suggestions": [], "replicas": [],
    }
    con, out = terminal(120)
    print_deployment(con, Output.table, d)
    assert f"  {said}" in out.getvalue().splitlines()
