"""A supervisor for engines run as local subprocesses (the `sim` and `local` runtimes).

Design choices, and why:
- Each process gets its own session (process group): a stop signal reaches the engine and
  the workers it forks, and the platform's own Ctrl-C does not kill replicas.
- stdout and stderr go straight to a file (`<name>.out`), never to a pipe, so an engine keeps
  running and logging when the platform exits; the next platform process adopts it from the
  JSON record kept in the state directory (`adopt_all`).
- Every instant of a start or a stop is safe to be killed at (SIGKILL, power loss): the
  record is written and fsynced *before* the process exists (an intent, without pid), the
  pid is filled in once it runs, and on a stop the record goes only after every process of
  it is confirmed dead. An intent without pid is resolved on adoption by the marker the
  process carries (`a3s_core.proc_scan`): found, it is adopted; not found, it never started.
- A tiny `sh` wrapper records the engine's exit code in `<name>.exit`, so even an adopted
  process (not our child, so not ours to `wait` for) reports how it ended.
- One background task tails every output file, stamps each new line with the time it was
  seen, keeps the last lines in a ring buffer and appends them to `<name>.jsonl`
  (`{"ts", "line", "end"}`; `end` is the byte offset in `.out`, so tailing resumes exactly
  where the previous platform process stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from a3s_core.net import free_port, http_get
from a3s_core.proc_output import OutputLine, OutputTail
from a3s_core.proc_record import ExitStatus, ProcessRecord, write_record
from a3s_core.proc_scan import (
    MARKER_ENV,
    alive,
    can_scan,
    crash_point,
    find_leader,
    members,
    new_marker,
    proc_info,
)

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
# `trap :` (a handler, not an ignore, so the engine still gets the default SIGTERM action)
# keeps the shell alive until the engine has exited, then the shell records its code.
_WRAPPER = 'f=$1; shift; trap : TERM INT HUP; "$@"; c=$?; echo "$c" > "$f"; exit "$c"'


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) from /proc, or None if gone / no /proc."""
    info = proc_info(pid)
    return (info.state, info.start_ticks) if info else None


class ProcessStillRunning(RuntimeError):
    """A process (or one it forked) did not die, so its record is kept."""


class ManagedProcess(OutputTail):
    """One supervised process: its record, its output (`OutputTail`) and how it ended."""

    def __init__(
        self,
        record: ProcessRecord,
        log_dir: Path,
        ring_size: int,
        popen: subprocess.Popen[bytes] | None = None,
    ) -> None:
        super().__init__(record.name, log_dir, ring_size)
        self.record = record
        self.exit_path = log_dir / f"{record.name}.exit"
        self._popen = popen
        self._exit: ExitStatus | None = None
        # Health, as last checked by `check_http` (the caller decides when to check).
        self.ready_since: datetime | None = None
        self.health_failures = 0
        self.last_health_error = ""

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def pid(self) -> int | None:
        """None only for a start the platform recorded but never got to run."""
        return self.record.pid

    @property
    def meta(self) -> dict[str, Any]:
        return self.record.meta

    # ------------------------------------------------------------------ liveness

    def poll(self) -> ExitStatus | None:
        """None while the process runs; how it ended once it has."""
        if self._exit is not None:
            return self._exit
        code: int | None = None
        sig: int | None = None
        reused = False
        if self.pid is None:  # a recorded start that never ran: nothing to look at
            self._exit = ExitStatus(at=datetime.now(UTC), never_started=True)
            return self._exit
        if self._popen is not None:
            rc = self._popen.poll()
            if rc is None:
                return None
            code, sig = (None, -rc) if rc < 0 else (rc, None)
        elif self._pid_reused():
            reused = True  # ours ended long ago; leave whoever has the pid now alone
        else:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # adopted from an earlier platform process
                if self._running_foreign():
                    return None
            else:
                if pid == 0:
                    return None
                if os.WIFSIGNALED(status):
                    sig = os.WTERMSIG(status)
                else:
                    code = os.waitstatus_to_exitcode(status)
        code, sig = self._read_exit_file(code, sig)
        self._exit = ExitStatus(code=code, signal=sig, at=datetime.now(UTC))
        # Workers the engine forked may outlive it and hold GPUs: end the whole group.
        if not reused:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        self.pump(final=True)
        return self._exit

    def is_running(self) -> bool:
        return self.poll() is None

    def _pid_reused(self) -> bool:
        assert self.pid is not None
        stat = _proc_stat(self.pid)
        ticks = self.record.start_ticks
        return stat is not None and ticks is not None and stat[1] != ticks

    def _running_foreign(self) -> bool:
        assert self.pid is not None
        stat = _proc_stat(self.pid)
        if stat is None:
            if Path("/proc").is_dir():
                return False
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        state, ticks = stat
        if state in ("Z", "X"):
            return False
        return self.record.start_ticks is None or ticks == self.record.start_ticks

    def _read_exit_file(self, code: int | None, sig: int | None) -> tuple[int | None, int | None]:
        try:
            recorded = int(self.exit_path.read_text().strip())
        except (OSError, ValueError):
            return code, sig
        if recorded > 128 and recorded - 128 < signal.NSIG:  # the shell's "killed by N"
            return recorded, recorded - 128
        return recorded, None

    async def stop(self, timeout: float = 10.0) -> ExitStatus:
        """SIGTERM to the process group, SIGKILL after `timeout` seconds; then SIGKILL to
        anything it forked that is still alive (in its group, or carrying its marker
        elsewhere). Returns how it ended; raises ProcessStillRunning if something of it
        still lives 5 s after SIGKILL."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self.is_running():
            self._signal_group(signal.SIGTERM)
            crash_point("stop:signalled")
            while self.is_running() and loop.time() < deadline:
                await asyncio.sleep(0.02)
            if self.is_running():
                self._signal_group(signal.SIGKILL)
        deadline = max(deadline, loop.time()) + 5
        while (left := self.survivors()) and loop.time() < deadline:
            for pid in left:  # the leader is gone (or going): nothing of it may stay
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.02)
        if left:
            pids = ", ".join(map(str, left))
            raise ProcessStillRunning(
                f"process {self.name}: pid {pids} still alive 5 s after SIGKILL; its record "
                "is kept so it can be stopped later"
            )
        status = self.poll()
        return status or ExitStatus(code=None, signal=signal.SIGKILL, at=datetime.now(UTC))

    def _signal_group(self, signum: int) -> None:
        if self.pid is not None and not self._pid_reused():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signum)

    def survivors(self) -> list[int]:
        """Pids of every live process of this one: itself, its group, anything carrying its
        marker. Without /proc: the leader's, if it still runs."""
        running = self.is_running()
        if not can_scan():
            return [self.pid] if running and self.pid is not None else []
        group = self.pid if self.pid is not None and not self._pid_reused() else None
        found = [info.pid for info in members(self.record.marker, group)]
        if running and self.pid is not None and self.pid not in found:
            info = proc_info(self.pid)
            if info is not None and alive(info):
                found.append(self.pid)
        return found

    def exit_summary(self, lines: int = 20) -> str:
        """`exited with code 1; last log lines: ...` — for failure reasons."""
        status = self.poll()
        head = status.describe() if status else "running"
        tail = [item.line for item in self.lines(lines)]
        return head + ("; last log lines:\n" + "\n".join(tail) if tail else "; no output")

    # ------------------------------------------------------------------ health

    async def check_http(self, url: str, timeout: float = 2.0) -> bool:
        """GET `url`; a 2xx answer is healthy. Updates `ready_since` / `health_failures`."""
        try:
            status, body = await http_get(url, timeout)
        except aiohttp.ClientConnectorError as exc:
            ok, error = False, f"cannot connect ({exc.os_error.strerror or exc.os_error})"
        except TimeoutError:
            ok, error = False, f"no answer within {timeout:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            ok, error = False, f"{type(exc).__name__}: {exc}".rstrip(": ")
        else:
            ok, error = 200 <= status < 300, f"HTTP {status}: {body[:200]}"
        if ok:
            self.health_failures, self.last_health_error = 0, ""
            if self.ready_since is None:
                self.ready_since = datetime.now(UTC)
        else:
            self.health_failures += 1
            self.last_health_error = error
        return ok


class ProcessSupervisor:
    """Starts, tails, stops and adopts processes; one record per process in `state_dir`."""

    def __init__(
        self, state_dir: str | Path, ring_size: int = 1000, poll_interval: float = 0.1
    ) -> None:
        self.state_dir = Path(state_dir)
        self.log_dir = self.state_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.ring_size = ring_size
        self.poll_interval = poll_interval
        self._procs: dict[str, ManagedProcess] = {}
        self._pumper: asyncio.Task[None] | None = None

    def _record_path(self, name: str) -> Path:
        return self.state_dir / f"{name}.json"

    def get(self, name: str) -> ManagedProcess | None:
        return self._procs.get(name)

    def processes(self) -> list[ManagedProcess]:
        return list(self._procs.values())

    def start(
        self,
        name: str,
        argv: list[str],
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> ManagedProcess:
        """Start `argv` in its own process group with `env` as its whole environment
        (None: inherit ours). A finished run under the same name is replaced.

        Order, so that a platform killed at any instant leaves nothing untracked: the record
        (meta included: GPUs, port) is written and fsynced first, then the process is
        spawned carrying the record's marker, then the pid is written into the record."""
        if not _NAME.match(name):
            raise ValueError(f"process name {name!r} must match {_NAME.pattern}")
        if not argv:
            raise ValueError(f"process {name!r}: empty argv")
        if (old := self._procs.get(name)) is not None:
            if old.is_running():
                raise ValueError(f"process {name!r} is already running (pid {old.pid})")
            self.forget(name)  # raises ProcessStillRunning if anything of it lives
        elif self._record_path(name).exists():
            raise ValueError(
                f"process {name!r} has a record in {self.state_dir} that this supervisor has "
                "not adopted (another platform process's?); adopt it before replacing it"
            )
        log_dir = self.log_dir
        for suffix in (".out", ".jsonl", ".jsonl.1", ".exit"):
            (log_dir / f"{name}{suffix}").unlink(missing_ok=True)
        exit_path = log_dir / f"{name}.exit"
        record = ProcessRecord(
            name=name,
            marker=new_marker(name),
            argv=list(argv),
            started_at=datetime.now(UTC),
            meta=dict(meta or {}),
        )
        self._write_record(record)
        crash_point("start:intent")
        full_env = dict(env if env is not None else os.environ)
        full_env[MARKER_ENV] = str(record.marker)
        try:
            with (log_dir / f"{name}.out").open("ab") as out:
                popen = subprocess.Popen(
                    ["/bin/sh", "-c", _WRAPPER, f"a3s-proc:{record.marker}", str(exit_path),
                     *argv],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=full_env,
                    cwd=cwd,
                    start_new_session=True,
                )
        except BaseException:  # nothing was started (a bad cwd, say): the intent goes
            self._record_path(name).unlink(missing_ok=True)
            raise
        crash_point("start:spawned")
        stat = _proc_stat(popen.pid)
        record.pid = popen.pid
        record.start_ticks = stat[1] if stat else None
        self._write_record(record)
        crash_point("start:recorded")
        proc = ManagedProcess(record, log_dir, self.ring_size, popen)
        self._procs[name] = proc
        self._ensure_pumper()
        return proc

    def adopt_all(self) -> list[ManagedProcess]:
        """Take over every recorded process not yet known here, running or not (a dead one
        reports how it ended). A start recorded without pid (the platform was killed while
        starting it) is looked up by its marker: found, it is adopted with its pid; not
        found, it reports that it never started. Unreadable records are skipped."""
        adopted: list[ManagedProcess] = []
        for path in sorted(self.state_dir.glob("*.json")):
            try:
                record = ProcessRecord.model_validate_json(path.read_bytes())
            except (OSError, ValueError):
                continue
            known = self._procs.get(record.name)
            if known is not None and (known.pid is not None or known._popen is not None):
                continue
            # Unknown, or known as "never started": that verdict may have come from a look
            # taken while another platform process sharing this state dir was starting it.
            if record.pid is None and record.marker and (leader := find_leader(record.marker)):
                record.pid, record.start_ticks = leader.pid, leader.start_ticks
                self._write_record(record)
                log.warning("process %s: adopted pid %d found by its marker (the platform "
                            "was stopped while starting it)", record.name, leader.pid)
            if known is not None and record.pid is None:
                continue  # still nothing to adopt
            proc = ManagedProcess(record, self.log_dir, self.ring_size)
            proc._restore_history()
            proc.pump()
            self._procs[record.name] = proc
            adopted.append(proc)
        if adopted:
            self._ensure_pumper()
        return adopted

    def update_meta(self, name: str, **meta: Any) -> None:
        proc = self._procs[name]
        proc.record.meta.update(meta)
        self._write_record(proc.record)

    def _write_record(self, record: ProcessRecord) -> None:
        write_record(record, self._record_path(record.name))

    async def stop(self, name: str, timeout: float = 10.0) -> ExitStatus | None:
        """Stop the process, confirm that nothing of it lives, then forget it (record and
        log files removed). None if unknown. Raises ProcessStillRunning, keeping the
        record, if something of it survives SIGKILL."""
        proc = self._procs.get(name)
        if proc is None:
            return None
        status = await proc.stop(timeout)
        crash_point("stop:dead")
        self.forget(name)
        return status

    def forget(self, name: str) -> None:
        """Drop a finished process: record and log files. Raises ProcessStillRunning (and
        keeps the record) while the process, or anything it forked, lives."""
        proc = self._procs.get(name)
        if proc is not None and (left := proc.survivors()):
            raise ProcessStillRunning(
                f"process {name!r} still runs (pid {', '.join(map(str, left))}); stop it "
                "before forgetting it"
            )
        self._procs.pop(name, None)
        self._record_path(name).unlink(missing_ok=True)
        for suffix in (".out", ".jsonl", ".jsonl.1", ".exit"):
            (self.log_dir / f"{name}{suffix}").unlink(missing_ok=True)

    async def close(self, stop_processes: bool = False, timeout: float = 10.0) -> None:
        """Stop tailing; processes keep running (and stay adoptable) unless asked."""
        if stop_processes:
            results = await asyncio.gather(
                *(self.stop(n, timeout) for n in list(self._procs)), return_exceptions=True
            )
            for error in results:
                if isinstance(error, Exception):
                    log.error("%s", error)
        if self._pumper is not None:
            self._pumper.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await self._pumper
            self._pumper = None
        for proc in self._procs.values():
            proc.pump()

    def _ensure_pumper(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: `lines()` / `follow()` still pump on demand
        task = self._pumper
        if task is not None and not task.done() and task.get_loop() is loop:
            return
        self._pumper = loop.create_task(self._pump_forever(), name="a3s-procs-pump")

    async def _pump_forever(self) -> None:
        while True:
            for proc in list(self._procs.values()):
                try:
                    proc.pump(final=not proc.is_running())
                except Exception:  # one unreadable log must not stop tailing the others
                    log.warning("tailing the output of %s failed", proc.name, exc_info=True)
            await asyncio.sleep(self.poll_interval)


__all__ = [
    "ExitStatus",
    "ManagedProcess",
    "OutputLine",
    "ProcessRecord",
    "ProcessStillRunning",
    "ProcessSupervisor",
    "free_port",
    "http_get",
]
