"""What a supervised process leaves on disk for the next platform process: its record
(`<name>.json`, written atomically and durably before the process exists) and how it ended
(`ExitStatus`). The supervisor that acts on them is `a3s_core.procs`."""

from __future__ import annotations

import contextlib
import os
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field


class ExitStatus(BaseModel):
    code: int | None = Field(None, description="exit code; None when killed or unknown")
    signal: int | None = Field(None, description="signal that ended the process, if known")
    at: datetime
    never_started: bool = Field(
        False, description="the platform was stopped after recording the start, before the "
        "process existed"
    )

    def describe(self) -> str:
        if self.never_started:
            return "never started (the platform stopped while starting it)"
        if self.signal is not None:
            name = _signal_name(self.signal)
            if self.code is not None:
                return f"exited with code {self.code} (signal {self.signal}, {name})"
            return f"killed by signal {self.signal} ({name})"
        if self.code is None:
            return "exited (exit code unknown)"
        return f"exited with code {self.code}"


class ProcessRecord(BaseModel):
    """What is persisted per process, so another platform process can adopt it."""

    name: str
    pid: int | None = Field(None, description="None: intent recorded, process not seen yet")
    marker: str | None = Field(None, description="in the process's environment (proc_scan)")
    argv: list[str]
    started_at: datetime
    start_ticks: int | None = Field(None, description="/proc starttime; guards pid reuse")
    meta: dict[str, Any] = Field(default_factory=dict, description="the caller's own data")


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be synced
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)



def write_record(record: ProcessRecord, path: Path) -> None:
    """Atomically and durably: what a crash right after this leaves is this record."""
    tmp = path.with_suffix(f".json.{os.getpid()}.tmp")  # own name: the dir may be shared
    with tmp.open("w", encoding="utf-8") as f:
        f.write(record.model_dump_json(indent=1))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


__all__ = ["ExitStatus", "ProcessRecord", "write_record"]
