"""The `sim` runtime: a simulated GPU cluster whose replicas are real simulator processes.

Every replica, whatever its engine, runs `python -m a3s_engine_sim` on a loopback port with
the GPU and model figures of its placement (`ReplicaRequest.sim`), speaking the dialect of
the engine it stands in for. Processes are supervised by `a3s_core.process_replicas`, recorded in
`state_dir`, and adopted by the next platform process after a restart. Platform processes
that share one store share one simulated cluster by sharing `state_dir`: whichever leads
adopts every recorded replica (`on_leadership`), so HA is testable without Kubernetes.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from a3s_core.catalog import load_catalog
from a3s_core.contracts import Runtime
from a3s_core.errors import InvalidRequest, RuntimeUnavailable
from a3s_core.process_replicas import ProcessReplicas
from a3s_core.procs import http_get
from a3s_core.types import LogLine, Node, ReplicaObservation, ReplicaRequest
from a3s_runtime_sim.inventory import load_inventory

DIALECTS = {"vllm", "vllm-v0", "tgi", "sglang", "ollama", "llamacpp"}


class SimOptions(BaseModel):
    """`settings.runtime_options` for the sim runtime (documented in docs/runtimes.md)."""

    model_config = ConfigDict(extra="forbid")

    inventory: str | None = Field(None, description="inventory file (TOML/YAML); default shipped")
    state_dir: str | None = Field(None, description="replica records and logs")
    data_dir: str | None = Field(None, description="platform data dir; state_dir = <it>/sim")
    gpu_catalog: str | None = None
    time_scale: float = Field(1.0, gt=0, description="multiplies every simulated delay")
    jitter: float = Field(0.1, ge=0, le=1)
    fail_rate: float = Field(0.0, ge=0, le=1)
    slow_start: float = Field(0.0, ge=0, description="seconds before a replica is healthy")
    orphan_timeout_s: float | None = Field(
        300.0, gt=0, description="a replica nobody probed for this long exits; None: never"
    )
    crash_after: int | None = Field(None, ge=1)
    max_num_seqs: int | None = Field(None, ge=1)
    max_queue: int | None = Field(None, ge=0)
    python: str = Field(sys.executable, description="interpreter that runs the simulator")
    extra_args: list[str] = Field(default_factory=list, description="appended to every sim")
    health_timeout_s: float = Field(2.0, gt=0)
    stop_timeout_s: float = Field(10.0, gt=0)
    stop_on_close: bool = False
    utilization_ttl_s: float = Field(2.0, ge=0, description="cache of scraped GPU gauges")


class SimFigures(BaseModel):
    """`ReplicaRequest.sim`: what the controller knows about GPU and model. Per-replica fault
    knobs (fail_rate, crash_after, slow_start, time_scale) override the runtime's."""

    model_config = ConfigDict(extra="ignore")

    engine: str | None = None
    gpu: str | None = None
    bandwidth_gbs: float | None = Field(None, gt=0)
    bf16_tflops: float | None = Field(None, gt=0)
    tensor_parallel_size: int | None = Field(None, ge=1)
    parameters: float | None = Field(None, gt=0)
    weight_bytes: float | None = Field(None, gt=0)
    kv_bytes_per_token: float | None = Field(None, ge=0)  # 0: an embedding model, no KV cache
    max_model_len: int | None = Field(None, ge=1)
    kind: str | None = None
    max_num_seqs: int | None = Field(None, ge=1)
    max_queue: int | None = Field(None, ge=0)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    embedding_dim: int | None = Field(None, ge=1)
    fail_rate: float | None = Field(None, ge=0, le=1)
    crash_after: int | None = Field(None, ge=1)
    slow_start: float | None = Field(None, ge=0)
    time_scale: float | None = Field(None, gt=0)
    seed: int | None = None


def _invalid(exc: ValidationError, prefix: str) -> InvalidRequest:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return InvalidRequest(f"{prefix}.{where}: {err['msg']} (got {err.get('input')!r})",
                          field=f"{prefix}.{where}", value=err.get("input"))


class SimRuntime(Runtime):
    name = "sim"
    runs_images = False  # a simulator process stands in for the engine

    def __init__(self, options: dict[str, object] | None = None) -> None:
        super().__init__(options)
        try:
            self.opts = SimOptions.model_validate(self.options)
        except ValidationError as exc:
            raise _invalid(exc, "runtime_options") from None
        self.catalog = load_catalog(self.opts.gpu_catalog)
        self.state_dir = self._state_dir()
        self.replicas = ProcessReplicas(self.state_dir, self.opts.health_timeout_s,
                                        stop_timeout=self.opts.stop_timeout_s)
        self._nodes: dict[str, Node] = {}
        self.inventory_source = ""
        self._gauges: dict[str, tuple[float, dict[int, tuple[float, int]]]] = {}

    def _state_dir(self) -> Path:
        if self.opts.state_dir:
            return Path(self.opts.state_dir)
        if self.opts.data_dir:
            return Path(self.opts.data_dir) / "sim"
        return Path(tempfile.gettempdir()) / f"a3s-sim-{os.getuid()}"

    async def start(self) -> None:
        nodes, self.inventory_source = load_inventory(self.opts.inventory, self.catalog)
        self._nodes = {n.name: n for n in nodes}
        self.replicas.adopt()

    async def close(self) -> None:
        await self.replicas.close(stop=self.opts.stop_on_close)

    async def on_leadership(self, leading: bool) -> None:
        """Leader: every replica recorded in the state dir (shared by the platform
        processes, as a real cluster is) is adopted. Follower: tailing is left to the
        leader; logs are read from what it records."""
        if leading:
            self.replicas.adopt()
        else:
            await self.replicas.release()
            self._gauges.clear()

    def multi_process_note(self) -> str | None:
        where = "set" if self.opts.state_dir else "not set, so it is per data dir"
        return (
            f"sim runtime, several platform processes: the simulated cluster is the state "
            f"dir {self.state_dir} (runtime_options.state_dir is {where}). Give every "
            "process the same state_dir so that a new leader adopts the replicas the old "
            "one started; the simulator processes all run on this host."
        )

    async def reserve_port(self) -> int | None:
        return self.replicas.reserve_port()

    # ------------------------------------------------------------------ nodes

    async def list_nodes(self) -> list[Node]:
        held = self.replicas.allocations()
        gauges = await self._scrape_gauges()
        out: list[Node] = []
        for node in self._nodes.values():
            copy = node.model_copy(deep=True)
            for gpu in copy.gpus:
                owner = held.get((node.name, gpu.index))
                gpu.allocated_to = owner
                util, used_mib = gauges.get(owner or "", {}).get(gpu.index, (0.0, 0))
                gpu.utilization = util
                gpu.memory_used_bytes = used_mib * 1024 * 1024
            out.append(copy)
        return out

    async def _scrape_gauges(self) -> dict[str, dict[int, tuple[float, int]]]:
        """Per replica: GPU index → (utilisation %, framebuffer used MiB), from each running
        simulator's DCGM-like gauges, cached for `utilization_ttl_s`. A follower scrapes
        the replicas the leader records in the shared state dir (seen ready, not ended):
        the simulated cluster is one, so every platform process shows the same figures."""
        now = time.monotonic()
        ttl = self.opts.utilization_ttl_s
        ours = self.replicas.supervisor.processes()
        theirs = self.replicas.recorded_elsewhere()
        targets = [(p.name, p.meta) for p in ours if p.is_running() and p.ready_since]
        targets += [(r.name, r.meta) for r in theirs
                    if r.meta.get("ready_at") and not self.replicas.has_ended(r.name)]
        todo = [(name, str(meta.get("url"))) for name, meta in targets
                if now - self._gauges.get(name, (-1e9, {}))[0] >= ttl]

        async def scrape(name: str, url: str) -> None:
            try:
                status, text = await http_get(url.rstrip("/") + "/metrics", 1.0)
            except Exception:  # a busy or dying replica: keep the last figures
                return
            if status == 200:
                self._gauges[name] = (now, _dcgm(text))

        await asyncio.gather(*(scrape(name, url) for name, url in todo))
        live = {p.name for p in ours} | {r.name for r in theirs}
        self._gauges = {k: v for k, v in self._gauges.items() if k in live}
        return {k: v[1] for k, v in self._gauges.items()}

    # ------------------------------------------------------------------ replicas

    async def create_replica(self, request: ReplicaRequest) -> ReplicaObservation:
        existing = self.replicas.get(request.replica_id)
        if existing is not None and existing.is_running():
            return await self.replicas.observation(existing)  # idempotent: already started
        node = self._nodes.get(request.placement.node)
        if node is None:
            raise RuntimeUnavailable(
                f"sim runtime: node {request.placement.node!r} is not in the inventory "
                f"{self.inventory_source}; nodes: {', '.join(sorted(self._nodes)) or 'none'}"
            )
        bad = [i for i in request.placement.gpu_indices if not 0 <= i < node.gpu_count]
        if bad:
            raise RuntimeUnavailable(
                f"sim runtime: node {node.name} has GPUs 0..{node.gpu_count - 1}; "
                f"placement asks for {bad}"
            )
        port = request.port or self.replicas.reserve_port()
        url = f"http://127.0.0.1:{port}"
        argv = self.simulator_argv(request, port, node)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        health = url + (request.health_path if request.health_path.startswith("/") else "/health")
        proc = self.replicas.start(request, argv, env, url, health,
                                   {"port": port, "simulates": request.engine})
        return await self.replicas.observation(proc)

    def simulator_argv(self, request: ReplicaRequest, port: int, node: Node) -> list[str]:
        """The simulator's command line for this replica (public for tests and docs)."""
        try:
            fig = SimFigures.model_validate(request.sim)
        except ValidationError as exc:
            raise _invalid(exc, "sim") from None
        gpu = self.catalog.get(fig.gpu or request.placement.gpu or node.gpu_product or "")
        engine = fig.engine or request.engine
        dialect = engine if engine in DIALECTS else "vllm"
        tp = fig.tensor_parallel_size or request.tensor_parallel_size or 1
        o = self.opts
        args: dict[str, Any] = {
            "--host": "127.0.0.1",
            "--port": port,
            "--served-model-name": request.served_model_name,
            "--model": request.model,
            "--dialect": dialect,
            "--kind": fig.kind or "decoder",
            "--gpu": gpu.name if gpu else "CPU",
            "--gpu-memory-mib": gpu.memory_mib if gpu else _host_mib(node),
            "--bandwidth-gbs": fig.bandwidth_gbs or (gpu.bandwidth_gbs if gpu else 50.0),
            "--bf16-tflops": fig.bf16_tflops or (gpu.bf16_tflops if gpu else 1.0),
            "--tensor-parallel-size": tp,
            "--gpu-indices": ",".join(map(str, request.placement.gpu_indices)),
            "--parameters": fig.parameters,
            "--weight-bytes": fig.weight_bytes,
            "--kv-bytes-per-token": fig.kv_bytes_per_token,
            "--max-model-len": fig.max_model_len or request.max_model_len,
            "--max-num-seqs": fig.max_num_seqs or o.max_num_seqs,
            "--max-queue": fig.max_queue if fig.max_queue is not None else o.max_queue,
            "--gpu-memory-utilization": fig.gpu_memory_utilization,
            "--embedding-dim": fig.embedding_dim,
            "--time-scale": fig.time_scale or o.time_scale,
            "--jitter": o.jitter,
            "--fail-rate": fig.fail_rate if fig.fail_rate is not None else o.fail_rate,
            "--crash-after": fig.crash_after or o.crash_after,
            "--slow-start": fig.slow_start if fig.slow_start is not None else o.slow_start,
            "--orphan-timeout": o.orphan_timeout_s,
            "--seed": fig.seed if fig.seed is not None else _seed(request.replica_id),
        }
        argv = [o.python, "-m", "a3s_engine_sim"]
        for flag, value in args.items():
            if value is not None and value != "":
                argv += [flag, str(value)]
        return argv + list(o.extra_args)

    async def delete_replica(self, replica_id: str) -> None:
        await self.replicas.delete(replica_id)
        self._gauges.pop(replica_id, None)

    async def observe(self) -> list[ReplicaObservation]:
        return await self.replicas.observe()

    def logs(
        self, replica_id: str, tail: int = 100, follow: bool = False
    ) -> AsyncIterator[LogLine]:
        return self.replicas.logs(replica_id, tail, follow)


def _host_mib(node: Node) -> int:
    """A CPU placement's "device memory": the host's RAM, or 16 GiB when unknown."""
    return node.memory_bytes // (1024 * 1024) if node.memory_bytes else 16384


def _seed(replica_id: str) -> int:
    import zlib

    return zlib.crc32(replica_id.encode())


def _dcgm(text: str) -> dict[int, tuple[float, int]]:
    """DCGM_FI_DEV_GPU_UTIL / DCGM_FI_DEV_FB_USED samples → {gpu index: (util, MiB)}."""
    from prometheus_client.parser import text_string_to_metric_families

    util: dict[int, float] = {}
    used: dict[int, int] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if "gpu" not in s.labels:
                continue
            index = int(s.labels["gpu"])
            if s.name == "DCGM_FI_DEV_GPU_UTIL":
                util[index] = float(s.value)
            elif s.name == "DCGM_FI_DEV_FB_USED":
                used[index] = int(s.value)
    return {i: (util.get(i, 0.0), used.get(i, 0)) for i in util.keys() | used.keys()}
