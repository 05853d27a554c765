"""A small HTTP client for the control plane, shared by the CLI commands."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from a3s_core.settings import Settings


class CliError(Exception):
    """Printed as one readable line; the command exits non-zero."""


def default_url() -> str:
    return os.environ.get("A3S_URL", "http://127.0.0.1:8080")


def default_token() -> str | None:
    if tok := os.environ.get("A3S_TOKEN") or os.environ.get("A3S_ADMIN_TOKEN"):
        return tok
    path = Path(Settings().data_dir) / "admin-token"  # a local `a3s serve` wrote it
    return path.read_text().strip() if path.exists() else None


class Client:
    def __init__(self, url: str | None, token: str | None, timeout: float = 30.0) -> None:
        self.url = (url or default_url()).rstrip("/")
        self.token = token or default_token()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def ws_url(self, path: str) -> str:
        return self.url.replace("http://", "ws://").replace("https://", "wss://") + path

    def request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach the platform at {self.url}: {exc}") from exc
        if r.status_code >= 400:
            try:
                err = r.json().get("error", {})
                msg = err.get("message") or r.text
            except ValueError:
                msg = r.text
            raise CliError(f"{r.status_code}: {msg}")
        return r.json() if r.content else None
