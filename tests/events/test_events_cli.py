"""The CLI's live views: `deploy --watch` to running or to a clear refusal, `events`,
`logs`, and resuming with `since` after an overflow notice or a dropped connection."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from events_testkit import REAL_MODEL, TO_RUNNING, Server, TinySizing, deploy
from rich.console import Console
from websockets.asyncio.server import ServerConnection, serve

from a3s_core.api.app import create_app
from a3s_core.cli.client import Client, CliError
from a3s_core.cli.watch import Progress, stream_events, stream_logs, summary, watch_deployments
from a3s_core.testing import ADMIN_TOKEN


def console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200, force_terminal=False, color_system=None), out


@pytest.fixture
def server(a3s_settings: Any, a3s_plugins: Any, register_plugin: Any) -> Iterator[Server]:
    register_plugin(a3s_plugins, TinySizing(), "events-tiny-sizing")
    with Server(create_app(a3s_settings, a3s_plugins)) as s:
        yield s


def client_of(server: Server, token: str | None = ADMIN_TOKEN) -> Client:
    return Client(server.url, token)


async def test_deploy_watch_ends_running_and_events_print_in_order(server: Server) -> None:
    client = client_of(server)
    dep = deploy(client.http, "chat", model=REAL_MODEL)["deployments"][0]
    con, out = console()
    assert await watch_deployments(client, [dep["id"]], con) is True
    text = out.getvalue()
    assert "chat is running at http://" in text
    positions = [text.index(t) for t in TO_RUNNING]
    assert positions == sorted(positions), "steps printed out of order"

    con, out = console()
    await stream_events(client, con, since=0, follow=False, namespace=None, deployment=None)
    lines = out.getvalue().splitlines()
    assert [line.split()[2] for line in lines] == TO_RUNNING
    con, out = console()
    await stream_events(client, con, since=3, follow=False, namespace="other", deployment=None)
    assert out.getvalue() == ""

    con, out = console()
    await stream_logs(client, con, dep["id"], tail=10, follow=False)
    assert out.getvalue().count("fake engine log") == 1


async def test_following_logs_ends_when_the_deployment_is_deleted(server: Server) -> None:
    client = client_of(server)
    dep = deploy(client.http, "chat", model=REAL_MODEL)["deployments"][0]
    assert await watch_deployments(client, [dep["id"]], console()[0]) is True
    con, out = console()
    follow = asyncio.ensure_future(stream_logs(client, con, dep["id"], tail=10, follow=True))
    await asyncio.sleep(0.3)
    assert not follow.done()  # following, as long as the deployment lives
    assert client.http.delete(f"/v1/deployments/{dep['id']}").status_code == 202
    await asyncio.wait_for(follow, 20)  # then it ends by itself, not by an error
    text = out.getvalue()
    assert text.count("fake engine log") == 1
    assert text.rstrip().endswith("end of logs: deployment deleted")


async def test_deploy_watch_reports_unschedulable_with_reason_and_suggestions(
    a3s_settings: Any, a3s_plugins: Any, register_plugin: Any
) -> None:
    register_plugin(a3s_plugins, TinySizing(), "events-tiny-sizing")
    settings = a3s_settings.model_copy(
        update={"runtime_options": {"nodes": [("gpu-l4-0", "L4", 23034, 1)]}}
    )
    with Server(create_app(settings, a3s_plugins)) as server:
        client = client_of(server)
        dep = deploy(client.http, "chat")["deployments"][0]
        con, out = console()
        assert await watch_deployments(client, [dep["id"]], con) is False
    text = out.getvalue()
    assert "✗ chat is unschedulable:" in text
    assert "A100-80GB" in text


async def test_bad_token_is_a_readable_cli_error(server: Server) -> None:
    con, _ = console()
    with pytest.raises(CliError, match="401: wrong admin token"):
        await stream_events(client_of(server, "wrong"), con, 0, False, None, None)
    with pytest.raises(CliError, match="404: deployment 'dep-nope' does not exist"):
        await stream_logs(client_of(server), con, "dep-nope", tail=1, follow=False)


def envelope(seq: int) -> str:
    return json.dumps(
        {
            "seq": seq,
            "ts": "2026-01-01T00:00:00+00:00",
            "type": "test.tick",
            "name": "x",
            "level": "info",
            "message": f"tick {seq}",
            "data": {},
        }
    )


async def test_resumes_with_since_after_overflow_and_after_a_drop() -> None:
    """A scripted server: overflow on the first connection, a dropped connection on the
    second; the client must reconnect from the right seq and print each event once."""
    sinces: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        query = parse_qs(urlsplit(ws.request.path).query)
        assert ws.request.headers["Authorization"] == "Bearer tok"
        sinces.append(query["since"][0])
        n = len(sinces)
        if n == 1:
            for seq in (1, 2):
                await ws.send(envelope(seq))
            await ws.send(
                json.dumps(
                    {
                        "type": "stream.overflow",
                        "resumeFrom": 2,
                        "message": "client too slow; reconnect with since=2",
                    }
                )
            )
            await ws.close(1013, "client too slow; reconnect with since=2")
        elif n == 2:
            for seq in (2, 3, 4):  # 2 again: the client must not print it twice
                await ws.send(envelope(seq))
            ws.transport.abort()  # the network drops
        else:
            await ws.send(json.dumps({"type": "heartbeat", "ts": "", "seq": 4}))
            await ws.send(envelope(5))
            await ws.close(1000, "caught up at seq 5")

    async with serve(handler, "127.0.0.1", 0) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        con, out = console()
        await stream_events(Client(f"http://127.0.0.1:{port}", "tok"), con, 0, False, None, None)
    assert sinces == ["0", "2", "4"]
    ticks = [line.split()[-1] for line in out.getvalue().splitlines() if "tick" in line]
    assert ticks == ["1", "2", "3", "4", "5"]


def test_watch_folds_events_into_status_reason_and_suggestions() -> None:
    p = Progress(id="dep-1")
    for kind in ("deployment.accepted", "sizing.started", "sizing.completed"):
        p.fold({"type": kind, "name": "chat", "message": kind})
    assert (p.status, p.done) == ("scheduling", False)
    p.fold({"type": "scheduling.completed", "message": "placed"})
    p.fold({"type": "scheduling.failed", "message": "cannot place another replica"})
    assert not p.done, "a second replica that does not fit does not end the watch"
    p.fold({"type": "replica.failed", "message": "engine exited"})
    p.fold(
        {
            "type": "scheduling.failed",
            "message": "chat: cannot place a replica: needs 4× H100",
            "data": {"reason": "needs 4× H100", "suggestions": ["use AWQ", "max_model_len 8192"]},
        }
    )
    assert (p.status, p.reason, p.suggestions) == (
        "unschedulable",
        "needs 4× H100",
        ["use AWQ", "max_model_len 8192"],
    )
    con, out = console()
    con.print(summary(p))
    assert out.getvalue().splitlines() == [
        "✗ chat is unschedulable: needs 4× H100",
        "  try: use AWQ",
        "  try: max_model_len 8192",
    ]
    q = Progress(id="dep-2")
    q.fold({"type": "sizing.failed", "name": "big", "message": "no config.json"})
    assert (q.status, q.reason) == ("failed", "no config.json")


def test_summary_reads_as_a_sentence_for_each_outcome() -> None:
    con, out = console()
    for status, reason in [("failed", "no config.json"), ("deleted", "deleted by the API")]:
        p = Progress(id="dep-1", name="big", status=status, reason=reason)
        con.print(summary(p))
    assert out.getvalue().splitlines() == [
        "✗ big failed: no config.json",
        "✗ big was deleted: deleted by the API",
    ]


async def test_reconnect_notices_go_to_stderr_and_stdout_keeps_only_events() -> None:
    """`a3s events -f -o json | jq` across a platform restart: the "connection lost;
    reconnecting…" and overflow notices are for the person, on stderr; stdout holds one
    event a line and nothing else."""
    calls = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await ws.send(envelope(1))
            await ws.send(json.dumps({"type": "stream.overflow", "resumeFrom": 1,
                                      "message": "client too slow; reconnect with since=1"}))
            await ws.close(1013, "client too slow")
        elif calls == 2:
            await ws.send(envelope(2))
            ws.transport.abort()  # the platform restarts
        else:
            await ws.send(envelope(3))
            await ws.close(1000, "caught up at seq 3")

    async with serve(handler, "127.0.0.1", 0) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        con, out = console()
        notices, err = console()
        await stream_events(
            Client(f"http://127.0.0.1:{port}", "tok"), con, 0, False, None, None,
            documents="json", notices=notices,
        )
    assert [json.loads(line)["seq"] for line in out.getvalue().splitlines()] == [1, 2, 3]
    assert "resuming" in err.getvalue() and "reconnecting" in err.getvalue()
