"""The output of a supervised process: tailed from its `.out` file into a ring buffer of
timestamped lines and a `.jsonl` history that survives the platform (`a3s_core.procs`).

`end` in each `.jsonl` row is the byte offset in `.out` just past that line, so a platform
process that adopts the process resumes tailing exactly where the previous one stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections import deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

_MAX_LINE = 16 * 1024
_MAX_READ = 4 * 1024 * 1024
_JSONL_ROTATE_BYTES = 32 * 1024 * 1024


class OutputLine(NamedTuple):
    seq: int
    ts: datetime
    line: str


class OutputTail:
    """Base of `ManagedProcess`: reading `<name>.out`, keeping `<name>.jsonl`."""

    def __init__(self, name: str, log_dir: Path, ring_size: int) -> None:
        self.out_path = log_dir / f"{name}.out"
        self.jsonl_path = log_dir / f"{name}.jsonl"
        self._ring: deque[OutputLine] = deque(maxlen=ring_size)
        self._seq = 0
        self._offset = 0
        self._partial = b""

    def is_running(self) -> bool:
        raise NotImplementedError

    def pump(self, final: bool = False) -> int:
        """Read what the process wrote since the last call; returns the new line count."""
        try:
            size = self.out_path.stat().st_size
        except FileNotFoundError:
            return 0
        if size < self._offset:  # truncated by someone: start over
            self._offset, self._partial = 0, b""
        data = b""
        if size > self._offset:
            with self.out_path.open("rb") as f:
                f.seek(self._offset)
                data = f.read(min(size - self._offset, _MAX_READ))
        if not data and not (final and self._partial):
            return 0
        start = self._offset - len(self._partial)
        self._offset += len(data)
        chunks = (self._partial + data).split(b"\n")
        self._partial = chunks.pop()
        if (final and self._partial) or len(self._partial) > _MAX_LINE:
            chunks.append(self._partial)
            self._partial = b""
        now = datetime.now(UTC)
        out: list[str] = []
        end = start
        for raw in chunks:
            end += len(raw) + 1
            line = raw[:_MAX_LINE].decode("utf-8", "replace").rstrip("\r")
            self._seq += 1
            self._ring.append(OutputLine(self._seq, now, line))
            out.append(json.dumps({"ts": now.isoformat(), "line": line, "end": end}) + "\n")
        self._append_jsonl(out)
        return len(chunks)

    def _append_jsonl(self, rows: list[str]) -> None:
        if not rows:
            return
        with contextlib.suppress(FileNotFoundError):
            if self.jsonl_path.stat().st_size > _JSONL_ROTATE_BYTES:
                os.replace(self.jsonl_path, self.jsonl_path.with_suffix(".jsonl.1"))
        with self.jsonl_path.open("a", encoding="utf-8") as f:
            f.writelines(rows)

    def _restore_history(self) -> None:
        """After adoption: the ring from `.jsonl`, and the `.out` offset to go on from."""
        rows: list[dict[str, Any]] = []
        for path in (self.jsonl_path.with_suffix(".jsonl.1"), self.jsonl_path):
            with contextlib.suppress(FileNotFoundError):
                with path.open("rb") as f:
                    f.seek(max(0, f.seek(0, os.SEEK_END) - 2 * 1024 * 1024))
                    tail = f.read().decode("utf-8", "replace").splitlines()
                for text in tail[-(self._ring.maxlen or 1000) :]:
                    with contextlib.suppress(ValueError):
                        rows.append(json.loads(text))
        for row in rows[-(self._ring.maxlen or 1000) :]:
            self._seq += 1
            self._ring.append(OutputLine(self._seq, datetime.fromisoformat(row["ts"]), row["line"]))
        if rows:
            self._offset = int(rows[-1].get("end", 0))

    def lines(self, tail: int = 100) -> list[OutputLine]:
        """The last `tail` lines (as many as the ring holds)."""
        self.pump()
        return list(self._ring)[-tail:] if tail > 0 else []

    async def follow(
        self, tail: int = 100, follow: bool = False, poll_interval: float = 0.1
    ) -> AsyncIterator[OutputLine]:
        """The last `tail` lines, then, while `follow`, new ones until the process ends."""
        last = 0
        for item in self.lines(tail):
            last = item.seq
            yield item
        last = max(last, self._seq)
        while follow:
            done = not self.is_running()
            self.pump(final=done)
            for item in list(self._ring):
                if item.seq > last:
                    last = item.seq
                    yield item
            if done:
                return
            await asyncio.sleep(poll_interval)



__all__ = ["OutputLine", "OutputTail"]
