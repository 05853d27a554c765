"""A supervised process's log as another platform process records it, read without
tailing it here: what a follower serves (`ProcessReplicas.logs` of a replica the leader
supervises; the files are `a3s_core.proc_output`'s).

The leader appends each line of `<name>.out` to `<name>.jsonl` with its timestamp and the
`.out` offset just past it (`end`). When it deletes the process it records the last lines
and then removes record and files at once, well within one poll of a follower. So the
reader keeps both files open (an unlinked file stays readable through an open
descriptor), and at the end also reads `.out` past the last recorded `end`: lines the
process wrote that the leader had not recorded yet (it ended, and the leader had not
looked). Every line written before the end is delivered, then the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from a3s_core.types import LogLine

HISTORY_BYTES = 2 * 1024 * 1024  # the tail of `.jsonl` read for `tail` lines
MAX_LINE = 16 * 1024  # as the recorder cuts them (a3s_core.proc_output)


class _Recorded:
    def __init__(self, state_dir: Path, name: str) -> None:
        self.name = name
        self.record = state_dir / f"{name}.json"
        self.jsonl_path = state_dir / "logs" / f"{name}.jsonl"
        self.out_path = state_dir / "logs" / f"{name}.out"
        self.exit_path = state_dir / "logs" / f"{name}.exit"
        self.jsonl: IO[bytes] | None = None
        self.out: IO[bytes] | None = None
        self.offset = 0  # in the open `.jsonl`, just past the last whole row read
        self.end: int | None = 0  # `.out` offset recorded so far (None: rows without it)

    def ended(self) -> bool:
        """The process is gone (record removed) or its exit is recorded."""
        return not self.record.is_file() or self.exit_path.is_file()

    def open(self) -> None:
        """Open what exists and is not open yet; a rotated `.jsonl` is left for the new
        one once the old one is read to its end (by `rows`)."""
        if self.out is None:
            with contextlib.suppress(OSError):
                self.out = self.out_path.open("rb")
        if self.jsonl is None:
            with contextlib.suppress(OSError):
                self.jsonl = self.jsonl_path.open("rb")
                self.offset = 0

    def history(self, tail: int) -> list[LogLine]:
        """The last `tail` recorded lines; what follows is read from where they end."""
        self.open()
        if self.jsonl is None:
            return []
        start = max(0, self.jsonl.seek(0, os.SEEK_END) - HISTORY_BYTES)
        self.jsonl.seek(start)
        data = self.jsonl.read()
        whole = data.rfind(b"\n") + 1
        self.offset = start + whole
        rows = self._parse(data[:whole])
        return rows[-tail:] if tail > 0 else []

    def rows(self) -> list[LogLine]:
        """Rows recorded since the last call (a rotated file read to its end first)."""
        out: list[LogLine] = []
        while self.jsonl is not None:
            self.jsonl.seek(self.offset)
            chunk = self.jsonl.read()
            whole = chunk.rfind(b"\n") + 1
            self.offset += whole
            out += self._parse(chunk[:whole])
            if not self._rotated():
                break
            self.jsonl.close()
            self.jsonl = None
            self.open()
        return out

    def _rotated(self) -> bool:
        assert self.jsonl is not None
        try:
            now = self.jsonl_path.stat()
        except OSError:  # removed: what the open file holds is all there will be
            return False
        held = os.fstat(self.jsonl.fileno())
        return (now.st_ino, now.st_dev) != (held.st_ino, held.st_dev) or now.st_size < self.offset

    def unrecorded(self) -> list[LogLine]:
        """Lines of `.out` past the last recorded one (the last is kept even without its
        newline: the process has ended)."""
        if self.out is None or self.end is None:
            return []
        self.out.seek(self.end)
        data = self.out.read()
        if not data:
            return []
        now = datetime.now(UTC)
        lines = data.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        return [
            LogLine(replica_id=self.name, ts=now,
                    line=raw[:MAX_LINE].decode("utf-8", "replace").rstrip("\r"))
            for raw in lines
        ]

    def _parse(self, data: bytes) -> list[LogLine]:
        out: list[LogLine] = []
        for text in data.decode("utf-8", "replace").splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                row = json.loads(text)
                out.append(LogLine(replica_id=self.name, ts=datetime.fromisoformat(row["ts"]),
                                   line=row["line"]))
                end = row.get("end")
                self.end = int(end) if isinstance(end, int) else None
        return out

    def close(self) -> None:
        for f in (self.jsonl, self.out):
            if f is not None:
                f.close()
        self.jsonl = self.out = None


async def recorded_lines(
    state_dir: Path, name: str, tail: int, follow: bool, poll_s: float = 0.2
) -> AsyncIterator[LogLine]:
    """The last `tail` recorded lines of process `name`, then, while `follow`, new ones
    until it has ended and every line it wrote was delivered."""
    log = _Recorded(state_dir, name)
    try:
        for row in log.history(tail):
            yield row
        while follow:
            done = log.ended()  # looked at first: whatever was written before is read next
            log.open()
            for row in log.rows():
                yield row
            if done:
                for row in log.unrecorded():
                    yield row
                return
            await asyncio.sleep(poll_s)
    finally:
        log.close()


__all__ = ["recorded_lines"]
