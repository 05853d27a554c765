"""Load figures shared by the data-plane workers of one `a3s serve --workers N`.

Each worker is its own process with its own directory snapshot, upstream pools, latency
windows and health book. What balancing and autoscaling need to be right across workers
lives here, in one memory-mapped file the supervisor creates and every worker maps:

- per replica, the figures scraped from its `/metrics` (one worker scrapes each replica,
  `owns()`; the others read what it published), and each worker's own in-flight count
  (one cell per worker, written only by that worker), so a worker moves the scraped
  figures on by what *all* workers started and finished since the scrape, not by its own
  share only;
- per deployment, each worker's count of requests (and of failed ones) in the last
  window, published every scrape round, so the autoscaler's `requests_in_window` and the
  API's figures count every worker's traffic;
- a generation counter: `invalidate()` in any worker bumps it, and every worker re-reads
  the store before its next request, so a revoked key or a deleted deployment is refused
  by all workers at once, as it is by a single process.

No locks on the hot path: every cell has one writer. Claiming a slot for a new id takes an
`flock` on the file (rare: once per replica per worker). A slot is reclaimed only when no
worker has touched it for `RECLAIM_AFTER_S`, and every worker touches the slots it uses on
every scrape round, so a slot in use is never handed to another id. `time.monotonic()` is
one clock for all processes on Linux (CLOCK_MONOTONIC), so timestamps compare across them.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
import time
import zlib
from pathlib import Path

from a3s_core.types import LoadFigures

MAGIC = b"A3SLOAD1"
_HEADER = struct.Struct("=8sqqq")  # magic, workers, slots, generation
HEADER_SIZE = 64
GENERATION_AT = 8 + 8 + 8
_GEN = struct.Struct("=q")
_F64 = struct.Struct("=d")
ID_SIZE = 64
# last_seen, scraped_at, waiting, running, kv_cache_usage, gpu_utilization, in flight
# over all workers when scraped
_FIGS = struct.Struct("=ddddddq")
FIGS_AT = ID_SIZE
CELLS_AT = ID_SIZE + _FIGS.size
DEFAULT_SLOTS = 4096
RECLAIM_AFTER_S = 120.0
_NAN = float("nan")


def _opt(v: float | None) -> float:
    return _NAN if v is None else float(v)


def _back(v: float) -> float | None:
    return None if math.isnan(v) else v


class Slot:
    """One id's row: figures plus two cells per worker (`a`: in flight for a replica,
    requests in the window for a deployment; `b`: failed requests for a deployment)."""

    __slots__ = ("_a", "_b", "_cells", "_figs", "_mm", "_off", "_own_a", "_own_b", "_raw", "key")

    def __init__(self, share: LoadShare, key: str, index: int) -> None:
        self.key = key
        self._mm = share._mm
        self._off = HEADER_SIZE + index * share.slot_size
        n = share.workers
        self._cells = struct.Struct(f"={n}q")
        self._a = self._off + CELLS_AT
        self._b = self._a + 8 * n
        self._own_a = self._a + 8 * share.worker
        self._own_b = self._b + 8 * share.worker
        # The figures as last read, and the LoadFigures made of them: they change once a
        # scrape, and are read per replica per request.
        self._raw = b""
        self._figs = LoadFigures()

    # -- per-worker cells -----------------------------------------------------------------

    def set_own(self, value: int, failed: int | None = None) -> None:
        _GEN.pack_into(self._mm, self._own_a, value)
        if failed is not None:
            _GEN.pack_into(self._mm, self._own_b, failed)

    def total(self) -> int:
        """The sum of every worker's `a` cell (for a replica: requests in flight)."""
        return sum(self._cells.unpack_from(self._mm, self._a))

    def others(self) -> tuple[int, int]:
        """The other workers' `a` and `b` cells, summed (this worker's own are live)."""
        a = self._cells.unpack_from(self._mm, self._a)
        b = self._cells.unpack_from(self._mm, self._b)
        own = (self._own_a - self._a) // 8
        return sum(a) - a[own], sum(b) - b[own]

    # -- scraped figures (written by the replica's owner) -----------------------------------

    def publish(self, figures: LoadFigures, scraped_at: float, in_flight_total: int) -> None:
        last_seen = _FIGS.unpack_from(self._mm, self._off + FIGS_AT)[0]
        _FIGS.pack_into(
            self._mm, self._off + FIGS_AT, last_seen, scraped_at, _opt(figures.waiting),
            _opt(figures.running), _opt(figures.kv_cache_usage), _opt(figures.gpu_utilization),
            in_flight_total,
        )

    def figures(self) -> tuple[LoadFigures, float | None, int]:
        """(figures, when they were scraped or None, all workers' in flight at that time)."""
        base = self._off + FIGS_AT
        _, at, waiting, running, kv, gpu, at_scrape = _FIGS.unpack_from(self._mm, base)
        if at == 0.0:
            return LoadFigures(), None, 0
        figs = self._figs
        # The bytes of when scraped and the four figures: what figs was made of, unless
        # a scrape has been published since. (Bytes, not floats: NaN, a figure the engine
        # does not give, never equals itself.)
        key = self._mm[base + 8:base + 48]
        if key != self._raw:
            figs = self._figs = LoadFigures.model_construct(
                waiting=_back(waiting), running=_back(running), kv_cache_usage=_back(kv),
                gpu_utilization=_back(gpu),
            )
            self._raw = key
        return figs, at, at_scrape

    def touch(self, now: float) -> None:
        _F64.pack_into(self._mm, self._off + FIGS_AT, now)


class LoadShare:
    """The mapped file. `create()` in the supervisor, `attach()` in each worker."""

    def __init__(self, path: Path, worker: int, create: bool = False,
                 workers: int = 1, slots: int = DEFAULT_SLOTS) -> None:
        self.path = Path(path)
        self.worker = worker
        if create:
            if workers < 1 or slots < 1:
                raise ValueError(f"workers ({workers}) and slots ({slots}) must be at least 1")
            size = HEADER_SIZE + slots * _slot_size(workers)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            os.ftruncate(fd, size)
        else:
            fd = os.open(self.path, os.O_RDWR)
        self._fd = fd
        self._mm = mmap.mmap(fd, 0)
        if create:
            _HEADER.pack_into(self._mm, 0, MAGIC, workers, slots, 0)
        magic, self.workers, self.slots, _ = _HEADER.unpack_from(self._mm, 0)
        if magic != MAGIC:
            raise ValueError(f"{self.path} is not an a3s load-share file")
        if not 0 <= worker < self.workers:
            raise ValueError(f"worker index {worker} is outside 0..{self.workers - 1}")
        self.slot_size = _slot_size(self.workers)
        self._index: dict[str, Slot] = {}

    @classmethod
    def create(cls, path: Path, workers: int, slots: int = DEFAULT_SLOTS) -> LoadShare:
        return cls(path, 0, create=True, workers=workers, slots=slots)

    @classmethod
    def attach(cls, path: Path, worker: int) -> LoadShare:
        return cls(path, worker)

    def close(self) -> None:
        self._index.clear()
        self._mm.close()
        os.close(self._fd)

    # -- ownership and generations ----------------------------------------------------------

    def owns(self, key: str) -> bool:
        """Whether this worker scrapes that replica (a stable split by the id's CRC)."""
        return zlib.crc32(key.encode()) % self.workers == self.worker

    @property
    def generation(self) -> int:
        return int(_GEN.unpack_from(self._mm, GENERATION_AT)[0])

    def bump(self) -> None:
        """Something changed in the store: every worker re-reads before its next request.
        Under the file lock, so two workers bumping at once both count."""
        with self._locked():
            _GEN.pack_into(self._mm, GENERATION_AT, self.generation + 1)

    # -- slots ------------------------------------------------------------------------------

    def slot(self, key: str, now: float | None = None) -> Slot | None:
        """The slot for `key` (found, or claimed now); None when the table is full."""
        held = self._index.get(key)
        if held is not None:
            return held
        now = time.monotonic() if now is None else now
        raw = _raw_id(key)
        with self._locked():
            free = None
            for i in range(self.slots):
                off = HEADER_SIZE + i * self.slot_size
                sid = self._mm[off:off + ID_SIZE]
                if sid == raw:
                    free = i
                    break
                if free is None and (sid[0] == 0 or self._reclaimable(i, off, now)):
                    free = i
            if free is None:
                return None
            off = HEADER_SIZE + free * self.slot_size
            if self._mm[off:off + ID_SIZE] != raw:  # a new (or reclaimed) slot: clean it
                self._mm[off:off + self.slot_size] = bytes(self.slot_size)
                self._mm[off:off + ID_SIZE] = raw
            slot = Slot(self, key, free)
            slot.touch(now)
        self._index[key] = slot
        return slot

    def peek(self, key: str) -> Slot | None:
        """The slot for `key` if some worker claimed it, without claiming one."""
        held = self._index.get(key)
        if held is not None:
            return held
        raw = _raw_id(key)
        for i in range(self.slots):
            off = HEADER_SIZE + i * self.slot_size
            if self._mm[off:off + ID_SIZE] == raw:
                return Slot(self, key, i)
        return None

    def forget(self, key: str) -> None:
        """This worker stops using `key` (its own cells go to zero; the slot is reclaimed
        once no worker has touched it for a while)."""
        slot = self._index.pop(key, None)
        if slot is not None:
            slot.set_own(0, 0)

    def clear_worker(self, worker: int) -> None:
        """A worker died: its cells count nothing any more (the supervisor calls this
        before starting its replacement)."""
        for i in range(self.slots):
            off = HEADER_SIZE + i * self.slot_size + CELLS_AT
            for cell in (off + 8 * worker, off + 8 * (self.workers + worker)):
                _GEN.pack_into(self._mm, cell, 0)

    def _reclaimable(self, i: int, off: int, now: float) -> bool:
        last_seen = _F64.unpack_from(self._mm, off + FIGS_AT)[0]
        if now - last_seen < RECLAIM_AFTER_S:
            return False
        cells = struct.unpack_from(f"={self.workers}q", self._mm, off + CELLS_AT)
        return not any(cells)

    def _locked(self) -> _FileLock:
        return _FileLock(self._fd)


class _FileLock:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)


def _slot_size(workers: int) -> int:
    return CELLS_AT + 16 * workers


def _raw_id(key: str) -> bytes:
    raw = key.encode()
    if len(raw) > ID_SIZE:  # ids are short; a long one is kept apart by its digest
        raw = b"#" + hashlib.blake2b(raw, digest_size=31).hexdigest()[:ID_SIZE - 1].encode()
    return raw.ljust(ID_SIZE, b"\0")
