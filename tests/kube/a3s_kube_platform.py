"""`a3s serve --runtime kubernetes` as a real process, and the kwok GPU nodes it schedules on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from controlplane import free_port
from websockets.sync.client import connect

if TYPE_CHECKING:
    from a3s_kube_cluster import RealKube

ADMIN_TOKEN = "a3s-admin-kube-e2e"

# GPU feature discovery labels, as NVIDIA's GPU operator puts them on real nodes.
A100 = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "nvidia.com/gpu.memory": "81920",
        "nvidia.com/gpu.count": "8"}
H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.memory": "81559",
        "nvidia.com/gpu.count": "8"}
L40S = {"nvidia.com/gpu.product": "NVIDIA-L40S", "nvidia.com/gpu.memory": "46068",
        "nvidia.com/gpu.count": "4"}
GPU_TAINT = [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]
NODES: dict[str, tuple[dict[str, str], int | None, list[dict[str, str]] | None]] = {
    "gpu-a100-0": (A100, 8, None),
    "gpu-h100-0": (H100, 8, GPU_TAINT),
    "gpu-l40s-0": (L40S, 4, GPU_TAINT),
    "cpu-0": ({}, None, None),  # no GPU: never offered
}


def add_gpu_nodes(kube: RealKube) -> None:
    """Mixed kwok GPU nodes; waits until kwok reports them Ready."""
    for name, (labels, gpus, taints) in NODES.items():
        kube.add_node(name, labels, gpus=gpus, taints=taints, kwok=True)
    eventually(lambda: all(_ready(n) for n in kube.objects("nodes")), "kwok's nodes Ready")


def _ready(node: dict[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def eventually(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


class Platform:
    """One `a3s serve` process; `kill()` is kill -9, `start()` again reuses its data dir."""

    def __init__(self, workdir: Path, runtime_options: dict[str, Any]) -> None:
        self.dir = workdir
        self.port = free_port()
        self.runtime_options = runtime_options
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=30,
                                   headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})

    def start(self) -> Platform:
        env = {
            **os.environ,
            "A3S_RUNTIME_OPTIONS": json.dumps(self.runtime_options),
            "A3S_ADMIN_TOKEN": ADMIN_TOKEN,
            "A3S_RECONCILE_INTERVAL_S": "0.5",
            "A3S_LEASE_DURATION_S": "3",
            "A3S_LEASE_RENEW_INTERVAL_S": "1",
            "HF_HUB_OFFLINE": "1",
        }
        a3s = Path(sys.executable).with_name("a3s")
        log = open(self.dir / "a3s.log", "ab")  # noqa: SIM115 - the process owns it
        self.proc = subprocess.Popen(
            [str(a3s), "serve", "--runtime", "kubernetes", "--port", str(self.port),
             "--data-dir", str(self.dir / "data")],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # kill() takes its workers too
        )
        eventually(self._up, "a3s serve to answer /healthz", timeout=60)
        return self

    def _up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"a3s serve exited {self.proc.returncode}: {self.log_tail()}")
        try:
            return self.client.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        path = self.dir / "a3s.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """kill -9 of the supervisor and its workers at once, as a container's or a
        systemd unit's kill does: no shutdown hook runs. (SIGKILL to the supervisor alone
        leaves its workers a graceful SIGTERM; one of them could answer the next start's
        first /healthz, and then be gone.)"""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def deployment(self, dep_id: str) -> dict[str, Any]:
        r = self.client.get(f"/v1/deployments/{dep_id}")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def events(self, dep_id: str) -> list[dict[str, Any]]:
        """The deployment's events so far (the WebSocket API, without following)."""
        ws_url = self.url.replace("http://", "ws://", 1)
        out: list[dict[str, Any]] = []
        with connect(f"{ws_url}/v1/deployments/{dep_id}/events?follow=false",
                     additional_headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as ws:
            for message in ws:  # ends when the server closes (1000: caught up)
                out.append(json.loads(message))
        return out

    def wait(self, dep_id: str, check: Callable[[dict[str, Any]], bool], what: str,
             timeout: float = 90.0) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            view = self.deployment(dep_id)
            return view if check(view) else None

        try:
            return eventually(probe, what, timeout)  # type: ignore[no-any-return]
        except AssertionError as exc:
            view = self.deployment(dep_id)
            raise AssertionError(f"{exc}; deployment: {view.get('status')} "
                                 f"{[(r['state'], r.get('message')) for r in view['replicas']]}"
                                 f"\n{self.log_tail()}") from None
