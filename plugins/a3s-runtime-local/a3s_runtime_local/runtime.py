"""The `local` runtime: this machine is the cluster. GPUs come from NVML; each replica is the
engine's real command as a subprocess, pinned to its GPUs with CUDA_VISIBLE_DEVICES (empty
for CPU placements). Replicas are supervised by `a3s_core.process_replicas`, recorded in `state_dir`
and adopted by the next platform process after a restart."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from a3s_core.catalog import load_catalog
from a3s_core.contracts import Runtime
from a3s_core.errors import InvalidRequest, RuntimeUnavailable
from a3s_core.process_replicas import ProcessReplicas
from a3s_core.types import GpuDevice, LogLine, Node, ReplicaObservation, ReplicaRequest
from a3s_runtime_local.devices import Nvml, host_memory_bytes

# What to install when an engine's command is missing (argv[0] or `python -m <module>`).
INSTALL_HINTS = {
    "vllm": "pip install vllm",
    "text-generation-launcher": "install Hugging Face TGI (see its 'Installation from source')",
    "sglang": "pip install 'sglang[all]'",
    "ollama": "install Ollama from https://ollama.com/download, or build it with "
              "plugins/a3s-engine-ollama/scripts/build-ollama.sh",
    "llama_cpp": "pip install 'llama-cpp-python[server]'",
    "a3s-engine-sim": "pip install a3s-engine-sim",
    "a3s_engine_sim": "pip install a3s-engine-sim",
    "text-embeddings-router": "install Hugging Face text-embeddings-inference",
    "llama-server": "install a llama.cpp release (https://github.com/ggml-org/llama.cpp), or "
                    "build it with plugins/a3s-engine-llamacpp/scripts/build-llama-server.sh",
}


class LocalOptions(BaseModel):
    """`settings.runtime_options` for the local runtime (documented in docs/runtimes.md)."""

    model_config = ConfigDict(extra="forbid")

    state_dir: str | None = Field(None, description="replica records and logs")
    data_dir: str | None = Field(None, description="platform data dir; state_dir = <it>/local")
    node_name: str | None = Field(None, description="default: the host name")
    gpu_catalog: str | None = None
    use_gpus: bool = Field(True, description="false: ignore GPUs, offer the CPU only")
    search_path: list[str] = Field(default_factory=list, description="more dirs for engines")
    health_timeout_s: float = Field(2.0, gt=0)
    stop_timeout_s: float = Field(15.0, gt=0)
    stop_on_close: bool = False


def _option_error(exc: ValidationError) -> InvalidRequest:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return InvalidRequest(f"runtime_options.{where}: {err['msg']} (got {err.get('input')!r})",
                          field=f"runtime_options.{where}", value=err.get("input"))


class LocalRuntime(Runtime):
    name = "local"
    runs_images = False  # engines run as processes on this machine

    def __init__(self, options: dict[str, object] | None = None) -> None:
        super().__init__(options)
        try:
            self.opts = LocalOptions.model_validate(self.options)
        except ValidationError as exc:
            raise _option_error(exc) from None
        self.catalog = load_catalog(self.opts.gpu_catalog)
        self.node_name = self.opts.node_name or socket.gethostname()
        if self.opts.state_dir:
            state = Path(self.opts.state_dir)
        elif self.opts.data_dir:
            state = Path(self.opts.data_dir) / "local"
        else:
            state = Path.home() / ".local" / "share" / "a3s" / "local"
        self.replicas = ProcessReplicas(state, self.opts.health_timeout_s,
                                        stop_timeout=self.opts.stop_timeout_s)
        self.nvml = Nvml()

    async def start(self) -> None:
        if not self.opts.use_gpus:
            self.nvml.reason = "GPUs disabled by runtime option use_gpus=false"
        self.replicas.adopt()

    async def close(self) -> None:
        await self.replicas.close(stop=self.opts.stop_on_close)
        self.nvml.close()

    async def on_leadership(self, leading: bool) -> None:
        """Leader: adopt every replica recorded in the state dir. Follower: leave tailing
        to the leader (logs are read from what it records)."""
        if leading:
            self.replicas.adopt()
        else:
            await self.replicas.release()

    def multi_process_note(self) -> str | None:
        return (
            f"local runtime, several platform processes: engines run as processes on this "
            f"host ({self.node_name}) and are recorded in {self.replicas.state_dir}. Only "
            "platform processes on this host with this same state_dir can take over their "
            "control; a leader elsewhere sees none of them, replaces them after the grace "
            "period and cannot stop the old ones. For HA across hosts use the kubernetes "
            "runtime; with local, run the others with A3S_CONTROLLERS=false (API and "
            "gateway only)."
        )

    async def reserve_port(self) -> int | None:
        return self.replicas.reserve_port()

    # ------------------------------------------------------------------ the machine

    def _gpu_indices(self) -> list[int]:
        return [g.index for g in self.nvml.gpus()] if self.opts.use_gpus else []

    async def list_nodes(self) -> list[Node]:
        infos = self.nvml.gpus() if self.opts.use_gpus else []
        held = self.replicas.allocations()
        labels = {"kubernetes.io/hostname": self.node_name}
        node = Node(name=self.node_name, cpu_cores=os.cpu_count(),
                    memory_bytes=host_memory_bytes(), labels=labels)
        if not infos:
            node.labels["a3s.io/device"] = "cpu"
            return [node]
        first = infos[0]
        gpu_type = self.catalog.from_label(first.product_label, first.memory_mib)
        node.gpu_product = gpu_type.name if gpu_type else None
        node.gpu_product_label = first.product_label
        node.gpu_memory_mib = min(g.memory_mib for g in infos)
        node.gpu_count = len(infos)
        node.gpus = [
            GpuDevice(index=g.index, utilization=g.utilization,
                      memory_used_bytes=g.memory_used_bytes,
                      allocated_to=held.get((self.node_name, g.index)))
            for g in infos
        ]
        node.labels |= {"nvidia.com/gpu.product": first.product_label,
                        "nvidia.com/gpu.memory": str(first.memory_mib),
                        "nvidia.com/gpu.count": str(len(infos))}
        if len({g.name for g in infos}) > 1:  # one Node carries one GPU type: say so
            node.labels["a3s.io/mixed-gpus"] = "true"
        return [node]

    # ------------------------------------------------------------------ replicas

    async def create_replica(self, request: ReplicaRequest) -> ReplicaObservation:
        existing = self.replicas.get(request.replica_id)
        if existing is not None and existing.is_running():
            return await self.replicas.observation(existing)
        if request.placement.node != self.node_name:
            raise RuntimeUnavailable(
                f"local runtime: placement names node {request.placement.node!r}, but this "
                f"machine is {self.node_name!r}"
            )
        self._check_gpus(request)
        argv = self._resolve_command(request)
        self._check_port(request.port)
        indices = ",".join(map(str, request.placement.gpu_indices))
        env = {**os.environ, **request.env, "CUDA_VISIBLE_DEVICES": indices,
               "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "PYTHONUNBUFFERED": "1"}
        url = f"http://127.0.0.1:{request.port}"
        path = request.health_path if request.health_path.startswith("/") else "/health"
        proc = self.replicas.start(request, argv, env, url, url + path,
                                   {"cuda_visible_devices": indices})
        return await self.replicas.observation(proc)

    def _needs_gpu(self, request: ReplicaRequest) -> bool:
        explicit = getattr(request, "needs_gpu", None)  # the field the lead may add
        if isinstance(explicit, bool):
            return explicit or bool(request.placement.gpu_indices)
        return bool(request.placement.gpu_indices) or request.placement.gpu is not None

    def _check_gpus(self, request: ReplicaRequest) -> None:
        if not self._needs_gpu(request):
            return
        gpus = self._gpu_indices()
        wanted = request.placement.gpu_indices or list(range(request.tensor_parallel_size))
        kind = f" ({request.placement.gpu})" if request.placement.gpu else ""
        if not gpus:
            raise RuntimeUnavailable(
                f"local runtime: engine {request.engine!r} needs {len(wanted)} GPU(s){kind}, "
                f"but this machine has none ({self.nvml.reason or 'no NVIDIA GPU found'}). "
                "Use an engine that runs on CPU (such as llamacpp) or the sim runtime."
            )
        have = set(gpus)
        missing = [i for i in wanted if i not in have]
        if missing:
            raise RuntimeUnavailable(
                f"local runtime: placement asks for GPU(s) {missing}, but this machine has "
                f"GPUs {sorted(have)}"
            )

    def _resolve_command(self, request: ReplicaRequest) -> list[str]:
        argv = list(request.command)
        if not argv:
            raise RuntimeUnavailable(f"local runtime: engine {request.engine!r} gave no command")
        # The platform's own interpreter directory first: engines pip-installed next to the
        # platform are found even when its virtualenv is not activated.
        dirs = [*self.opts.search_path, str(Path(sys.executable).parent),
                os.environ.get("PATH", "")]
        exe = shutil.which(argv[0], path=os.pathsep.join(d for d in dirs if d))
        if exe is None:
            hint = INSTALL_HINTS.get(Path(argv[0]).name)
            raise RuntimeUnavailable(
                f"local runtime: engine {request.engine!r} is not installed on this machine: "
                f"command {argv[0]!r} was not found on PATH or in {Path(sys.executable).parent}"
                + (f"; install it with: {hint}" if hint else "")
                + ". Or use the sim runtime."
            )
        argv[0] = exe
        if "-m" in argv[1:] and Path(exe).name.startswith("python"):
            module = argv[argv.index("-m", 1) + 1] if argv.index("-m", 1) + 1 < len(argv) else ""
            top = module.split(".")[0]
            if top and not _module_available(exe, top):
                hint = INSTALL_HINTS.get(top)
                raise RuntimeUnavailable(
                    f"local runtime: engine {request.engine!r} is not installed on this "
                    f"machine: {exe} cannot import {top!r} (for `-m {module}`)"
                    + (f"; install it with: {hint}" if hint else "")
                    + ". Or use the sim runtime."
                )
        return argv

    @staticmethod
    def _check_port(port: int) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as exc:
                raise RuntimeUnavailable(
                    f"local runtime: port {port} is already in use on this machine "
                    f"({exc.strerror}); ask for a port with reserve_port()"
                ) from None

    async def delete_replica(self, replica_id: str) -> None:
        await self.replicas.delete(replica_id)

    async def observe(self) -> list[ReplicaObservation]:
        return await self.replicas.observe()

    def logs(
        self, replica_id: str, tail: int = 100, follow: bool = False
    ) -> AsyncIterator[LogLine]:
        return self.replicas.logs(replica_id, tail, follow)


def _module_available(python: str, module: str) -> bool:
    """Can `python` import `module` (top-level name)? In-process for our own interpreter."""
    if os.path.abspath(python) == os.path.abspath(sys.executable):  # same site-packages
        return importlib.util.find_spec(module) is not None
    probe = f"import importlib.util,sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    try:
        done = subprocess.run([python, "-c", probe], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0
