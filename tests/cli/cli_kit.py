"""Running `a3s` in-process (Typer's runner) as if on a terminal or a pipe."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from typer.testing import CliRunner

from a3s_core.cli.main import app
from a3s_core.testing import ADMIN_TOKEN

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def env_for(url: str, columns: int = 80, terminal: bool = False) -> dict[str, str | None]:
    """The platform's address and token, the width, and — with `terminal` — rich told that
    stdout is a terminal (the runner's stdout never is)."""
    env: dict[str, str | None] = {
        "A3S_URL": url,
        "A3S_TOKEN": ADMIN_TOKEN,
        "COLUMNS": str(columns),
        "TTY_COMPATIBLE": "1" if terminal else None,
        "FORCE_COLOR": "1" if terminal else None,
        "NO_COLOR": None,
    }
    return env


def a3s(url: str, *args: str, columns: int = 80, terminal: bool = False) -> Any:
    return CliRunner().invoke(app, list(args), env=env_for(url, columns, terminal))


def text(result: Any) -> str:
    return ANSI.sub("", result.stdout)


def request_file(tmp_path: Path, *models: dict[str, Any], namespace: str = "team-ai") -> str:
    f = tmp_path / f"request-{len(list(tmp_path.iterdir()))}.json"
    f.write_text(json.dumps({"models": list(models), "namespace": namespace}))
    return str(f)


def admin(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})


def key_works(url: str, endpoint: str, key: str, timeout: float = 10) -> bool:
    """The key opens the deployment at the endpoint's path on the server at `url` (the
    gateway's model list); the gateway learns of new keys within a moment."""
    models = url + urlsplit(endpoint).path.rstrip("/") + "/models"
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(models, headers={"Authorization": f"Bearer {key}"})
        if r.status_code == 200 or time.monotonic() > deadline:
            return r.status_code == 200
        time.sleep(0.05)
