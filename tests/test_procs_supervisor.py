"""The process supervisor: output capture, exit detection, stop, health, adoption."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import pytest
from aiohttp import web

from a3s_core.procs import ManagedProcess, ProcessSupervisor, free_port, http_get

PY = sys.executable


def script(body: str) -> list[str]:
    return [PY, "-u", "-c", body]


async def wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def sup(tmp_path: Path):  # type: ignore[no-untyped-def]
    supervisor = ProcessSupervisor(tmp_path / "state", ring_size=50, poll_interval=0.02)
    yield supervisor
    await supervisor.close(stop_processes=True, timeout=2)


async def test_captures_lines_with_timestamps_in_ring_and_jsonl(sup: ProcessSupervisor) -> None:
    proc = sup.start("p1", script("import sys\nprint('hello')\nprint('oops', file=sys.stderr)"))
    await wait_for(lambda: not proc.is_running())
    lines = proc.lines(10)
    assert [item.line for item in lines] == ["hello", "oops"]
    assert all(item.ts.tzinfo is not None for item in lines)
    rows = [json.loads(r) for r in proc.jsonl_path.read_text().splitlines()]
    assert [r["line"] for r in rows] == ["hello", "oops"]
    assert rows[-1]["end"] == proc.out_path.stat().st_size
    assert proc.poll() is not None and proc.poll().code == 0  # type: ignore[union-attr]


async def test_ring_buffer_is_bounded_and_partial_last_line_is_kept(
    sup: ProcessSupervisor,
) -> None:
    proc = sup.start("p2", script("import sys\nfor i in range(200): print(i)\n"
                                  "sys.stdout.write('no newline')"))
    await wait_for(lambda: not proc.is_running())
    lines = proc.lines(1000)
    assert len(lines) == 50  # ring_size
    assert lines[-1].line == "no newline"
    assert lines[-2].line == "199"


async def test_exit_code_and_summary(sup: ProcessSupervisor) -> None:
    body = "print('loading model'); print('CUDA error'); raise SystemExit(3)"
    proc = sup.start("p3", script(body))
    await wait_for(lambda: not proc.is_running())
    status = proc.poll()
    assert status is not None and status.code == 3 and status.signal is None
    summary = proc.exit_summary()
    assert summary.startswith("exited with code 3; last log lines:")
    assert "CUDA error" in summary


async def test_missing_executable_reports_127(sup: ProcessSupervisor) -> None:
    proc = sup.start("p4", ["/nonexistent/engine", "--port", "1"])
    await wait_for(lambda: not proc.is_running())
    assert proc.poll().code == 127  # type: ignore[union-attr]
    assert "nonexistent" in proc.exit_summary()


async def test_stop_sends_sigterm_to_the_whole_group(sup: ProcessSupervisor) -> None:
    body = (
        "import signal, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('child', child.pid, flush=True)\n"
        "signal.signal(signal.SIGTERM, lambda *a: (print('got TERM', flush=True), sys.exit(0)))\n"
        "time.sleep(60)\n"
    )
    proc = sup.start("p5", script(body))
    await wait_for(lambda: any(x.line.startswith("child") for x in proc.lines()))
    child = int(next(x.line for x in proc.lines() if x.line.startswith("child")).split()[1])
    status = await proc.stop(timeout=5)
    assert status.code == 0
    assert "got TERM" in [x.line for x in proc.lines()]
    await wait_for(lambda: not _alive(child))


async def test_stop_escalates_to_sigkill(sup: ProcessSupervisor) -> None:
    body = ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('stubborn', flush=True)\ntime.sleep(60)")
    proc = sup.start("p6", script(body))
    await wait_for(lambda: bool(proc.lines()))
    status = await proc.stop(timeout=0.3)
    assert status.signal == signal.SIGKILL
    assert "killed by signal 9" in status.describe() or "signal 9" in status.describe()


async def test_follow_yields_new_lines_then_ends_with_the_process(
    sup: ProcessSupervisor,
) -> None:
    proc = sup.start("p7", script("import time\nfor i in range(5):\n print('tick', i)\n"
                                  " time.sleep(0.05)"))
    seen = [item.line async for item in proc.follow(tail=0, follow=True, poll_interval=0.02)]
    assert seen == [f"tick {i}" for i in range(5)]


async def test_adoption_restores_history_and_continues_tailing(tmp_path: Path) -> None:
    body = "import time, sys\nprint('first', flush=True)\nsys.stdin.close()\ntime.sleep(60)"
    first = ProcessSupervisor(tmp_path / "s", poll_interval=0.02)
    proc = first.start("r1", script(body), meta={"port": 1234})
    await wait_for(lambda: bool(proc.lines()))
    await first.close()  # the platform exits; the process keeps running

    second = ProcessSupervisor(tmp_path / "s", poll_interval=0.02)
    try:
        (adopted,) = second.adopt_all()
        assert adopted.pid == proc.pid and adopted.meta == {"port": 1234}
        assert adopted.is_running()
        assert [x.line for x in adopted.lines()] == ["first"]  # no duplicates after resume
        with proc.out_path.open("a") as out:  # more output after adoption is picked up
            out.write("second\n")
        await wait_for(lambda: [x.line for x in adopted.lines()] == ["first", "second"])
        status = await second.stop("r1", timeout=2)
        assert status is not None and status.signal == signal.SIGTERM
        assert not (tmp_path / "s" / "r1.json").exists()
    finally:
        await second.close(stop_processes=True, timeout=2)


async def test_adopted_process_that_died_reports_its_exit_code(tmp_path: Path) -> None:
    first = ProcessSupervisor(tmp_path / "s")
    proc = first.start("r2", script("import time; time.sleep(0.2); raise SystemExit(7)"))
    await first.close()
    await asyncio.sleep(0.3)
    second = ProcessSupervisor(tmp_path / "s")
    (adopted,) = second.adopt_all()
    await wait_for(lambda: not adopted.is_running())
    assert adopted.poll().code == 7  # type: ignore[union-attr]
    assert proc.poll().code == 7  # type: ignore[union-attr]
    await second.close()


async def test_recycled_pid_is_not_adopted_as_running(tmp_path: Path) -> None:
    sup = ProcessSupervisor(tmp_path / "s")
    proc = sup.start("r3", script("import time; time.sleep(30)"))
    try:
        record = proc.record.model_copy(update={"start_ticks": (proc.record.start_ticks or 0) + 1})
        impostor = ManagedProcess(record, sup.log_dir, 10)
        if Path("/proc").is_dir():
            assert not impostor._running_foreign()
            status = impostor.poll()  # dead, and the live process was not waited on
            assert status is not None and status.code is None
            await asyncio.sleep(0.2)
            assert proc.is_running()  # the live process with that pid was not signalled
    finally:
        await sup.close(stop_processes=True, timeout=2)


async def test_health_check_tracks_readiness(sup: ProcessSupervisor) -> None:
    app = web.Application()
    state = {"ok": False}

    async def health(request: web.Request) -> web.Response:
        return web.Response(status=200 if state["ok"] else 503)

    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        proc = sup.start("h1", script("import time; time.sleep(30)"))
        url = f"http://127.0.0.1:{port}/health"
        assert not await proc.check_http(url)
        assert proc.ready_since is None and "503" in proc.last_health_error
        state["ok"] = True
        assert await proc.check_http(url)
        assert proc.ready_since is not None and proc.health_failures == 0
        assert (await http_get(url))[0] == 200
        assert not await proc.check_http(f"http://127.0.0.1:{free_port()}/health", 0.5)
        assert "cannot connect" in proc.last_health_error
    finally:
        await runner.cleanup()


def test_free_port_avoids_reserved_ports_and_is_bindable() -> None:
    port = free_port()
    other = free_port(avoid={port})
    assert other != port
    with socket.socket() as s:
        s.bind(("127.0.0.1", other))


def test_names_and_argv_are_validated(tmp_path: Path) -> None:
    sup = ProcessSupervisor(tmp_path)
    with pytest.raises(ValueError, match="process name"):
        sup.start("../escape", ["true"])
    with pytest.raises(ValueError, match="empty argv"):
        sup.start("ok", [])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[1].startswith("Z"))


# ---------------------------------------------------------------- killed mid-start / mid-stop

_STARTER = (
    "import asyncio, sys\n"
    "from a3s_core.procs import ProcessSupervisor\n"
    "sup = ProcessSupervisor(sys.argv[1])\n"
    "if sys.argv[2] == 'start':\n"
    "    sup.start('r', [sys.executable, '-c', 'import time; time.sleep(60)'], meta={'gpu': 0})\n"
    "else:\n"
    "    sup.adopt_all()\n"
    "    asyncio.run(sup.stop('r', timeout=5))\n"
)


def _run_and_crash(state: Path, action: str, step: str | None) -> None:
    """A real platform-like process that starts (or stops) one process, SIGKILLed at `step`."""
    import subprocess

    env = {**os.environ, "A3S_TEST_CRASH_AT": step or ""}
    done = subprocess.run([PY, "-c", _STARTER, str(state), action], env=env, timeout=30)
    expected = -signal.SIGKILL if step else 0
    assert done.returncode == expected, f"{action} at {step}: exit {done.returncode}"


def _sleepers(state: Path) -> list[int]:
    """Live `sleep 60` children started through `state` (by the wrapper's exit-file path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat.split(") ")[1].startswith("Z"):
            continue
        if any(str(state).encode() in a for a in argv) and b"a3s-proc" in b" ".join(argv):
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
@pytest.mark.parametrize("step", ["start:intent", "start:spawned", "start:recorded"])
async def test_a_start_killed_at_any_step_leaves_no_untracked_process(
    tmp_path: Path, step: str
) -> None:
    state = tmp_path / "s"
    _run_and_crash(state, "start", step)
    sup = ProcessSupervisor(state)
    try:
        adopted = {p.name: p for p in sup.adopt_all()}
        live = _sleepers(state)
        if live:  # started before the kill: adopted, with its pid and the caller's meta
            (proc,) = adopted.values()
            assert proc.is_running() and [proc.pid] == live and proc.meta == {"gpu": 0}
            record = json.loads((state / "r.json").read_text())
            assert record["pid"] == proc.pid
        else:  # killed before the process existed: the record says so, nothing runs
            assert step == "start:intent"
            (proc,) = adopted.values()
            status = proc.poll()
            assert status is not None and "never started" in status.describe()
        status = await sup.stop("r", timeout=2)
        assert status is not None
        assert not (state / "r.json").exists() and not _sleepers(state)
    finally:
        await sup.close(stop_processes=True, timeout=2)
        for pid in _sleepers(state):
            os.killpg(pid, signal.SIGKILL)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
@pytest.mark.parametrize("step", ["stop:signalled", "stop:dead"])
async def test_a_stop_killed_at_any_step_keeps_the_record_until_all_is_dead(
    tmp_path: Path, step: str
) -> None:
    state = tmp_path / "s"
    _run_and_crash(state, "start", None)
    (wrapper,) = _sleepers(state)
    _run_and_crash(state, "stop", step)
    assert (state / "r.json").exists()  # the record outlives the kill
    sup = ProcessSupervisor(state)
    try:
        (proc,) = sup.adopt_all()
        assert proc.pid == wrapper
        await sup.stop("r", timeout=2)
        assert not (state / "r.json").exists() and not _sleepers(state)
    finally:
        await sup.close(stop_processes=True, timeout=2)
        for pid in _sleepers(state):
            os.killpg(pid, signal.SIGKILL)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
async def test_stop_kills_workers_that_left_the_group_before_dropping_the_record(
    sup: ProcessSupervisor,
) -> None:
    # An engine whose worker starts its own session and ignores SIGTERM: killing the
    # engine's group does not reach it, and it would keep its GPU with no record left.
    body = (
        "import subprocess, sys, time\n"
        "w = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'], "
        "start_new_session=True)\n"
        "print('worker', w.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = sup.start("w1", script(body))
    await wait_for(lambda: any(x.line.startswith("worker") for x in proc.lines()))
    worker = int(next(x.line for x in proc.lines() if x.line.startswith("worker")).split()[1])
    try:
        await sup.stop("w1", timeout=2)
        assert not _alive(worker)
        assert not (sup.state_dir / "w1.json").exists()
    finally:
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)


async def test_a_running_process_is_never_forgotten_nor_started_twice(
    sup: ProcessSupervisor,
) -> None:
    from a3s_core.procs import ProcessStillRunning

    proc = sup.start("f1", script("import time; time.sleep(30)"))
    with pytest.raises(ProcessStillRunning, match="still runs"):
        sup.forget("f1")
    with pytest.raises(ValueError, match="already running"):
        sup.start("f1", script("import time; time.sleep(30)"))
    assert (sup.state_dir / "f1.json").exists() and proc.is_running()
    assert sup.get("f1") is proc


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
async def test_a_never_started_verdict_is_revised_when_the_record_gets_a_pid(
    tmp_path: Path,
) -> None:
    # Two platform processes on one state dir: A looked while the start was only an
    # intent; B then started the process. A's next adoption pass must see it running.
    state = tmp_path / "s"
    _run_and_crash(state, "start", "start:intent")
    a, b = ProcessSupervisor(state), ProcessSupervisor(state)
    try:
        (seen,) = a.adopt_all()
        assert seen.poll() is not None and seen.poll().never_started  # type: ignore[union-attr]
        b.adopt_all()
        started = b.start("r", script("import time; time.sleep(30)"))
        (revised,) = a.adopt_all()
        assert revised.pid == started.pid and revised.is_running()
        assert a.get("r") is revised
    finally:
        await b.close(stop_processes=True, timeout=2)
        await a.close()
