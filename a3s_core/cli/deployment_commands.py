"""`a3s deploy / ls / get / rm / scale / rotate-key / logs`. Each takes a deployment by id
or by name (`-n NAMESPACE` when the name is in several), and prints in the `-o` form."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.text import Text

from a3s_core.cli.app import (
    Namespace,
    OutputOpt,
    Ref,
    RequestFile,
    Token,
    Url,
    app,
    client,
    err,
    load,
)
from a3s_core.cli.client import path
from a3s_core.cli.output import Col, Output, dump, print_rows, resolve, stdout_console
from a3s_core.cli.render import print_deployment, status_style

DOCUMENTS = (Output.json, Output.yaml)

# What `a3s deploy` prints: everything a user must keep is a must-copy column.
CREATED_COLS = [
    Col("name", lambda d: d["name"], copy=True),
    Col("id", lambda d: d["id"], copy=True),
    Col("namespace", lambda d: d["namespace"], copy=True, drop=1),
    Col("endpoint", lambda d: d["endpoint"], copy=True),
    Col("apiKey", lambda d: d["apiKey"], copy=True),
]
STATUS_COL = Col("status", lambda d: d["status"], drop=2, style=status_style)


@app.command()
def deploy(
    file: RequestFile,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="follow the events until running")
    ] = False,
    url: Url = None,
    token: Token = None,
    output: OutputOpt = None,
) -> None:
    """Deploy the models in FILE; prints each one's endpoint and API key (the key is shown
    only this once). With --watch, exits 1 unless every model reaches running."""
    c = client(url, token)
    out = c.request("POST", "/v1/deployments", json=load(file))
    con = stdout_console()
    fmt = resolve(output, con)
    if fmt in DOCUMENTS:
        dump(con, out, fmt)
    else:
        # With --watch the status at submit time (pending) would sit above live events
        # that say otherwise; the watch shows the status as it changes.
        cols = CREATED_COLS if watch else [*CREATED_COLS, STATUS_COL]
        print_rows(con, fmt, cols, out["deployments"])
        if con.is_terminal:
            err().print(
                "[dim]The API keys are shown only once; `a3s rotate-key NAME` issues a new "
                "one.[/dim]"
            )
    if watch:
        from a3s_core.cli.watch import watch_deployments

        progress = err() if fmt in DOCUMENTS else con  # stdout keeps the document alone
        ids = [d["id"] for d in out["deployments"]]
        names = {d["id"]: d["name"] for d in out["deployments"]}
        if not asyncio.run(watch_deployments(c, ids, progress, names)):
            raise typer.Exit(1)


LIST_COLS = [
    Col("name", lambda d: d["name"], copy=True),
    Col("id", lambda d: d["id"], copy=True, drop=3),
    Col("namespace", lambda d: d["namespace"], copy=True, drop=4),
    Col("model", lambda d: d["model"], drop=6),
    Col("engine", lambda d: d["engine"], drop=7),
    Col("status", lambda d: d["status"], style=status_style),
    Col("replicas", lambda d: f"{d['readyReplicas']}/{d['desiredReplicas']}", drop=5),
    Col("endpoint", lambda d: d["endpoint"], copy=True, drop=2),
]


@app.command("ls")
def list_(
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="only this namespace")
    ] = None,
    url: Url = None,
    token: Token = None,
    output: OutputOpt = None,
) -> None:
    """List deployments (on a narrow terminal, the columns that do not fit are left out;
    -o plain or -o json has them all)."""
    rows = client(url, token).request(
        "GET", "/v1/deployments", params={"namespace": namespace} if namespace else None
    )
    con = stdout_console()
    fmt = resolve(output, con)
    if fmt in DOCUMENTS:
        dump(con, rows, fmt)
    else:
        print_rows(con, fmt, LIST_COLS, rows)


@app.command()
def get(
    deployment: Ref, namespace: Namespace = None, url: Url = None, token: Token = None,
    output: OutputOpt = None,
) -> None:
    """Show one deployment: status, endpoint, replicas."""
    d = client(url, token).deployment(deployment, namespace)
    con = stdout_console()
    fmt = resolve(output, con)
    if fmt in DOCUMENTS:
        dump(con, d, fmt)
    else:
        print_deployment(con, fmt, d)


def _said(d: dict[str, Any], output: Output | None, what: str) -> None:
    """The changed deployment: one line for people, the whole object for -o json/yaml."""
    con = stdout_console()
    fmt = resolve(output, con)
    if fmt in DOCUMENTS:
        dump(con, d, fmt)
    else:
        con.print(
            Text.assemble((d["name"], "bold"), f" ({d['id']}) in {d['namespace']}: {what}"),
            soft_wrap=True,
        )


@app.command()
def rm(
    deployment: Ref, namespace: Namespace = None, url: Url = None, token: Token = None,
    output: OutputOpt = None,
) -> None:
    """Delete a deployment: revoke its keys, stop its replicas, free their GPUs."""
    c = client(url, token)
    dep_id = c.deployment(deployment, namespace)["id"]
    d = c.request("DELETE", path("v1", "deployments", dep_id))
    _said(d, output, d["status"])


@app.command()
def scale(
    deployment: Ref,
    replicas: Annotated[int, typer.Argument(metavar="REPLICAS", help="desired replicas")],
    namespace: Namespace = None,
    url: Url = None,
    token: Token = None,
    output: OutputOpt = None,
) -> None:
    """Set the desired number of replicas."""
    c = client(url, token)
    dep_id = c.deployment(deployment, namespace)["id"]
    d = c.request(
        "POST", path("v1", "deployments", dep_id, "scale"), json={"replicas": replicas}
    )
    _said(d, output, f"desired replicas {d['desiredReplicas']}")


@app.command("rotate-key")
def rotate_key(
    deployment: Ref, namespace: Namespace = None, url: Url = None, token: Token = None,
    output: OutputOpt = None,
) -> None:
    """Revoke the deployment's keys and print a new one (shown only this once)."""
    c = client(url, token)
    d = c.deployment(deployment, namespace)
    k = c.request("POST", path("v1", "deployments", d["id"], "keys:rotate"))
    con = stdout_console()
    fmt = resolve(output, con)
    if fmt in DOCUMENTS:
        dump(con, k, fmt)
        return
    con.file.write(k["apiKey"] + "\n")  # the key alone, whole: `KEY=$(a3s rotate-key x)`
    con.file.flush()
    if con.is_terminal:
        err().print(
            f"[dim]new key for {d['name']} in {d['namespace']}, shown only once; "
            "the old keys no longer work[/dim]"
        )


@app.command()
def logs(
    deployment: Ref,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new lines")] = False,
    tail: Annotated[int, typer.Option(help="lines per replica to start with")] = 100,
    namespace: Namespace = None,
    url: Url = None,
    token: Token = None,
    output: Annotated[
        Output | None,
        typer.Option(
            "--output", "-o", help="json (one message a line) or yaml (one document each)"
        ),
    ] = None,
) -> None:
    """Print the replica logs of a deployment, each line prefixed with its replica."""
    from a3s_core.cli.watch import stream_logs

    c = client(url, token)
    dep_id = c.deployment(deployment, namespace)["id"]
    documents = output.value if output in DOCUMENTS else None
    asyncio.run(
        stream_logs(c, stdout_console(), dep_id, tail=tail, follow=follow, documents=documents)
    )
