"""The CLI's live views over the platform's WebSocket streams.

- `watch_deployments`: `a3s deploy FILE --watch` — one row per deployment (status, current
  step, last message), the events of all of them printed above it as one stream in the
  platform's order (merge.py); ends when each deployment is running, failed, unschedulable
  or deleted, with a summary last: the endpoints, or the reason and the suggestions.
- `stream_events`: `a3s events [-f]` — one line per event.
- `stream_logs`: `a3s logs ID [-f]` — replica log lines, prefixed with the replica id.

Event streams resume with `since=<last seq>` after a dropped connection or an overflow
notice, so nothing is missed or printed twice.
"""

from __future__ import annotations

import asyncio
import json
import socket
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import yaml
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner
from rich.text import Text
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from a3s_core.cli.client import Client, CliError
from a3s_core.cli.client import path as url_path
from a3s_core.cli.merge import SeqMerge
from a3s_core.cli.output import Col, fitting_table

BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)  # seconds between reconnects
MAX_ATTEMPTS = 8  # consecutive failed connects before giving up
LEVEL_STYLE = {"debug": "dim", "info": "cyan", "warning": "yellow", "error": "red"}
REPLICA_STYLES = ("cyan", "magenta", "green", "yellow", "blue", "bright_red")

OnMessage = Callable[[dict[str, Any]], Awaitable[bool]]  # True: stop reading


def _headers(client: Client) -> dict[str, str]:
    return {"Authorization": f"Bearer {client.token}"} if client.token else {}


def _refusal(exc: InvalidStatus, client: Client) -> CliError:
    """The platform's own error message from a refused handshake (401, 404, 422)."""
    response = exc.response
    try:
        message = json.loads(response.body or b"{}")["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = (response.body or b"").decode(errors="replace") or response.reason_phrase
    hint = client.token_hint() if response.status_code == 401 else ""
    return CliError(f"{response.status_code}: {message}{hint}")


async def _stream(
    client: Client,
    path: str,
    params: dict[str, Any],
    on_message: OnMessage,
    *,
    follow: bool,
    since: int | None = None,
    console: Console | None = None,
) -> None:
    """Read a stream until `on_message` says stop or (without follow) the server closes it.
    With `since`, reconnect after a drop or an overflow from the last seq seen; without it
    (logs), reconnect for new lines only (`tail=0`). `console` gets the notices about
    that (the person's terminal, never the stream's own output)."""
    last, failures, reconnected, connected = since, 0, False, False
    while True:
        query = dict(params)
        if last is not None:
            query["since"] = last
        if reconnected and since is None:
            query["tail"] = 0  # logs have no seq: only new lines after a reconnect
        url = (
            client.ws_url(path) + "?" + urlencode({k: v for k, v in query.items() if v is not None})
        )
        try:
            async with connect(url, additional_headers=_headers(client), open_timeout=10) as ws:
                failures, connected = 0, True
                async for raw in ws:
                    msg = json.loads(raw)
                    kind = msg.get("type")
                    if kind == "heartbeat":
                        continue
                    if kind == "stream.overflow":
                        last = int(msg["resumeFrom"])
                        if console:
                            console.print(f"[dim]{escape(msg.get('message', ''))}; resuming[/dim]")
                        break
                    seq = msg.get("seq")
                    if isinstance(seq, int) and last is not None:
                        if seq <= last:
                            continue  # defensive: never print an event twice
                        last = seq
                    if await on_message(msg):
                        return
                else:
                    if not follow:
                        return  # closed normally: backlog or log tail done
        except InvalidStatus as exc:
            raise _refusal(exc, client) from exc
        except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as exc:
            if not connected and isinstance(exc, ConnectionRefusedError | socket.gaierror):
                # never reached it: a wrong URL or a platform that is down; say so now
                raise client.unreachable(exc) from exc
            failures += 1
            if failures >= MAX_ATTEMPTS:
                raise CliError(f"lost the stream at {client.ws_url(path)}: {exc}") from exc
            if console:
                console.print(f"[dim]connection lost ({exc}); reconnecting…[/dim]")
        reconnected = True
        await asyncio.sleep(BACKOFF[min(failures, len(BACKOFF) - 1)])


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def _document(console: Console, msg: dict[str, Any], form: str) -> None:
    """One message as one line of JSON, or as one YAML document of a stream."""
    if form == "yaml":
        text = "---\n" + yaml.safe_dump(msg, sort_keys=False, allow_unicode=True)
    else:
        text = json.dumps(msg, ensure_ascii=False) + "\n"
    console.file.write(text)
    console.file.flush()


def _clock(ts: str | None) -> str:
    try:
        return datetime.fromisoformat(ts or "").astimezone().strftime("%H:%M:%S")
    except ValueError:
        return (ts or "")[:8]


def event_line(e: dict[str, Any]) -> Text:
    style = LEVEL_STYLE.get(e.get("level", "info"), "")
    line = Text.assemble(
        (f"{_clock(e.get('ts'))} ", "dim"),
        (f"{e.get('seq', ''):>6} ", "dim"),
        (f"{e.get('type', ''):<22} ", style),
        (f"{e.get('name') or '-':<16} ", "bold"),
        e.get("message", ""),
    )
    return line


# ---------------------------------------------------------------------- events / logs


async def stream_events(
    client: Client,
    console: Console,
    since: int,
    follow: bool,
    namespace: str | None,
    deployment: str | None,
    documents: str | None = None,
    notices: Console | None = None,
) -> None:
    """Print events after `since`; with `follow`, keep printing live ones. `documents`
    ("json" or "yaml"): each event as the API sends it, one JSON line or YAML document.
    `notices` (default stderr) gets the reconnect and overflow notices, so that stdout
    holds the events alone (`a3s events -f -o json | jq`)."""

    async def show(e: dict[str, Any]) -> bool:
        if documents:
            _document(console, e, documents)
        else:
            console.print(event_line(e), soft_wrap=True)
        return False

    params = {"namespace": namespace, "deployment": deployment, "follow": str(follow).lower()}
    await _stream(
        client, "/v1/events", params, show, follow=follow, since=since,
        console=notices or _stderr(),
    )


async def stream_logs(
    client: Client,
    console: Console,
    deployment_id: str,
    tail: int,
    follow: bool,
    documents: str | None = None,
    notices: Console | None = None,
) -> None:
    """Print the last `tail` lines of every replica; with `follow`, new lines as they come.
    `documents` ("json" or "yaml"): each message as the API sends it. `notices` (default
    stderr) gets the reconnect notices."""

    async def show(msg: dict[str, Any]) -> bool:
        end = msg.get("type") == "log.end"  # the deployment is gone: nothing more will come
        if documents:
            _document(console, msg, documents)
            return end
        if end:
            console.print(f"[dim]end of logs: {escape(str(msg.get('reason', '')))}[/dim]")
            return True
        replica = str(msg.get("replica", "?"))
        style = REPLICA_STYLES[zlib.crc32(replica.encode()) % len(REPLICA_STYLES)]
        if msg.get("type") == "log.error":
            console.print(Text.assemble((f"{replica} ", style), (msg.get("message", ""), "red")))
        else:
            console.print(
                Text.assemble(
                    (f"{replica} ", style),
                    (f"{_clock(msg.get('ts'))} ", "dim"),
                    msg.get("line", ""),
                )
            )
        return False

    params = {"tail": tail, "follow": str(follow).lower()}
    path = url_path("v1", "deployments", deployment_id, "logs")
    await _stream(client, path, params, show, follow=follow, console=notices or _stderr())


# ---------------------------------------------------------------------- deploy --watch

TERMINAL = ("running", "failed", "unschedulable", "deleted")
STATUS_OF = {  # event type → what the deployment is doing now
    "deployment.accepted": "accepted",
    "sizing.started": "sizing",
    "sizing.completed": "scheduling",
    "scheduling.completed": "deploying",
    "replica.starting": "starting",
    "replica.ready": "deploying",
    "replica.failed": "restarting",
    "replica.restarting": "restarting",
}
STATUS_STYLE = {"running": "green", "failed": "red", "unschedulable": "red", "deleted": "yellow"}


@dataclass
class Progress:
    """One deployment as the watch sees it, folded from its events."""

    id: str
    name: str = ""
    status: str = "pending"
    step: str = ""
    message: str = ""
    placed: int = 0  # replicas booked and not yet failed or stopped
    reason: str = ""
    suggestions: list[str] = field(default_factory=list)
    endpoint: str = ""

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def fold(self, e: dict[str, Any]) -> None:
        kind, data = e.get("type", ""), e.get("data") or {}
        self.name = e.get("name") or self.name
        self.step, self.message = kind, e.get("message", "")
        self.status = STATUS_OF.get(kind, self.status)
        if kind == "scheduling.completed":
            self.placed += 1
        elif kind in ("replica.failed", "replica.stopped"):
            self.placed = max(0, self.placed - 1)
        if kind == "deployment.running":
            self.status, self.endpoint = "running", str(data.get("endpoint", ""))
        elif kind in ("deployment.failed", "sizing.failed"):
            self.status, self.reason = "failed", self.message
        elif kind in ("deployment.deleting", "deployment.deleted"):
            self.status, self.reason = "deleted", self.message
        elif kind == "scheduling.failed" and self.placed == 0:
            self.status = "unschedulable"  # the first replica has nowhere to go
            self.reason = str(data.get("reason") or self.message)
            self.suggestions = _strings(data.get("suggestions"))


def _strings(v: Any) -> list[str]:
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            return [v]
    return [str(x) for x in v] if isinstance(v, list) else []


def _status_cell(row: dict[str, Any]) -> RenderableType:
    p: Progress = row["progress"]
    if p.done:
        return Text(p.status, STATUS_STYLE.get(p.status, ""))
    return Spinner("dots", Text(p.status, "cyan"))


LIVE_COLS = [
    Col("deployment", lambda r: r["progress"].name or r["progress"].id, copy=True),
    Col("status", lambda r: "⠋ " + r["progress"].status, render=_status_cell),
    Col("step", lambda r: r["progress"].step, drop=2),
    Col("last message", lambda r: r["progress"].message, wrap=True, drop=1),
]


def _table(rows: list[Progress], console: Console) -> RenderableType:
    """The live view: a table that fits the terminal, its least useful columns left out
    when narrow; one `name status` line per deployment when even that does not fit."""
    cells = [{"progress": p} for p in rows]
    t = fitting_table(console, LIVE_COLS, cells, title=None)
    if t is not None:
        return t
    lines: list[RenderableType] = [
        Text.assemble((p.name or p.id, "bold"), " ", (p.status, STATUS_STYLE.get(p.status, "")))
        if p.done
        else Spinner("dots", Text(f"{p.name or p.id} {p.status}", "cyan"))
        for p in rows
    ]
    return Group(*lines)


def summary(p: Progress) -> RenderableType:
    if p.status == "running":
        return Text.assemble(("✓ ", "green"), (p.name, "bold"), f" is running at {p.endpoint}")
    verb = {"failed": "failed", "deleted": "was deleted"}.get(p.status, f"is {p.status}")
    lines: list[RenderableType] = [
        Text.assemble(("✗ ", "red"), (p.name or p.id, "bold"), f" {verb}: {p.reason}")
    ]
    lines += [Text(f"  try: {s}", "yellow") for s in p.suggestions]
    return Group(*lines)


async def watch_deployments(
    client: Client, ids: list[str], console: Console, names: dict[str, str] | None = None
) -> bool:
    """Follow each deployment's events from its start until it is running or cannot be:
    True when all are running. The events of all of them are printed as one stream in the
    platform's order (seq), then one summary line per deployment, always last. `names`
    (id → name, from the POST's answer) label the table before the first event."""
    names = names or {}
    # what has been printed: the table shows these
    rows = [Progress(id=i, name=names.get(i, "")) for i in ids]
    heard = {i: Progress(id=i) for i in ids}  # what has arrived: when each stream may stop
    # A table redrawn in place on a terminal; plain lines when piped or logged.
    live = (
        Live(_table(rows, console), console=console, refresh_per_second=8)
        if console.is_terminal
        else None
    )
    out = live.console if live else console
    shown = {p.id: p for p in rows}

    def show(dep_id: str, e: dict[str, Any]) -> None:
        shown[dep_id].fold(e)
        if live:  # first: printing redraws the table below the line, as it is now
            live.update(_table(rows, console))
        out.print(event_line(e), soft_wrap=True)  # the terminal wraps it: an endpoint whole

    merged = SeqMerge(ids, show)

    async def follow(dep_id: str) -> None:
        async def on_event(e: dict[str, Any]) -> bool:
            heard[dep_id].fold(e)
            merged.push(dep_id, e)
            return heard[dep_id].done

        path = url_path("v1", "deployments", dep_id, "events")
        await _stream(client, path, {}, on_event, follow=True, since=0, console=out)
        merged.close(dep_id)

    async def follow_all() -> None:
        try:
            await asyncio.gather(*(follow(i) for i in ids))
        finally:
            merged.flush()  # what arrived is printed, even when a stream failed

    if live:
        with live:
            await follow_all()
            live.update(_table(rows, console))
    else:
        await follow_all()
    for p in rows:
        console.print(summary(p), soft_wrap=True)  # the endpoint, whole
    return all(p.status == "running" for p in rows)
