"""`a3s deploy` against a real platform: the key, endpoint and id it shows only once come
out whole and working, piped or on a terminal of any width, and in every `-o` form."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cli_kit import a3s, admin, key_works, request_file, text
from events_testkit import REAL_MODEL, TEST_MODEL, Server

from a3s_core.testing import ADMIN_TOKEN


def created(server: Server, dep_id: str) -> dict[str, str]:
    d = admin(server.url).get(f"/v1/deployments/{dep_id}").json()
    return {"id": d["id"], "name": d["name"], "endpoint": d["endpoint"]}


def test_piped_deploy_is_tab_separated_with_the_whole_key(
    platform: Server, tmp_path: Path
) -> None:
    f = request_file(tmp_path, {"name": "qwen-72b-instruct", "model": TEST_MODEL})
    r = a3s(platform.url, "deploy", f, columns=80)
    assert r.exit_code == 0, r.output
    header, row = r.stdout.splitlines()
    assert header.split("\t") == ["name", "id", "namespace", "endpoint", "apiKey", "status"]
    name, dep_id, namespace, endpoint, key, status = row.split("\t")
    assert (name, namespace, status) == ("qwen-72b-instruct", "team-ai", "pending")
    assert created(platform, dep_id) == {"id": dep_id, "name": name, "endpoint": endpoint}
    assert key.startswith("sk-a3s-") and "…" not in key
    assert key_works(platform.url, endpoint, key)


@pytest.mark.parametrize("columns", [40, 80, 200])
def test_deploy_on_a_terminal_never_cuts_key_endpoint_or_id(
    platform: Server, tmp_path: Path, columns: int
) -> None:
    f = request_file(
        tmp_path,
        {"name": f"chat-with-a-long-name-{columns}", "model": TEST_MODEL},
        {"name": f"other-{columns}", "model": TEST_MODEL},
    )
    r = a3s(platform.url, "deploy", f, columns=columns, terminal=True)
    assert r.exit_code == 0, r.output
    out = text(r)
    assert "\t" not in out and "…" not in out  # the terminal form, and nothing cut
    lines = out.splitlines()
    ids = [d["id"] for d in admin(platform.url).get("/v1/deployments").json()]
    assert len(ids) == 2
    for dep_id in ids:
        d = created(platform, dep_id)
        for value in d.values():
            assert any(value in line for line in lines), f"{value} cut at {columns} columns"
    keys = [w for line in lines for w in line.split() if w.startswith("sk-a3s-")]
    assert len(keys) == 2 and all(len(k) == len(keys[0]) for k in keys)


@pytest.mark.parametrize("form", ["json", "yaml"])
def test_deploy_as_a_document(platform: Server, tmp_path: Path, form: str) -> None:
    f = request_file(tmp_path, {"name": "chat", "model": TEST_MODEL})
    r = a3s(platform.url, "deploy", f, "-o", form, columns=40, terminal=True)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout) if form == "json" else yaml.safe_load(r.stdout)
    (d,) = doc["deployments"]
    assert created(platform, d["id"])["endpoint"] == d["endpoint"]
    assert d["apiKey"].startswith("sk-a3s-") and doc["namespace"] == "team-ai"


def test_deploy_watch_does_not_show_the_status_at_submit_time(
    platform: Server, tmp_path: Path
) -> None:
    """The status column said `pending` above events already at `replica.starting`."""
    f = request_file(tmp_path, {"name": "chat", "model": REAL_MODEL})
    r = a3s(platform.url, "deploy", f, "--watch", columns=80)
    assert r.exit_code == 0, r.output
    header, row, *events = r.stdout.splitlines()
    assert header.split("\t") == ["name", "id", "namespace", "endpoint", "apiKey"]
    assert "pending" not in r.stdout
    assert any("replica.starting" in line for line in events)
    endpoint = row.split("\t")[3]
    assert events[-1] == f"✓ chat is running at {endpoint}"

    f = request_file(tmp_path, {"name": "json-chat", "model": REAL_MODEL})
    r = a3s(platform.url, "deploy", f, "--watch", "-o", "json", columns=80)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # stdout holds the document alone; progress went to stderr
    assert doc["deployments"][0]["name"] == "json-chat"
    assert "json-chat is running at" in r.stderr


def test_deploy_piped_through_a_real_pipe_at_80_columns(
    platform: Server, tmp_path: Path
) -> None:
    f = request_file(tmp_path, {"name": "piped", "model": TEST_MODEL})
    env = {
        **os.environ,
        "COLUMNS": "80",
        "A3S_URL": platform.url,
        "A3S_TOKEN": ADMIN_TOKEN,
    }
    env.pop("FORCE_COLOR", None)
    env.pop("TTY_COMPATIBLE", None)
    p = subprocess.run(
        [sys.executable, "-m", "a3s_core.cli.main", "deploy", f],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    row = p.stdout.splitlines()[1].split("\t")
    d = created(platform, row[1])
    assert (row[0], row[3]) == (d["name"], d["endpoint"])
    assert key_works(platform.url, row[3], row[4])
