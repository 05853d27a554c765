"""`a3s serve --workers N` on a port something else holds: refused with one line, never
shared. SO_REUSEPORT lets any process of the same user bind the port too, so a second
`a3s serve` on it used to start "successfully" and take half the connections (a request
with the first platform's token got 401 every other time)."""

from __future__ import annotations

import errno
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from a3s_core.gateway.workers import bind, hold_port


def test_the_port_of_another_platforms_workers_is_not_shared() -> None:
    other = bind("127.0.0.1", 0)  # another supervisor's workers: bound with SO_REUSEPORT
    other.listen()
    port = other.getsockname()[1]
    try:
        with pytest.raises(OSError) as info:
            hold_port("127.0.0.1", port)
        assert info.value.errno == errno.EADDRINUSE
    finally:
        other.close()
    mine = hold_port("127.0.0.1", port)  # free again: held, and open to this one's workers
    worker = bind("127.0.0.1", port)
    worker.listen()
    worker.close()
    mine.close()


@pytest.mark.parametrize("holder", ["another platform's workers", "any program"])
def test_a_taken_port_stops_a3s_serve_with_one_line(tmp_path: Path, holder: str) -> None:
    taken = bind("127.0.0.1", 0) if holder.startswith("another") else socket.socket()
    if not holder.startswith("another"):
        taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        run = subprocess.run(
            [sys.executable, "-m", "a3s_core.cli.main", "serve", "--port", str(port),
             "--workers", "2", "--data-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=60,
        )
    finally:
        taken.close()
    assert run.returncode == 1, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr
    assert (
        f"error: cannot listen on 127.0.0.1:{port}: address already in use "
        "(another `a3s serve`? choose another --port)"
    ) in run.stderr
