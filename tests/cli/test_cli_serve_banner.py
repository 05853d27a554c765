"""What `a3s serve` prints before it serves: the admin token (shown once) and the URL, each
whole on its own line however narrow the terminal and whether or not stdout is a pipe, with
one process or several workers."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from a3s_core.net import free_port


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_prints_token_and_url_whole_at_40_columns(tmp_path: Path, workers: int) -> None:
    port = free_port()
    a3s = shutil.which("a3s", path=str(Path(sys.executable).parent)) or "a3s"
    out = (tmp_path / "serve.out").open("wb")
    env = {**os.environ, "COLUMNS": "40", "HF_HUB_OFFLINE": "1",
           "A3S_RUNTIME_OPTIONS": f'{{"state_dir": "{tmp_path / "sim"}"}}'}
    env.pop("A3S_ADMIN_TOKEN", None)
    data = tmp_path / "a-data-dir-whose-path-is-longer-than-forty-columns"
    server = subprocess.Popen(
        [a3s, "serve", "--port", str(port), "--data-dir", str(data), "--workers", str(workers)],
        env=env, stdout=out, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(20)
    lines = (tmp_path / "serve.out").read_text().splitlines()
    token = (data / "admin-token").read_text().strip()
    assert f"  {token}" in lines, lines
    assert any(str(data / "admin-token") in line for line in lines), lines
    banner = [line for line in lines if line.startswith("A3S ")]
    assert len(banner) == 1, lines
    assert re.search(rf"on http://127\.0\.0\.1:{port} — runtime sim, .*store sqlite:///"
                     rf"{re.escape(str(data))}/a3s\.db$", banner[0]), banner
