"""What `a3s serve --access-log` writes: every request and WebSocket handshake is logged,
and no credential sent in a URL ever is (issue 15, item 4)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from a3s_core.log_config import redact
from a3s_core.net import free_port

ADMIN = "a3s-admin-Vt3qLx9RwZp2KdN7yBf4"
WRONG_KEY = "sk-a3s-Hm8sQe2WuJc5TnG1xAo6"


def test_credentials_in_urls_never_reach_the_log(tmp_path: Path) -> None:
    port = free_port()
    a3s = shutil.which("a3s", path=str(Path(sys.executable).parent)) or "a3s"
    out = (tmp_path / "serve.log").open("wb")
    env = {**os.environ, "A3S_ADMIN_TOKEN": ADMIN, "HF_HUB_OFFLINE": "1",
           "A3S_RUNTIME_OPTIONS": f'{{"state_dir": "{tmp_path / "sim"}"}}'}
    server = subprocess.Popen(
        [a3s, "serve", "--access-log", "--port", str(port), "--data-dir", str(tmp_path / "d")],
        env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        ws = f"ws://127.0.0.1:{port}/v1/events"
        with connect(f"{ws}?token={ADMIN}&since=0", open_timeout=10):
            pass  # accepted: the browser way of authenticating a socket
        with pytest.raises(InvalidStatus):
            connect(f"{ws}?token={WRONG_KEY}", open_timeout=10).close()
        headers = {"Authorization": f"Bearer {ADMIN}"}
        assert httpx.get(f"{base}/v1/deployments?token={ADMIN}", headers=headers).is_success
        httpx.post(f"{base}/d/default/none/v1/chat/completions?api_key={WRONG_KEY}",
                   headers={"Authorization": f"Bearer {WRONG_KEY}"}, json={})
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(20)
    log = (tmp_path / "serve.log").read_text(errors="replace")
    assert ADMIN[10:] not in log and WRONG_KEY[7:] not in log, log
    # The lines are there, credentials replaced: the test cannot pass by logging nothing.
    assert '"WebSocket /v1/events?token=<redacted>&since=0" [accepted]' in log, log
    assert '"WebSocket /v1/events?token=<redacted>" 401' in log, log
    assert '"GET /v1/deployments?token=<redacted> HTTP/1.1" 200' in log, log
    assert "/v1/chat/completions?api_key=<redacted> HTTP/1.1" in log, log


def test_redact_keeps_everything_but_the_secret() -> None:
    line = f'1.2.3.4:5 - "GET /v1/x?a=1&Token={ADMIN}&b=2 HTTP/1.1" 200'
    assert redact(line) == '1.2.3.4:5 - "GET /v1/x?a=1&Token=<redacted>&b=2 HTTP/1.1" 200'
    assert redact(f"/d/ns/{WRONG_KEY}/v1") == "/d/ns/<redacted>/v1"
    assert redact("/v1/events?tokens=3&monkey=1") == "/v1/events?tokens=3&monkey=1"
