"""The `a3s` Typer app and what its commands share: options, consoles, failing cleanly."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from a3s_core.cli.client import Client, CliError
from a3s_core.cli.output import Output

HELP_ORDER = [
    "serve", "deploy", "plan", "ls", "get", "scale", "rm", "rotate-key", "logs", "events",
    "cluster", "plugins",
]


class A3SGroup(TyperGroup):
    """Every command that fails exits 1 with one `error:` line on stderr, whether it is
    run as `a3s` or through Typer's test runner. Help lists commands in HELP_ORDER."""

    def list_commands(self, ctx: Any) -> list[str]:
        names = list(super().list_commands(ctx))
        return sorted(names, key=lambda n: HELP_ORDER.index(n) if n in HELP_ORDER else 99)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CliError as exc:
            fail(str(exc))


# rich_markup_mode=None: plain help, as kubectl's and gh's. Typer's rich help shows a
# `<bool>` type on every flag (`--watch -w <bool>`), as if it took a value.
app = typer.Typer(
    cls=A3SGroup,
    help="A3S GPU inference platform: deploy models from a JSON request, get OpenAI-"
    "compatible endpoints and API keys.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

Url = Annotated[str | None, typer.Option("--url", envvar="A3S_URL", help="platform URL")]
Token = Annotated[str | None, typer.Option("--token", envvar="A3S_TOKEN", help="admin token")]
Namespace = Annotated[
    str | None,
    typer.Option(
        "--namespace", "-n", help="namespace of the deployment NAME (default: wherever it is)"
    ),
]
OutputOpt = Annotated[
    Output | None,
    typer.Option(
        "--output",
        "-o",
        help="table (default on a terminal), plain (default otherwise: tab-separated, "
        "header first), json or yaml",
    ),
]
Ref = Annotated[str, typer.Argument(metavar="DEPLOYMENT", help="deployment id or name")]
RequestFile = Annotated[
    Path,
    typer.Argument(
        metavar="FILE",
        help='JSON deployment request, e.g. {"models": [{"name": "chat", "model": '
        '"Qwen/Qwen2.5-7B-Instruct"}]} (- reads stdin)',
    ),
]


def client(url: str | None, token: str | None) -> Client:
    return Client(url, token)


def err() -> Console:
    return Console(stderr=True, highlight=False)


def fail(message: str) -> NoReturn:
    err().print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(1)


def load(file: Path) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}")
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{file} is not JSON: {exc}")
    return body  # type: ignore[no-any-return]
