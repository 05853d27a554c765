"""The simulated cluster: an inventory file (TOML or YAML) → Nodes, in the one shape every
runtime reports. See data/inventory.toml for the fields."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from a3s_core.catalog import GpuCatalog
from a3s_core.errors import InvalidRequest
from a3s_core.types import GpuDevice, Node

GIB = 1024**3


class NodeEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    count: int = Field(1, ge=1, le=100_000)
    gpu: str | None = None
    gpu_count: int = Field(0, ge=0, le=64)
    external_gpus: int = Field(0, ge=0)
    cpu_cores: int | None = Field(None, ge=1)
    memory_gib: float | None = Field(None, gt=0)
    labels: dict[str, str] = Field(default_factory=dict)
    schedulable: bool = True

    def names(self) -> list[str]:
        if self.count == 1 and "{i}" not in self.name:
            return [self.name]
        if "{i}" in self.name:
            return [self.name.replace("{i}", str(i)) for i in range(self.count)]
        return [f"{self.name}-{i}" for i in range(self.count)]


class InventoryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nodes: list[NodeEntry] = Field(min_length=1)


def default_inventory_text() -> str:
    return resources.files("a3s_runtime_sim").joinpath("data/inventory.toml").read_text()


def _parse(text: str, source: str) -> dict[str, Any]:
    try:
        if source.endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = tomllib.loads(text)
    except Exception as exc:  # tomllib / yaml syntax errors: name the file
        raise InvalidRequest(f"sim inventory {source}: cannot parse: {exc}",
                             field="runtime_options.inventory", value=source) from exc
    if not isinstance(data, dict):
        raise InvalidRequest(f"sim inventory {source}: expected a table with a `nodes` list",
                             field="runtime_options.inventory", value=source)
    return data


def load_inventory(path: str | Path | None, catalog: GpuCatalog) -> tuple[list[Node], str]:
    """Nodes from `path` (None: the shipped default) and a description of the source."""
    if path is None:
        source, text = "(default inventory)", default_inventory_text()
    else:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise InvalidRequest(f"sim inventory {source}: cannot read: {exc.strerror}",
                                 field="runtime_options.inventory", value=source) from exc
    try:
        parsed = InventoryFile.model_validate(_parse(text, source))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InvalidRequest(
            f"sim inventory {source}: {where}: {err['msg']} (got {err.get('input')!r})",
            field=f"runtime_options.inventory: {where}", value=err.get("input"),
        ) from None
    nodes: list[Node] = []
    seen: set[str] = set()
    for i, entry in enumerate(parsed.nodes):
        gpu = (catalog.get(entry.gpu) or catalog.from_label(entry.gpu)) if entry.gpu else None
        if entry.gpu and gpu is None:
            raise InvalidRequest(
                f"sim inventory {source}: nodes.{i}.gpu: unknown GPU {entry.gpu!r}; "
                f"the catalog has {', '.join(catalog.names())}",
                field=f"runtime_options.inventory: nodes.{i}.gpu", value=entry.gpu,
            )
        if gpu is None and entry.gpu_count:
            raise InvalidRequest(
                f"sim inventory {source}: nodes.{i}: gpu_count {entry.gpu_count} needs `gpu`",
                field=f"runtime_options.inventory: nodes.{i}.gpu", value=None,
            )
        if entry.external_gpus > entry.gpu_count:
            raise InvalidRequest(
                f"sim inventory {source}: nodes.{i}.external_gpus {entry.external_gpus} is "
                f"more than gpu_count {entry.gpu_count}",
                field=f"runtime_options.inventory: nodes.{i}.external_gpus",
                value=entry.external_gpus,
            )
        for name in entry.names():
            if name in seen:
                raise InvalidRequest(f"sim inventory {source}: node {name!r} appears twice",
                                     field="runtime_options.inventory", value=name)
            seen.add(name)
            labels = {"kubernetes.io/hostname": name}
            if gpu is not None:
                labels |= {
                    "nvidia.com/gpu.product": gpu.product_labels[0] if gpu.product_labels
                    else gpu.name,
                    "nvidia.com/gpu.memory": str(gpu.memory_mib),
                    "nvidia.com/gpu.count": str(entry.gpu_count),
                }
            nodes.append(Node(
                name=name,
                gpu_product=gpu.name if gpu else None,
                gpu_product_label=labels.get("nvidia.com/gpu.product"),
                gpu_memory_mib=gpu.memory_mib if gpu else 0,
                gpu_count=entry.gpu_count,
                gpus=[GpuDevice(index=g) for g in range(entry.gpu_count)],
                external_gpus=entry.external_gpus,
                cpu_cores=entry.cpu_cores,
                memory_bytes=int(entry.memory_gib * GIB) if entry.memory_gib else None,
                labels=labels | entry.labels,
                schedulable=entry.schedulable,
            ))
    return nodes, source
