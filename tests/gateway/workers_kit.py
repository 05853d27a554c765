"""Run `a3s serve`'s supervisor with N real worker processes for tests.

The supervisor runs in a subprocess (it owns signals and spawns the workers); its workers
build their plugins with `plugins_for_workers` below, found by import (spawned processes
get this process's `sys.path`), so the test engines of gateway_harness are installed in
every worker beside the real entry points.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from gateway_harness import TestEngines

from a3s_core.gateway.share import LoadShare
from a3s_core.plugins import Plugins

HERE = Path(__file__).parent
SCRIPT = """
import json, sys
sys.path.insert(0, {here!r})
from workers_kit import plugins_for_workers
from a3s_core.gateway.workers import Supervisor
from a3s_core.settings import Settings
settings = Settings(**json.loads({settings!r}))
sys.exit(Supervisor(settings, {n}, plugins=plugins_for_workers).run())
"""


def plugins_for_workers() -> Plugins:
    plugins = Plugins()  # the installed entry points: runtimes, standard balancers, engines
    plugins.register(TestEngines, name="test-engines")
    return plugins


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Workers:
    proc: subprocess.Popen[bytes]
    base_url: str
    n: int
    data_dir: Path

    def pids(self) -> dict[int, int]:
        """worker index → pid, as /healthz reports them (asks until all have answered)."""
        seen: dict[int, int] = {}
        deadline = time.monotonic() + 60
        while len(seen) < self.n:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the supervisor exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"only workers {sorted(seen)} of {self.n} answered")
            with contextlib.suppress(httpx.HTTPError):
                # A fresh connection each time: the kernel hands it to whichever worker
                # accepts first.
                body = httpx.get(self.base_url + "/healthz", timeout=5).json()
                seen[body["worker"]["index"]] = body["worker"]["pid"]
            time.sleep(0.02)
        return seen

    def invalidate(self) -> None:
        """Rows changed behind the workers' back (the test wrote them): every worker
        re-reads the store before its next request, as after a change through the API."""
        share = LoadShare.attach(self.data_dir / "load-share", 0)
        try:
            share.bump()
        finally:
            share.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_workers(data_dir: Path, n: int, **settings: Any) -> Workers:
    port = free_port()
    body = {"data_dir": str(data_dir), "host": "127.0.0.1", "port": port,
            "scrape_interval_s": 0.1, "controllers": False,
            "load_share": str(data_dir / "load-share"), **settings}
    code = SCRIPT.format(here=str(HERE), settings=json.dumps(body), n=n)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    log = open(data_dir / "workers.log", "wb")  # noqa: SIM115  # outlives this call
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT,
                            env=env)
    workers = Workers(proc, f"http://127.0.0.1:{port}", n, data_dir)
    try:
        workers.pids()
    except Exception as exc:
        workers.stop()
        log = (data_dir / "workers.log").read_text()[-3000:]
        raise RuntimeError(f"{exc}; exit {proc.returncode}; log:\n{log}") from None
    return workers


async def pinned_clients(base_url: str, n: int, **kw: Any) -> dict[int, httpx.AsyncClient]:
    """One client per worker, each on one keep-alive connection that worker accepted."""
    return {i: c[0] for i, c in (await clients_per_worker(base_url, n, 1, **kw)).items()}


async def clients_per_worker(
    base_url: str, n: int, each: int, **kw: Any
) -> dict[int, list[httpx.AsyncClient]]:
    """`each` clients per worker, each on one keep-alive connection that worker accepted
    (the kernel spreads new connections over the workers by their addresses)."""
    out: dict[int, list[httpx.AsyncClient]] = {i: [] for i in range(n)}
    deadline = asyncio.get_running_loop().time() + 60
    while any(len(c) < each for c in out.values()):
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"connections per worker: { {i: len(c) for i, c in out.items()} }")
        client = httpx.AsyncClient(base_url=base_url, timeout=15,
                                   limits=httpx.Limits(max_connections=1), **kw)
        index = (await client.get("/healthz")).json()["worker"]["index"]
        if len(out[index]) < each:
            out[index].append(client)
        else:
            await client.aclose()
    return out
