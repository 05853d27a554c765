"""get/rm/scale/logs/rotate-key by name or id, escaped; failures exit non-zero with one
readable line; every object-printing command has -o; help without `<bool>` or jargon."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cli_kit import a3s, admin, key_works, request_file, text
from events_testkit import BROKEN_MODEL, TEST_MODEL, Server, wait_status
from typer.testing import CliRunner

from a3s_core.cli import main as cli_main
from a3s_core.cli.client import Client, NotFound, path
from a3s_core.cli.main import app
from a3s_core.testing import ADMIN_TOKEN


def deploy_json(server: Server, tmp_path: Path, name: str, namespace: str) -> dict[str, Any]:
    """Deployed through the API, so these tests depend on no other command."""
    body = {"models": [{"name": name, "model": TEST_MODEL}], "namespace": namespace}
    r = admin(server.url).post("/v1/deployments", json=body)
    assert r.status_code == 202, r.text
    return r.json()["deployments"][0]  # type: ignore[no-any-return]


def test_commands_take_a_name_with_namespace_or_an_id(platform: Server, tmp_path: Path) -> None:
    a = deploy_json(platform, tmp_path, "chat", "team-a")
    b = deploy_json(platform, tmp_path, "chat", "team-b")
    solo = deploy_json(platform, tmp_path, "solo", "team-a")
    url = platform.url

    r = a3s(url, "get", "chat")
    assert r.exit_code == 1
    assert "'chat' names a deployment in several namespaces (team-a, team-b)" in r.stderr
    assert "-n NAMESPACE" in r.stderr

    for args, want in [
        (["get", "chat", "-n", "team-a", "-o", "json"], a["id"]),
        (["get", "chat", "--namespace", "team-b", "-o", "json"], b["id"]),
        (["get", "solo", "-o", "json"], solo["id"]),  # one of that name: no -n needed
        (["get", a["id"], "-o", "json"], a["id"]),
        (["get", a["id"], "-n", "team-a", "-o", "yaml"], a["id"]),
    ]:
        r = a3s(url, *args)
        assert r.exit_code == 0, (args, r.output)
        doc = yaml.safe_load(r.stdout)  # JSON is YAML too
        assert doc["id"] == want, args

    r = a3s(url, "get", a["id"], "-n", "team-b")
    assert r.exit_code == 1 and f"no deployment with id or name '{a['id']}' in namespace" in (
        r.stderr
    )

    r = a3s(url, "scale", "chat", "2", "-n", "team-a")
    assert r.exit_code == 0, r.output
    assert r.stdout == f"chat ({a['id']}) in team-a: desired replicas 2\n"
    d = admin(url).get(f"/v1/deployments/{a['id']}").json()
    assert d["desiredReplicas"] == 2
    assert admin(url).get(f"/v1/deployments/{b['id']}").json()["desiredReplicas"] == 1

    assert key_works(url, b["endpoint"], b["apiKey"])
    r = a3s(url, "rotate-key", "chat", "-n", "team-b")
    assert r.exit_code == 0, r.output
    new_key = r.stdout.strip()  # the key alone, for `KEY=$(a3s rotate-key chat -n team-b)`
    assert new_key.startswith("sk-a3s-") and new_key != b["apiKey"]
    assert key_works(url, b["endpoint"], new_key)
    assert key_works(url, a["endpoint"], a["apiKey"])  # the other chat's key is untouched

    wait_status(admin(url), solo["id"], "running")
    r = a3s(url, "logs", "solo", "--tail", "5", "-o", "json")
    assert r.exit_code == 0, r.output

    r = a3s(url, "rm", "chat", "-n", "team-a")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"chat ({a['id']}) in team-a: delet")
    assert admin(url).get(f"/v1/deployments/{b['id']}").json()["status"] != "deleted"
    wait_status(admin(url), a["id"], "deleted")
    r = a3s(url, "get", "chat", "-n", "team-a", "-o", "json")  # deleted, still shown
    assert r.exit_code == 0 and json.loads(r.stdout)["status"] == "deleted"
    r = a3s(url, "get", "chat", "-o", "json")  # the live one is the only one now
    assert r.exit_code == 0 and json.loads(r.stdout)["id"] == b["id"]


@pytest.mark.parametrize(
    "command", [["get"], ["rm"], ["scale", "2"], ["rotate-key"], ["logs"]]
)
def test_bad_or_sneaky_references_fail_clearly_and_touch_nothing(
    platform: Server, tmp_path: Path, command: list[str]
) -> None:
    d = deploy_json(platform, tmp_path, "target", "team-ai")
    before = wait_status(admin(platform.url), d["id"], "running")
    for ref, message in [
        ("", "a deployment id or name is required (got an empty string)"),
        (f"x/../{d['id']}", "is not a deployment id or name"),
        (f"../{d['id']}", "is not a deployment id or name"),
        ("UPPER", "is not a deployment id or name"),
        ("nope", "no deployment with id or name 'nope'"),
    ]:
        r = a3s(platform.url, command[0], ref, *command[1:])
        assert r.exit_code == 1, (ref, r.output)
        assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
        assert message in r.stderr, (ref, r.stderr)
        assert d["id"] not in r.stdout
    after = admin(platform.url).get(f"/v1/deployments/{d['id']}").json()
    assert (after["status"], after["desiredReplicas"]) == (
        before["status"],
        before["desiredReplicas"],
    )
    assert key_works(platform.url, d["endpoint"], d["apiKey"])


def test_a_bad_namespace_is_named_as_the_namespace(platform: Server, tmp_path: Path) -> None:
    d = deploy_json(platform, tmp_path, "target", "team-ai")
    for command in (["get", "target"], ["scale", "target", "2"], ["logs", "target"]):
        r = a3s(platform.url, *command, "-n", "Team_AI")
        assert r.exit_code == 1, r.output
        assert r.stderr.startswith("error: namespace 'Team_AI' is not a valid namespace"), r.stderr
        assert "deployment id or name" not in r.stderr
    assert admin(platform.url).get(f"/v1/deployments/{d['id']}").json()["desiredReplicas"] == 1


def test_a_url_without_scheme_or_with_a_path_is_understood_or_explained(
    platform: Server,
) -> None:
    """`--url 127.0.0.1:PORT` (as curl takes it) means http://; `--url …/v1` (the OpenAI
    base_url habit) gets a 404 that says the URL is the platform's address, not a path."""
    hostport = platform.url.removeprefix("http://")
    r = a3s(hostport, "ls")
    assert r.exit_code == 0, r.stderr
    r = a3s(platform.url + "/v1", "ls")
    assert r.exit_code == 1
    assert platform.url + "/v1" in r.stderr and "without a path" in r.stderr, r.stderr


def test_ids_are_escaped_in_the_url(platform: Server, tmp_path: Path) -> None:
    d = deploy_json(platform, tmp_path, "target", "team-ai")
    assert path("v1", "deployments", f"x/../{d['id']}") == f"/v1/deployments/x%2F..%2F{d['id']}"
    c = Client(platform.url, ADMIN_TOKEN)
    with pytest.raises(NotFound):
        c.request("GET", path("v1", "deployments", f"x/../{d['id']}"))
    assert c.request("GET", path("v1", "deployments", d["id"]))["id"] == d["id"]


def test_plan_exits_non_zero_when_a_model_cannot_be_sized(
    platform: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    both = request_file(
        tmp_path, {"name": "good", "model": TEST_MODEL}, {"name": "bad", "model": BROKEN_MODEL}
    )
    r = a3s(platform.url, "plan", both)
    assert r.exit_code == 1
    assert "config.json has no num_hidden_layers" in r.stdout  # the plan is still shown
    assert "error: could not size bad" in r.stderr
    r = a3s(platform.url, "plan", both, "-o", "json")
    assert r.exit_code == 1
    assert [m["name"] for m in json.loads(r.stdout)["models"]] == ["good", "bad"]

    good = request_file(tmp_path, {"name": "good", "model": TEST_MODEL})
    r = a3s(platform.url, "plan", good)
    assert r.exit_code == 0, r.output
    assert "candidates (best first)" not in r.stdout  # plain: a header line, then tabs
    assert "GPU\tcount\tTP\tdtype" in r.stdout

    # The platform may answer a failed sizing with an error status instead.
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            422, json={"error": {"code": "sizing_failed", "message": "bad: no config.json"}}
        )

    def client(url: str | None, token: str | None) -> Client:
        c = Client(url, token)
        c.http = httpx.Client(base_url=c.url, transport=httpx.MockTransport(refuse))
        return c

    monkeypatch.setattr(cli_main, "client", client)
    r = a3s(platform.url, "plan", both)
    assert r.exit_code == 1
    assert r.stderr == "error: 422: bad: no config.json\n"


def test_failures_exit_non_zero_with_one_line(tmp_path: Path) -> None:
    nowhere = "http://127.0.0.1:9"
    for args in (["ls"], ["get", "x"], ["cluster"], ["events"], ["logs", "x"]):
        r = a3s(nowhere, *args)
        assert r.exit_code == 1, (args, r.output)
        assert r.stderr.startswith("error: cannot reach the platform at http://127.0.0.1:9")
    r = a3s(nowhere, "deploy", str(tmp_path / "missing.json"))
    assert r.exit_code == 1 and "cannot read" in r.stderr


def test_every_listing_has_every_form(platform: Server, tmp_path: Path) -> None:
    d = deploy_json(platform, tmp_path, "chat", "team-ai")
    url = platform.url
    for args, check in [
        (["ls"], lambda doc: [x["id"] for x in doc] == [d["id"]]),
        (["cluster"], lambda doc: doc["nodes"] and "totals" in doc),
        (["plugins"], lambda doc: any(p["name"] for p in doc)),
        (["get", "chat"], lambda doc: doc["endpoint"] == d["endpoint"]),
    ]:
        for form, load in (("json", json.loads), ("yaml", yaml.safe_load)):
            r = a3s(url, *args, "-o", form)
            assert r.exit_code == 0, (args, r.output)
            assert check(load(r.stdout)), (args, form)
        r = a3s(url, *args)  # piped: plain, tab-separated where there is a table
        assert r.exit_code == 0 and "…" not in r.stdout, (args, r.output)
        r = a3s(url, *args, columns=40, terminal=True)
        assert r.exit_code == 0 and "…" not in text(r), (args, r.output)
    r = a3s(url, "ls")
    header, row = r.stdout.splitlines()
    assert header.split("\t") == [
        "name", "id", "namespace", "model", "engine", "status", "replicas", "endpoint"
    ]
    assert row.split("\t")[1] == d["id"] and row.split("\t")[7] == d["endpoint"]
    r = a3s(url, "get", "chat", columns=40, terminal=True)
    assert f"  endpoint:     {d['endpoint']}" in text(r).splitlines()
    r = a3s(url, "events", "-o", "json")
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert events[0]["type"] == "deployment.accepted" and events[0]["name"] == "chat"
    r = a3s(url, "events", "--deployment", "chat", "-n", "team-ai")
    assert r.exit_code == 0 and "deployment.accepted" in r.stdout


COMMANDS = [
    "serve", "deploy", "plan", "ls", "get", "rm", "scale", "rotate-key", "cluster",
    "plugins", "events", "logs",
]


def test_help_has_no_bool_metavar_and_no_internal_jargon() -> None:
    r = a3s("http://127.0.0.1:9", "--help")
    assert r.exit_code == 0
    assert [c for c in COMMANDS if f"  {c} " not in r.stdout] == []
    for command in COMMANDS:
        r = a3s("http://127.0.0.1:9", command, "--help", columns=100)
        assert r.exit_code == 0, command
        assert "<bool>" not in r.stdout, command
        assert "seed" not in r.stdout.lower(), command
        if command != "serve":
            assert "-o, --output" in r.stdout, command
    r = a3s("http://127.0.0.1:9", "deploy", "--help")
    assert "-w, --watch " in r.stdout


def test_the_openapi_document_speaks_to_users(platform: Server) -> None:
    doc = httpx.get(platform.url + "/openapi.json").text
    assert "seed" not in doc.lower()


def test_unreachable_default_url_says_how_to_point_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`a3s serve --port 9000`, then `a3s ls`: the token is found in the data dir but the
    port is not, so the error says how to give the address — and only when none was given."""
    monkeypatch.delenv("A3S_URL", raising=False)
    monkeypatch.setattr("a3s_core.cli.client.default_url", lambda: "http://127.0.0.1:9")
    for args in (["ls"], ["events"]):
        r = CliRunner().invoke(app, args, env={"A3S_URL": None, "A3S_TOKEN": "t"})
        assert r.exit_code == 1, r.output
        assert r.stderr.startswith("error: cannot reach the platform at http://127.0.0.1:9")
        assert "--url" in r.stderr and "A3S_URL" in r.stderr
    r = a3s("http://127.0.0.1:9", "ls")
    assert r.exit_code == 1 and "A3S_URL" not in r.stderr


def test_no_token_found_says_where_it_was_looked_for(platform: Server, tmp_path: Path) -> None:
    """`a3s serve --data-dir X` elsewhere, then `a3s ls`: the CLI looked for the token in
    its own data dir and found none; "send 'Authorization: Bearer <token>'" is HTTP talk,
    the CLI user needs the option, the variable and the file it looked in."""
    env = {"A3S_URL": platform.url, "A3S_TOKEN": None, "A3S_ADMIN_TOKEN": None,
           "A3S_DATA_DIR": str(tmp_path)}
    for command in (["ls"], ["events"]):
        r = CliRunner().invoke(app, command, env=env)
        assert r.exit_code == 1
        assert "--token" in r.stderr and "A3S_TOKEN" in r.stderr, r.stderr
        assert str(tmp_path / "admin-token") in r.stderr
    (tmp_path / "admin-token").write_text("a3s-admin-stale\n")
    r = CliRunner().invoke(app, ["ls"], env=env)
    assert r.exit_code == 1
    assert "wrong admin token" in r.stderr and str(tmp_path / "admin-token") in r.stderr


def test_an_empty_url_setting_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A3S_URL", "")
    assert Client(None, "t").url == "http://127.0.0.1:8080"
