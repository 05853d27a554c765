"""`a3s deploy --watch` of several models: the events of all of them come out as one
stream in the platform's order (seq), the summary (endpoints) comes last, and the live
table never folds an endpoint, at any width."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from pathlib import Path

import pytest
from cli_kit import a3s, admin, request_file, text
from events_testkit import BROKEN_MODEL, REAL_MODEL, TO_RUNNING, Server
from rich.cells import cell_len
from rich.console import Console
from websockets.asyncio.server import ServerConnection, serve

from a3s_core.cli.client import Client
from a3s_core.cli.merge import SeqMerge
from a3s_core.cli.watch import Progress, _table, watch_deployments


def event_lines(lines: list[str]) -> list[tuple[int, str, str]]:
    """(seq, type, name) of each event line (`HH:MM:SS  seq type name message`)."""
    out = []
    for line in lines:
        words = line.split()
        if len(words) >= 4 and words[1].isdigit():
            out.append((int(words[1]), words[2], words[3]))
    return out


def test_watch_of_several_models_prints_one_stream_in_seq_order(
    platform: Server, tmp_path: Path
) -> None:
    names = ["chat", "embed", "rerank"]
    f = request_file(tmp_path, *({"name": n, "model": REAL_MODEL} for n in names))
    r = a3s(platform.url, "deploy", f, "--watch", columns=80)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    endpoints = {row.split("\t")[0]: row.split("\t")[3] for row in lines[1:4]}
    events = event_lines(lines[4:])
    seqs = [seq for seq, _, _ in events]
    assert seqs == sorted(seqs), f"events out of order: {seqs}"
    for n in names:
        assert [t for _, t, name in events if name == n] == TO_RUNNING
    # the summary last, after every event, each endpoint whole
    assert lines[-3:] == [f"✓ {n} is running at {endpoints[n]}" for n in names]
    assert len(lines) == 4 + len(events) + 3
    # `a3s events` reads one stream over all of them: the same events, the same order
    r = a3s(platform.url, "events", columns=80)
    assert r.exit_code == 0, r.output
    assert event_lines(r.stdout.splitlines()) == events


def envelope(seq: int, dep: str, kind: str) -> str:
    data = {"endpoint": f"http://127.0.0.1:1/team-ai/{dep}/v1"} if kind.endswith("running") else {}
    return json.dumps({
        "seq": seq, "ts": "2026-01-01T00:00:00+00:00", "type": kind, "deploymentId": dep,
        "name": dep, "level": "info", "message": f"{dep} {kind}", "data": data,
    })


async def test_a_stream_that_speaks_late_still_gets_its_earlier_events_printed_first() -> None:
    """Scripted platform: deployment `a` has seqs 2, 4, 6 and its socket sends them at
    once; `b` has 1, 3, 5 and its socket sends them a moment later. Printed as they came,
    `a` ran ahead of `b` (a's `running` before b's first event)."""
    connected: set[str] = set()
    both = asyncio.Event()
    script = {
        "a": [(2, "deployment.accepted"), (4, "replica.starting"), (6, "deployment.running")],
        "b": [(1, "deployment.accepted"), (3, "replica.starting"), (5, "deployment.running")],
    }

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        dep = ws.request.path.split("/")[3]
        connected.add(dep)
        if connected == {"a", "b"}:
            both.set()
        await both.wait()
        if dep == "b":
            await asyncio.sleep(0.05)
        for seq, kind in script[dep]:
            await ws.send(envelope(seq, dep, kind))
        await ws.wait_closed()  # the watch hangs up once both are running

    async with serve(handler, "127.0.0.1", 0) as srv:
        port = next(iter(srv.sockets)).getsockname()[1]
        out = io.StringIO()
        con = Console(file=out, width=200, force_terminal=False, color_system=None)
        ok = await watch_deployments(Client(f"http://127.0.0.1:{port}", "tok"), ["a", "b"], con)
    assert ok is True
    lines = out.getvalue().splitlines()
    assert [seq for seq, _, _ in event_lines(lines)] == [1, 2, 3, 4, 5, 6]
    assert lines[-2:] == [
        "✓ a is running at http://127.0.0.1:1/team-ai/a/v1",
        "✓ b is running at http://127.0.0.1:1/team-ai/b/v1",
    ]


async def test_merge_waits_for_a_quiet_stream_only_a_moment() -> None:
    got: list[tuple[str, int]] = []
    m = SeqMerge(["a", "b"], lambda s, e: got.append((s, e["seq"])), delay=0.1)
    m.push("a", {"seq": 5})
    m.push("a", {"seq": 7})
    assert got == []  # b may still say something earlier
    m.push("b", {"seq": 6})
    assert got == [("a", 5), ("b", 6)]  # a has passed 6, b has passed 5 but not 7
    start = time.monotonic()
    while len(got) < 3 and time.monotonic() - start < 2:
        await asyncio.sleep(0.01)
    assert got == [("a", 5), ("b", 6), ("a", 7)]  # b stayed quiet: not held for ever
    assert time.monotonic() - start >= 0.08  # held for its moment first
    m.push("b", {"seq": 3})  # too late for its place: printed all the same, at once
    assert got[-1] == ("b", 3)
    m.push("b", {"seq": 9})
    assert got[-1] == ("b", 3)  # a may still say 8
    m.close("a")  # it will not
    assert got[-1] == ("b", 9)
    m.push("b", {"seq": 10})
    m.push("b", {"seq": 11})
    assert got[-2:] == [("b", 10), ("b", 11)]  # nothing left to wait for



ENDPOINT = "http://127.0.0.1:18080/d/team-ai/chat-assistant/v1"
URL = re.compile(r"http://\S+")


@pytest.mark.parametrize("width", [60, 120])
def test_the_live_table_never_folds_an_endpoint(width: int) -> None:
    """At 60 columns the endpoint in the last message was folded inside its cell
    (`…/team-ai/` on one line, `chat-assistant/v1` on the next)."""
    running = Progress(id="dep-a990a79f9c3c")
    running.fold({
        "type": "deployment.running", "name": "chat-assistant",
        "message": f"chat-assistant is running: 1 of 1 replica(s) ready at {ENDPOINT}",
        "data": {"endpoint": ENDPOINT},
    })
    starting = Progress(id="dep-fc6634b7176a")
    starting.fold({"type": "replica.starting", "name": "embedder",
                   "message": "embedder: starting replica embedder-7dbfdeacf471 on gpu-a100-0"})
    out = io.StringIO()
    con = Console(file=out, width=width, force_terminal=True, color_system=None)
    con.print(_table([running, starting], con))
    lines = out.getvalue().splitlines()
    assert all(cell_len(line) <= width for line in lines)
    assert "chat-assistant" in lines[1] and "embedder" in out.getvalue()
    assert all(u == ENDPOINT for u in URL.findall(out.getvalue())), out.getvalue()
    # narrow: the message (with the endpoint) is left out; wide: shown, the endpoint whole
    assert (ENDPOINT in out.getvalue()) is (width == 120)


@pytest.mark.parametrize("columns", [60, 120])
def test_watch_on_a_terminal_shows_every_endpoint_whole(
    platform: Server, tmp_path: Path, columns: int
) -> None:
    names = [f"chat-assistant-{columns}", f"embedder-{columns}"]
    f = request_file(tmp_path, *({"name": n, "model": REAL_MODEL} for n in names))
    r = a3s(platform.url, "deploy", f, "--watch", columns=columns, terminal=True)
    assert r.exit_code == 0, r.output
    out = text(r)
    listed = admin(platform.url).get("/v1/deployments").json()
    endpoints = {d["name"]: d["endpoint"] for d in listed}
    urls = URL.findall(out)
    assert urls and set(urls) <= set(endpoints.values()), urls  # none folded, none cut
    assert out.splitlines()[-2:] == [f"✓ {n} is running at {endpoints[n]}" for n in names]
    # the table is labelled with the names from the first frame, not with ids
    assert any(names[0] in line and "pending" in line for line in out.splitlines())


def test_watch_with_one_model_failing_exits_1_with_both_outcomes_last(
    platform: Server, tmp_path: Path
) -> None:
    f = request_file(
        tmp_path, {"name": "chat", "model": REAL_MODEL}, {"name": "broken", "model": BROKEN_MODEL}
    )
    r = a3s(platform.url, "deploy", f, "--watch", columns=80)
    assert r.exit_code == 1, r.output
    lines = r.stdout.splitlines()
    seqs = [seq for seq, _, _ in event_lines(lines[3:])]
    assert seqs and seqs == sorted(seqs)
    assert lines[-2].startswith("✓ chat is running at http://")
    assert lines[-1].startswith("✗ broken failed: ") and "num_hidden_layers" in lines[-1]
