"""Human renderings of plans, deployments, the cluster and plugins for the CLI (`-o table`
and `-o plain`; json and yaml print the API's objects as they are). Nothing here cuts a
value: tables go through `output.print_rows`, other lines are soft-wrapped."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.text import Text

from a3s_core.cli.output import Col, Output, print_fields, print_rows

GiB = 2**30
STATUS_STYLE = {
    "running": "green",
    "ready": "green",
    "failed": "red",
    "unschedulable": "red",
    "deleted": "yellow",
    "deleting": "yellow",
}


def _gib(n: float | None) -> str:
    return "—" if n is None else f"{n / GiB:,.2f} GiB"


def status_style(s: str) -> str:
    return STATUS_STYLE.get(s, "")


def _line(console: Console, *parts: str | tuple[str, str]) -> None:
    """A line with a value to copy: the terminal wraps it, rich never breaks it."""
    console.print(Text.assemble(*parts), soft_wrap=True)


def _prose(console: Console, *parts: str | tuple[str, str]) -> None:
    """Sentences: word-wrapped on a terminal, whole lines when piped."""
    console.print(Text.assemble(*parts))


CANDIDATE_COLS = [
    Col("GPU", lambda c: c["gpu"], copy=True),
    Col("count", lambda c: c["gpu_count"]),
    Col("TP", lambda c: c["tensor_parallel_size"], drop=4),
    Col("dtype", lambda c: c["dtype"], drop=3),
    Col("weights/GPU", lambda c: _gib(c["weights_per_gpu_bytes"])),
    Col("overhead/GPU", lambda c: _gib(c["overhead_per_gpu_bytes"]), drop=2),
    Col("KV budget/GPU", lambda c: _gib(c["kv_budget_per_gpu_bytes"])),
    Col("full-length seqs", lambda c: c["_seqs"], drop=1),
]


def print_plan(console: Console, output: Output, out: dict[str, Any]) -> None:
    _line(console, f"namespace: {out.get('namespace')}")
    for m in out["models"]:
        console.print()
        _line(console, (m["name"], "bold"), f" — {m['model']} ({m['engine']})")
        if "error" in m:
            _prose(console, (f"error: {m['error']['message']}", "red"))
            continue
        p = m["plan"]
        fields = [
            ("checkpoint", p["checkpoint"]),
            ("parameters", f"{p['parameters']:,} ({p['parameters'] / 1e9:.2f} B)"),
            ("quantization", p["quantization"]),
            ("bytes per parameter", f"{p['bytes_per_parameter']:.3f}"),
            ("weights", _gib(p["weight_bytes"])),
            ("KV cache per token", f"{p['kv_bytes_per_token']:,} B"),
            (
                f"KV for one {p['max_model_len']:,}-token sequence",
                _gib(p["kv_bytes_per_sequence"]),
            ),
            ("overhead", _gib(p["overhead_bytes"])),
            ("max_model_len", f"{p['max_model_len']:,} ({p['max_model_len_source']})"),
        ]
        if p.get("overrides"):
            fields.append(("overridden by extra_args", ", ".join(p["overrides"])))
        print_fields(console, fields)
        if p["candidates"]:
            rows = [
                {
                    **c,
                    "_seqs": f"{c['concurrent_sequences']:.1f}"
                    if p["kv_bytes_per_token"]
                    else "no KV cache",
                }
                for c in p["candidates"]
            ]
            print_rows(console, output, CANDIDATE_COLS, rows, title="candidates (best first)")
        for r in p.get("rejected", []):
            _prose(console, f"  ✗ {r['gpu']}: {r['reason']}")
        for line in p.get("explanation", []):
            _prose(console, f"  {line}")
        pl = m.get("placement")
        if pl:
            if pl.get("schedulable"):
                x = pl["placement"]
                _line(
                    console,
                    (
                        f"would land on {x['node']}: {len(x['gpu_indices'])}× "
                        f"{x['gpu']} GPUs {x['gpu_indices']}",
                        "green",
                    ),
                )
            else:
                _prose(console, (f"unschedulable now: {pl['reason']}", "yellow"))
                for s in pl.get("suggestions", []):
                    _prose(console, f"  suggestion: {s}")


REPLICA_COLS = [
    Col("replica", lambda r: r["id"], copy=True),
    Col("node", lambda r: r["node"] or "", copy=True, drop=3),
    Col("GPU", lambda r: r["gpu"] or "cpu", drop=4),
    Col("indices", lambda r: ",".join(map(str, r["gpuIndices"])), drop=5),
    Col("state", lambda r: r["state"], style=status_style),
    Col("url", lambda r: r["url"] or "", copy=True, drop=2),
    Col("restarts", lambda r: r["restarts"], drop=6),
    Col("since", lambda r: str(r["since"])[:19], drop=7),
]


def _retry(at: str | None) -> str:
    """Whether to wait (the controller tries again by itself) or to act."""
    if not at:
        return "no; fix the request, then delete and deploy again"
    try:
        when = datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return f"at {at}, by itself"
    return f"at {when:%Y-%m-%d %H:%M:%S} UTC, by itself"


def print_deployment(console: Console, output: Output, d: dict[str, Any]) -> None:
    _line(
        console,
        (d["name"], "bold"),
        f" ({d['id']}) in {d['namespace']}: ",
        (d["status"], "bold " + status_style(d["status"])),
        f" {d['readyReplicas']}/{d['desiredReplicas']} ready",
    )
    print_fields(
        console,
        [
            ("id", d["id"]),
            ("model", d["model"]),
            ("engine", d["engine"]),
            ("quantization", d["quantization"]),
            ("endpoint", d["endpoint"]),
            *([("reason", d["reason"])] if d.get("reason") else []),
            *([("retry", _retry(d.get("retryAt")))] if d["status"] == "failed" else []),
        ],
    )
    for s in d.get("suggestions") or []:
        _prose(console, f"  suggestion: {s}")
    if d["replicas"]:
        console.print()
        print_rows(console, output, REPLICA_COLS, d["replicas"])


def _memory(n: dict[str, Any]) -> str:
    if n["gpuMemoryMiB"]:
        return f"{n['gpuMemoryMiB'] / 1024:.0f} GiB"
    return _gib(n["memoryBytes"]) if n["memoryBytes"] else "—"


NODE_COLS = [
    Col("node", lambda n: n["name"], copy=True),
    Col("GPU", lambda n: n["gpu"] or "cpu"),
    Col("memory", _memory, drop=3),
    Col("count", lambda n: n["gpuCount"]),
    Col("allocated", lambda n: n["allocated"], drop=2),
    Col("free", lambda n: n["free"]),
    Col("util %", lambda n: "—" if n["utilization"] is None else f"{n['utilization']:.0f}", drop=4),
    Col(
        "replicas",
        lambda n: ", ".join(
            sorted({g["deployment"] or g["replica"] for g in n["gpus"] if g["replica"]})
        ),
        wrap=True,
        drop=1,
    ),
]
TOTAL_COLS = [
    Col("GPU type", lambda t: t["type"], copy=True),
    Col("nodes", lambda t: t["nodes"]),
    Col("GPUs", lambda t: t["gpus"]),
    Col("allocated", lambda t: t["allocated"]),
    Col("free", lambda t: t["free"]),
]


def print_cluster(console: Console, output: Output, c: dict[str, Any]) -> None:
    title = f"cluster ({c['runtime']} runtime)"
    print_rows(console, output, NODE_COLS, c["nodes"], title=title)
    totals = [{"type": k, **v} for k, v in c["totals"].items()]
    if output is Output.plain:
        console.file.write("\n")
    else:
        console.print()
    print_rows(console, output, TOTAL_COLS, totals, title="totals")


PLUGIN_COLS = [
    Col("name", lambda p: p["name"], copy=True),
    Col("version", lambda p: p["version"] or "", drop=2),
    Col("distribution", lambda p: p["distribution"] or "", drop=1),
    Col("hooks", lambda p: ", ".join(p["hooks"]), wrap=True),
]


def print_plugins(console: Console, output: Output, rows: list[dict[str, Any]]) -> None:
    print_rows(console, output, PLUGIN_COLS, rows)
