"""The real huggingface_hub client against a fake Hub on 127.0.0.1 (HF_ENDPOINT): proves
the calls and arguments the source makes are the ones the client really accepts."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import a3s_tiny_checkpoints as tiny
import pytest

from a3s_core.errors import ModelNotFound, ModelUnavailable
from a3s_core.sizing.hub import hub_profile

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHubHandler(BaseHTTPRequestHandler):
    files: dict[str, dict[str, bytes]] = {}  # repo → filename → content
    gated: set[str] = set()
    seen: list[tuple[str, str, str | None, str | None]] = []

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _route(self) -> tuple[int, dict[str, str], bytes]:
        # /{org}/{name}/resolve/{revision}/{filename}
        parts = self.path.split("?")[0].strip("/").split("/")
        FakeHubHandler.seen.append((self.command, self.path, self.headers.get("authorization"),
                                    self.headers.get("range")))
        if len(parts) < 5 or parts[2] != "resolve":
            return 404, {"X-Error-Code": "RepoNotFound"}, b""
        repo, filename = "/".join(parts[:2]), "/".join(parts[4:])
        if repo in self.gated:
            return 403, {"X-Error-Code": "GatedRepo",
                         "X-Error-Message": "Access to this model is restricted"}, b""
        if repo not in self.files:
            return 404, {"X-Error-Code": "RepoNotFound",
                         "X-Error-Message": "Repository not found"}, b""
        body = self.files[repo].get(filename)
        if body is None:
            return 404, {"X-Error-Code": "EntryNotFound",
                         "X-Error-Message": "Entry not found"}, b""
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{abs(hash(body))}"'}
        rng = self.headers.get("range")
        if rng and self.command == "GET":
            start, _, end = rng.removeprefix("bytes=").partition("-")
            chunk = body[int(start): int(end) + 1 if end else None]
            return 206, headers, chunk
        return 200, headers, body

    def _respond(self, with_body: bool) -> None:
        status, headers, body = self._route()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self._respond(False)

    def do_GET(self) -> None:
        self._respond(True)


@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeHubHandler]]:
    written = tiny.write_safetensors_model(tmp_path / "model")
    FakeHubHandler.files = {"acme/tiny": {
        "config.json": (tmp_path / "model" / "config.json").read_bytes(),
        "model.safetensors": (tmp_path / "model" / "model.safetensors").read_bytes(),
    }, "acme/no-weights": {"config.json": json.dumps(tiny.TINY_LLAMA).encode()}}
    FakeHubHandler.gated = {"acme/gated"}
    FakeHubHandler.seen = []
    FakeHubHandler.parameters = written.parameters  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHubHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("A3S_HF_TIMEOUT_S", "5")
    try:
        yield FakeHubHandler
    finally:
        server.shutdown()
        server.server_close()


def test_sizing_hub_http_reads_headers_only(fake_hub):
    p = hub_profile("acme/tiny")
    assert p is not None and p.source == "hub"
    assert p.parameters == fake_hub.parameters
    assert p.parameters_by_dtype == {"F16": fake_hub.parameters}
    assert p.weight_bytes == 2 * fake_hub.parameters
    # the weights file was only ever asked for a byte range (its header), never whole
    weights = [(m, rng) for m, path, _, rng in fake_hub.seen if path.endswith(".safetensors")]
    gets = [rng for m, rng in weights if m == "GET"]
    assert gets and all(rng and rng.startswith("bytes=0-") for rng in gets)


def test_sizing_hub_http_sends_the_token(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token")
    hub_profile("acme/tiny")
    # every hub call carries it; the reachability probe of the endpoint's root needs none
    calls = [(path, auth) for _, path, auth, _ in fake_hub.seen]
    assert calls[0] == ("/", None)
    assert all(auth == "Bearer hf_fake_token" for _, auth in calls[1:])


def test_sizing_hub_http_without_safetensors_uses_formula(fake_hub):
    p = hub_profile("acme/no-weights")
    assert p is not None and p.source == "config"
    assert p.parameters == fake_hub.parameters


def test_sizing_hub_http_not_found_and_gated(fake_hub):
    with pytest.raises(ModelNotFound, match="'acme/missing' was not found"):
        hub_profile("acme/missing")
    with pytest.raises(ModelUnavailable, match="gated"):
        hub_profile("acme/gated")
