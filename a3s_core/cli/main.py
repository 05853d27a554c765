"""`a3s`: run the platform and talk to it."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from a3s_core.cli.client import Client, CliError

app = typer.Typer(
    help="A3S GPU inference platform", no_args_is_help=True, pretty_exceptions_enable=False
)
console = Console()
err = Console(stderr=True)

Url = Annotated[str | None, typer.Option("--url", envvar="A3S_URL", help="platform URL")]
Token = Annotated[str | None, typer.Option("--token", envvar="A3S_TOKEN", help="admin token")]


def _client(url: str | None, token: str | None) -> Client:
    return Client(url, token)


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(1)


def _load(file: Path) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text()
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror}")
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"{file} is not JSON: {exc}")
    return body  # type: ignore[no-any-return]


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
    import uvicorn

    from a3s_core.api.app import create_app
    from a3s_core.api.ws_protocol import A3SWebSocketProtocol
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
            settings, access_log, lambda text: console.print(text, highlight=False)
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
        )
    console.print(
        f"A3S on {settings.base_url} — runtime {settings.runtime}, "
        f"store {settings.db_url.split('@')[-1]}",
        highlight=False,
    )
    # No per-request access log: it costs time on every data-plane request.
    # ws: uvicorn's sans-I/O WebSocket protocol plus one socket write for many event
    # envelopes (a3s_core/api/ws_protocol.py).
    uvicorn.run(application, host=settings.host, port=settings.port, log_level="info",
                access_log=access_log, ws=A3SWebSocketProtocol)


@app.command()
def deploy(
    file: Annotated[Path, typer.Argument(help="the seed's JSON request ('-' for stdin)")],
    watch: Annotated[bool, typer.Option("--watch", "-w", help="follow the events")] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Deploy the models in FILE; prints endpoints and API keys (shown once)."""
    c = _client(url, token)
    out = c.request("POST", "/v1/deployments", json=_load(file))
    t = Table("id", "name", "namespace", "endpoint", "apiKey", "status")
    for d in out["deployments"]:
        t.add_row(d["id"], d["name"], d["namespace"], d["endpoint"], d["apiKey"], d["status"])
    console.print(t)
    if watch:
        from a3s_core.cli.watch import watch_deployments

        ok = asyncio.run(watch_deployments(c, [d["id"] for d in out["deployments"]], console))
        if not ok:
            raise typer.Exit(1)


@app.command()
def plan(
    file: Annotated[Path, typer.Argument(help="the seed's JSON request")],
    url: Url = None,
    token: Token = None,
    offline: Annotated[bool, typer.Option(help="size here, without a running platform")] = False,
) -> None:
    """Show the sizing arithmetic and where each model would land, without deploying."""
    from a3s_core.cli.render import print_plan

    body = _load(file)
    if offline:
        from a3s_core.cli.local_plan import plan_offline

        out = plan_offline(body)
    else:
        out = _client(url, token).request("POST", "/v1/deployments:plan", json=body)
    print_plan(console, out)


@app.command("ls")
def list_(
    namespace: Annotated[str | None, typer.Option()] = None, url: Url = None, token: Token = None
) -> None:
    """List deployments."""
    rows = _client(url, token).request(
        "GET", "/v1/deployments", params={"namespace": namespace} if namespace else None
    )
    t = Table("id", "name", "namespace", "model", "engine", "status", "replicas", "endpoint")
    for d in rows:
        t.add_row(
            d["id"],
            d["name"],
            d["namespace"],
            d["model"],
            d["engine"],
            d["status"],
            f"{d['readyReplicas']}/{d['desiredReplicas']}",
            d["endpoint"],
        )
    console.print(t)


@app.command()
def get(deployment_id: str, url: Url = None, token: Token = None) -> None:
    """Show one deployment: status, replicas, plan summary."""
    from a3s_core.cli.render import print_deployment

    print_deployment(
        console, _client(url, token).request("GET", f"/v1/deployments/{deployment_id}")
    )


@app.command()
def rm(deployment_id: str, url: Url = None, token: Token = None) -> None:
    """Delete a deployment: stop replicas, free GPUs, revoke keys."""
    d = _client(url, token).request("DELETE", f"/v1/deployments/{deployment_id}")
    console.print(f"{d['name']}: {d['status']}")


@app.command()
def scale(deployment_id: str, replicas: int, url: Url = None, token: Token = None) -> None:
    """Set the desired number of replicas."""
    d = _client(url, token).request(
        "POST", f"/v1/deployments/{deployment_id}/scale", json={"replicas": replicas}
    )
    console.print(f"{d['name']}: desired replicas {d['desiredReplicas']}")


@app.command("rotate-key")
def rotate_key(deployment_id: str, url: Url = None, token: Token = None) -> None:
    """Revoke the deployment's keys and print a new one (shown once)."""
    d = _client(url, token).request("POST", f"/v1/deployments/{deployment_id}/keys:rotate")
    console.print(d["apiKey"])


@app.command()
def cluster(url: Url = None, token: Token = None) -> None:
    """Nodes, GPUs, what runs where, totals per GPU type."""
    from a3s_core.cli.render import print_cluster

    print_cluster(console, _client(url, token).request("GET", "/v1/cluster"))


@app.command()
def plugins(
    remote: Annotated[bool, typer.Option(help="ask the running platform instead")] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Installed plugins: name, version, distribution, hooks."""
    if remote:
        rows = _client(url, token).request("GET", "/v1/plugins")
    else:
        from a3s_core.errors import A3SError
        from a3s_core.plugins import Plugins

        try:
            p = Plugins()
            p.check()
            rows = [vars(i) for i in p.describe()]
        except A3SError as exc:
            _fail(exc.message)
    t = Table("name", "version", "distribution", "hooks")
    for r in rows:
        t.add_row(r["name"], r["version"] or "", r["distribution"] or "", ", ".join(r["hooks"]))
    console.print(t)


@app.command()
def events(
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
    since: Annotated[int, typer.Option(help="start after this seq")] = 0,
    namespace: Annotated[str | None, typer.Option()] = None,
    deployment: Annotated[str | None, typer.Option()] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """Print the event stream (everything after --since; then live with -f)."""
    from a3s_core.cli.watch import stream_events

    asyncio.run(
        stream_events(
            _client(url, token),
            console,
            since=since,
            follow=follow,
            namespace=namespace,
            deployment=deployment,
        )
    )


@app.command()
def logs(
    deployment_id: str,
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
    tail: Annotated[int, typer.Option()] = 100,
    url: Url = None,
    token: Token = None,
) -> None:
    """Print replica logs of a deployment."""
    from a3s_core.cli.watch import stream_logs

    asyncio.run(stream_logs(_client(url, token), console, deployment_id, tail=tail, follow=follow))


def main() -> None:
    try:
        app()
    except CliError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
