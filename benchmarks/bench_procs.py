"""Processes of a benchmark run: start them with their logs, wait until they answer, stop
them in reverse order, and read the CPU a process and its children have used."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@contextlib.contextmanager
def started(procs: list[Proc]) -> Iterator[list[Proc]]:
    try:
        yield procs
    finally:
        for p in reversed(procs):
            p.stop()


def spawn(name: str, argv: list[str], log_dir: Path) -> Proc:
    log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115  # the child holds it
    return Proc(name, subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))


async def wait_ready(url: str, proc: Proc, headers: dict[str, str] | None = None,
                     body: dict[str, object] | None = None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                method = "POST" if body is not None else "GET"
                async with http.request(method, url, json=body, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=5)) as resp:
                    if resp.status == 200:
                        await resp.read()
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{proc.name} not ready at {url} after {timeout:.0f}s")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU a process and its live children (a supervisor's workers) have
    used (Linux /proc), or None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for child in child_pids(pid):
        total += cpu_seconds(child) or 0.0
    return total


def child_pids(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
    return out
