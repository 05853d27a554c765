"""Finding a supervised process and everything it forked, from /proc, by the marker the
supervisor gives it; and the crash points that let a test kill the platform mid-step.

Why a marker: a pid alone cannot be trusted to find a process. The platform can be killed
after it spawned a process and before it wrote the pid down, and an engine's workers can
leave its process group. Every process the supervisor starts gets `A3S_PROC_MARKER=<marker>`
in its environment (inherited by whatever it forks) and its wrapper shell gets
`a3s-proc:<marker>` as its argv[0]; /proc/<pid>/environ and /cmdline find them again.
"""

from __future__ import annotations

import os
import secrets
import signal
from pathlib import Path
from typing import NamedTuple

MARKER_ENV = "A3S_PROC_MARKER"
CRASH_ENV = "A3S_TEST_CRASH_AT"
_PROC = Path("/proc")


class ProcInfo(NamedTuple):
    pid: int
    state: str  # R, S, D, Z, ...
    pgrp: int
    session: int
    start_ticks: int


def new_marker(name: str) -> str:
    return f"{name}.{secrets.token_hex(8)}"


def can_scan() -> bool:
    """Whether this host has a /proc to look processes up in (Linux)."""
    return (_PROC / "self" / "environ").exists()


def proc_info(pid: int) -> ProcInfo | None:
    """/proc/<pid>/stat, or None when the process is gone or there is no /proc."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return ProcInfo(pid, fields[0], int(fields[2]), int(fields[3]), int(fields[19]))


def alive(info: ProcInfo) -> bool:
    return info.state not in ("Z", "X")


def members(marker: str | None, group: int | None) -> list[ProcInfo]:
    """Live processes that carry `marker` in their environment, or belong to process group
    `group`. Zombies are dead (they hold no memory) and are left out."""
    needle = f"\0{MARKER_ENV}={marker}\0".encode() if marker else None
    found: list[ProcInfo] = []
    me = os.getpid()
    try:
        entries = list(_PROC.iterdir())
    except OSError:
        return found
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        info = proc_info(int(entry.name))
        if info is None or not alive(info):
            continue
        if group is not None and info.pgrp == group:
            found.append(info)
            continue
        if needle is None:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or another user's
            continue
        if needle in b"\0" + environ + b"\0":
            found.append(info)
    return found


def find_leader(marker: str) -> ProcInfo | None:
    """The wrapper shell the supervisor started with `marker`: it leads its own session."""
    for info in members(marker, None):
        if info.pid == info.session:
            return info
    return None


def crash_point(step: str) -> None:
    """Fault injection for tests: when `A3S_TEST_CRASH_AT` names `step`, this process is
    killed with SIGKILL right here (no cleanup runs, as in a real crash)."""
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


__all__ = ["CRASH_ENV", "MARKER_ENV", "ProcInfo", "can_scan", "crash_point", "find_leader",
           "members", "new_marker", "proc_info"]
