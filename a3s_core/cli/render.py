"""Rich renderings of plans, deployments and the cluster for the CLI."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

GiB = 2**30


def _gib(n: float | None) -> str:
    return "—" if n is None else f"{n / GiB:,.2f} GiB"


def print_plan(console: Console, out: dict[str, Any]) -> None:
    console.print(f"namespace: {out.get('namespace')}", highlight=False)
    for m in out["models"]:
        console.rule(f"{m['name']} — {m['model']} ({m['engine']})")
        if "error" in m:
            console.print(f"[red]{m['error']['message']}[/red]", highlight=False)
            continue
        p = m["plan"]
        t = Table("figure", "value", show_header=False)
        t.add_row("checkpoint", p["checkpoint"])
        t.add_row("parameters", f"{p['parameters']:,} ({p['parameters'] / 1e9:.2f} B)")
        t.add_row("quantization", p["quantization"])
        t.add_row("bytes per parameter", f"{p['bytes_per_parameter']:.3f}")
        t.add_row("weights", _gib(p["weight_bytes"]))
        t.add_row("KV cache per token", f"{p['kv_bytes_per_token']:,} B")
        t.add_row(
            f"KV for one {p['max_model_len']:,}-token sequence", _gib(p["kv_bytes_per_sequence"])
        )
        t.add_row("overhead", _gib(p["overhead_bytes"]))
        t.add_row("max_model_len", f"{p['max_model_len']:,} ({p['max_model_len_source']})")
        if p.get("overrides"):
            t.add_row("overridden by extra_args", ", ".join(p["overrides"]))
        console.print(t)
        if p["candidates"]:
            c = Table(
                "GPU",
                "count",
                "TP",
                "dtype",
                "weights/GPU",
                "overhead/GPU",
                "KV budget/GPU",
                "full-length seqs",
                title="candidates (best first)",
            )
            for cand in p["candidates"]:
                c.add_row(
                    cand["gpu"],
                    str(cand["gpu_count"]),
                    str(cand["tensor_parallel_size"]),
                    cand["dtype"],
                    _gib(cand["weights_per_gpu_bytes"]),
                    _gib(cand["overhead_per_gpu_bytes"]),
                    _gib(cand["kv_budget_per_gpu_bytes"]),
                    f"{cand['concurrent_sequences']:.1f}"
                    if p["kv_bytes_per_token"]
                    else "no KV cache",
                )
            console.print(c)
        for r in p.get("rejected", []):
            console.print(f"  ✗ {r['gpu']}: {r['reason']}", highlight=False)
        for line in p.get("explanation", []):
            console.print(f"  {line}", highlight=False)
        pl = m.get("placement")
        if pl:
            if pl.get("schedulable"):
                x = pl["placement"]
                console.print(
                    f"[green]would land on {x['node']}: {len(x['gpu_indices'])}× "
                    f"{x['gpu']} GPUs {x['gpu_indices']}[/green]",
                    highlight=False,
                )
            else:
                console.print(
                    f"[yellow]unschedulable now: {pl['reason']}[/yellow]", highlight=False
                )
                for s in pl.get("suggestions", []):
                    console.print(f"  suggestion: {s}", highlight=False)


def print_deployment(console: Console, d: dict[str, Any]) -> None:
    console.print(
        f"[bold]{d['name']}[/bold] ({d['id']}) in {d['namespace']}: "
        f"[bold]{d['status']}[/bold] {d['readyReplicas']}/{d['desiredReplicas']} ready",
        highlight=False,
    )
    console.print(
        f"model {d['model']}  engine {d['engine']}  quantization {d['quantization']}",
        highlight=False,
    )
    console.print(f"endpoint {d['endpoint']}", highlight=False)
    if d.get("reason"):
        console.print(f"reason: {d['reason']}", highlight=False)
    for s in d.get("suggestions") or []:
        console.print(f"  suggestion: {s}", highlight=False)
    t = Table("replica", "node", "GPU", "indices", "state", "url", "restarts", "since")
    for r in d["replicas"]:
        t.add_row(
            r["id"],
            r["node"] or "",
            r["gpu"] or "cpu",
            ",".join(map(str, r["gpuIndices"])),
            r["state"],
            r["url"] or "",
            str(r["restarts"]),
            str(r["since"])[:19],
        )
    console.print(t)


def print_cluster(console: Console, c: dict[str, Any]) -> None:
    t = Table(
        "node",
        "GPU",
        "memory",
        "count",
        "allocated",
        "free",
        "util %",
        "replicas",
        title=f"cluster ({c['runtime']} runtime)",
    )
    for n in c["nodes"]:
        holders = sorted({g["deployment"] or g["replica"] for g in n["gpus"] if g["replica"]})
        util = "—" if n["utilization"] is None else f"{n['utilization']:.0f}"
        mem = (
            f"{n['gpuMemoryMiB'] / 1024:.0f} GiB"
            if n["gpuMemoryMiB"]
            else (_gib(n["memoryBytes"]) if n["memoryBytes"] else "—")
        )
        t.add_row(
            n["name"],
            n["gpu"] or "cpu",
            mem,
            str(n["gpuCount"]),
            str(n["allocated"]),
            str(n["free"]),
            util,
            ", ".join(holders),
        )
    console.print(t)
    tt = Table("GPU type", "nodes", "GPUs", "allocated", "free", title="totals")
    for k, v in c["totals"].items():
        tt.add_row(k, str(v["nodes"]), str(v["gpus"]), str(v["allocated"]), str(v["free"]))
    console.print(tt)
