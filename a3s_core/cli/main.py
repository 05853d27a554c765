"""`a3s`: run the platform and talk to it. Deployment commands are in
`deployment_commands.py`; shared options and output forms in `app.py` and `output.py`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from a3s_core.cli import deployment_commands as _deployment_commands  # noqa: F401 (registers)
from a3s_core.cli.app import OutputOpt, RequestFile, Token, Url, app, client, fail, load
from a3s_core.cli.output import Output, dump, resolve, stdout_console

console = Console()  # `a3s serve` only; other commands make theirs when they run
_fail = fail


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="where the database and token live")] = None,
    database_url: Annotated[str | None, typer.Option(help="SQLAlchemy URL (PostgreSQL)")] = None,
    runtime: Annotated[str | None, typer.Option(help="sim / local / kubernetes")] = None,
    domain: Annotated[str | None, typer.Option(help="wildcard domain for endpoints")] = None,
    access_log: Annotated[bool, typer.Option(help="log every HTTP request")] = False,
    workers: Annotated[
        int | None, typer.Option(help="processes sharing the port (default: one per CPU)")
    ] = None,
    role: Annotated[str | None, typer.Option(help="all / gateway / control")] = None,
) -> None:
    """Run the platform (API, gateway, controllers) on its embedded defaults."""
    from a3s_core.api import server
    from a3s_core.api.app import create_app
    from a3s_core.errors import A3SError
    from a3s_core.gateway import workers as many
    from a3s_core.settings import Settings

    overrides: dict[str, Any] = {
        k: v
        for k, v in dict(
            host=host,
            port=port,
            data_dir=data_dir,
            database_url=database_url,
            runtime=runtime,
            domain=domain,
            workers=workers,
            role=role,
        ).items()
        if v is not None
    }
    if role is not None and role not in ("all", "gateway", "control"):
        _fail(f"--role: {role!r} is not one of all, gateway, control")
    if workers is not None and workers < 1:
        _fail(f"--workers: {workers} must be at least 1")
    settings = Settings(**overrides)
    if settings.role == "gateway" or (settings.workers or many.default_workers()) > 1:
        raise typer.Exit(many.serve(
            settings, access_log,
            # soft_wrap: the token and URLs whole on their lines, however narrow the terminal
            lambda text: console.print(text, highlight=False, soft_wrap=True),
        ))
    try:
        application = create_app(settings)
    except A3SError as exc:
        _fail(exc.message)
    platform = application.state.platform
    if platform.admin_token_created:
        console.print(
            f"admin token (shown once, saved in {settings.data_dir / 'admin-token'}):"
            f"\n  {platform.admin_token}",
            highlight=False,
            soft_wrap=True,  # the token whole on one line, however narrow the terminal
        )
    console.print(
        f"A3S on {settings.base_url} — runtime {settings.runtime}, "
        f"store {settings.db_url.split('@')[-1]}",
        highlight=False,
        soft_wrap=True,
    )
    # No per-request access log: it costs time on every data-plane request.
    # server.run: uvicorn with one socket write per plain answer, the sans-I/O WebSocket
    # protocol plus one write for many event envelopes, and the heap frozen after startup
    # (a3s_core/api/server.py, ws_protocol.py).
    # log_config: uvicorn's, with credentials taken out of every line (a3s_core/log_config.py).
    server.run(application, host=settings.host, port=settings.port, log_level="info",
               access_log=access_log, log_config=serve_logging())


def serve_logging() -> dict[str, Any]:
    """uvicorn's logging with credentials taken out of every line, plus the platform's own
    loggers on stderr through the same (redacting) handler: warnings from every `a3s`
    logger, and leadership changes (`a3s.leader`, info) of a multi-process platform."""
    from a3s_core.log_config import uvicorn_log_config

    config = uvicorn_log_config()
    config["loggers"]["a3s"] = {"handlers": ["default"], "level": "WARNING", "propagate": False}
    config["loggers"]["a3s.leader"] = {"level": "INFO"}
    return config


@app.command()
def plan(
    file: RequestFile,
    url: Url = None,
    token: Token = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="size here, without a running platform")
    ] = False,
    output: OutputOpt = None,
) -> None:
    """Show the sizing arithmetic and where each model would land, without deploying.
    Exits 1 when a model cannot be sized."""
    from a3s_core.cli.render import print_plan

    body = load(file)
    if offline:
        from a3s_core.cli.local_plan import plan_offline

        out = plan_offline(body)
    else:
        # a model that cannot be sized makes the answer 422/503; it still holds every model
        out = client(url, token).request("POST", "/v1/deployments:plan", json=body,
                                         answers="models")
    con = stdout_console()
    fmt = resolve(output, con)
    if fmt in (Output.json, Output.yaml):
        dump(con, out, fmt)
    else:
        print_plan(con, fmt, out)
    failed = [m["name"] for m in out.get("models", []) if "error" in m]
    if failed:
        fail(f"could not size {', '.join(failed)}")


@app.command()
def cluster(url: Url = None, token: Token = None, output: OutputOpt = None) -> None:
    """Nodes, GPUs, what runs where, totals per GPU type."""
    from a3s_core.cli.render import print_cluster

    c = client(url, token).request("GET", "/v1/cluster")
    con = stdout_console()
    fmt = resolve(output, con)
    if fmt in (Output.json, Output.yaml):
        dump(con, c, fmt)
    else:
        print_cluster(con, fmt, c)


@app.command()
def plugins(
    remote: Annotated[
        bool, typer.Option("--remote", help="ask the running platform instead")
    ] = False,
    url: Url = None,
    token: Token = None,
    output: OutputOpt = None,
) -> None:
    """Installed plugins: name, version, distribution, hooks."""
    from a3s_core.cli.render import print_plugins

    if remote:
        rows = client(url, token).request("GET", "/v1/plugins")
    else:
        from a3s_core.errors import A3SError
        from a3s_core.plugins import Plugins

        try:
            p = Plugins()
            p.check()
            rows = [vars(i) for i in p.describe()]
        except A3SError as exc:
            fail(exc.message)
    con = stdout_console()
    fmt = resolve(output, con)
    if fmt in (Output.json, Output.yaml):
        dump(con, rows, fmt)
    else:
        print_plugins(con, fmt, rows)


@app.command()
def events(
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing new events")
    ] = False,
    since: Annotated[int, typer.Option(help="start after this seq")] = 0,
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="only this namespace")
    ] = None,
    deployment: Annotated[
        str | None, typer.Option(help="only this deployment (id or name)")
    ] = None,
    url: Url = None,
    token: Token = None,
    output: Annotated[
        Output | None,
        typer.Option(
            "--output", "-o", help="json (one event a line) or yaml (one document each)"
        ),
    ] = None,
) -> None:
    """Print the event stream (everything after --since; then live with -f)."""
    from a3s_core.cli.watch import stream_events

    c = client(url, token)
    if deployment is not None:
        deployment = c.deployment(deployment, namespace)["id"]
    con = stdout_console()
    asyncio.run(
        stream_events(
            c,
            con,
            since=since,
            follow=follow,
            namespace=namespace,
            deployment=deployment,
            documents=output.value if output in (Output.json, Output.yaml) else None,
        )
    )


def main() -> None:
    app()


if __name__ == "__main__":
    main()
