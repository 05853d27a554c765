"""Shared helpers for the event/log stream tests: a tiny sizing plugin for one test model,
a fake runtime with real log streams, a real uvicorn server on 127.0.0.1, and readers."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.testclient import WebSocketDenialResponse

from a3s_core import hookimpl
from a3s_core.api.ws_protocol import A3SWebSocketProtocol
from a3s_core.errors import SizingError
from a3s_core.testing import FakeRuntime
from a3s_core.types import Candidate, GpuType, LogLine, ModelProfile, ModelSpec, SizingPlan

REAL_MODEL = "Qwen/Qwen2.5-7B-Instruct"  # sized by the platform's own knowledge base
TEST_MODEL = "a3s-test/events-7b"
BROKEN_MODEL = "a3s-test/broken"  # sizing fails for it, without asking any hub

# What one replica of a healthy deployment emits, in order, from POST to running.
TO_RUNNING = [
    "deployment.accepted",
    "sizing.started",
    "sizing.completed",
    "scheduling.completed",
    "replica.starting",
    "replica.ready",
    "deployment.running",
]


class TinySizing:
    """Profiles and sizes TEST_MODEL only (a 7B decoder on one A100), so these tests do not
    depend on the knowledge base or the hub; every other model falls through."""

    @hookimpl
    def a3s_model_profile(self, model: str, revision: str | None) -> ModelProfile | None:
        if model == BROKEN_MODEL:
            raise SizingError(f"model {model!r}: config.json has no num_hidden_layers")
        if model != TEST_MODEL:
            return None
        return ModelProfile(
            model=model,
            source="config",
            architecture="Qwen2ForCausalLM",
            model_type="qwen2",
            parameters=7_615_616_512,
            num_layers=28,
            hidden_size=3584,
            num_attention_heads=28,
            num_kv_heads=4,
            head_dim=128,
            intermediate_size=18944,
            vocab_size=152064,
            context_length=32768,
        )

    @hookimpl
    def a3s_size(
        self, profile: ModelProfile, spec: ModelSpec, catalog: list[GpuType]
    ) -> SizingPlan | None:
        if profile.model != TEST_MODEL:
            return None
        gib = 2**30
        gpu = "A100-80GB"
        return SizingPlan(
            model=profile.model,
            checkpoint=profile.model,
            quantization="none",
            parameters=profile.parameters,
            bytes_per_parameter=2.0,
            weight_bytes=15 * gib,
            kv_bytes_per_token=57344,
            kv_bytes_per_sequence=57344 * 32768,
            overhead_bytes=2 * gib,
            gpu_memory_utilization=0.9,
            max_model_len=32768,
            max_model_len_source="model",
            candidates=[
                Candidate(
                    gpu=str(gpu),
                    gpu_count=1,
                    tensor_parallel_size=1,
                    dtype="bfloat16",
                    weights_per_gpu_bytes=15 * gib,
                    overhead_per_gpu_bytes=2 * gib,
                    usable_per_gpu_bytes=72 * gib,
                    kv_budget_per_gpu_bytes=55 * gib,
                    max_model_len=32768,
                    concurrent_sequences=31.4,
                )
            ],
            memory_bytes=17 * gib,
        )


class LogRuntime(FakeRuntime):
    """FakeRuntime whose replicas have logs that grow: `say(replica_id, text)` appends a
    line (from any thread); `logs(follow=True)` streams new lines until the replica goes."""

    name = "fake-logs"

    def __init__(self, options: dict[str, object] | None = None) -> None:
        super().__init__(options)
        self.lines: dict[str, list[LogLine]] = {}
        self._guard = threading.Lock()

    def say(self, replica_id: str, text: str) -> None:
        with self._guard:
            self.lines.setdefault(replica_id, []).append(
                LogLine(replica_id=replica_id, ts=datetime.now(UTC), line=text)
            )

    async def create_replica(self, request: Any) -> Any:
        obs = await super().create_replica(request)
        self.say(request.replica_id, f"starting {request.replica_id}")
        return obs

    async def logs(
        self, replica_id: str, tail: int = 100, follow: bool = False
    ) -> AsyncIterator[LogLine]:
        with self._guard:
            have = list(self.lines.get(replica_id, []))
        for line in have[len(have) - tail :] if tail else []:
            yield line
        seen = len(have)
        while follow and replica_id in self.replicas:
            await asyncio.sleep(0.02)
            with self._guard:
                have = list(self.lines.get(replica_id, []))
            for line in have[seen:]:
                yield line
            seen = len(have)


class LogRuntimePlugin:
    @hookimpl
    def a3s_register_runtimes(self, registry: Any) -> None:
        registry.register(LogRuntime)


def deploy(
    client: Any, name: str, replicas: int = 1, namespace: str = "team-ai", model: str = TEST_MODEL
) -> Any:
    r = client.post(
        "/v1/deployments",
        json={
            "models": [{"name": name, "model": model, "replicas": replicas}],
            "namespace": namespace,
        },
    )
    assert r.status_code == 202, r.text
    return r.json()


def wait_status(client: Any, deployment_id: str, *statuses: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        d = client.get(f"/v1/deployments/{deployment_id}").json()
        if d["status"] in statuses:
            return d
        assert time.monotonic() < deadline, f"status stayed {d['status']}: {d['reason']}"
        time.sleep(0.02)


def read_until(ws: Any, type_: str, timeout: float = 20) -> list[dict[str, Any]]:
    """Envelopes from a TestClient socket up to and including the first of `type_`.
    Connect with `heartbeat=` small so a stream that never gets there fails, not hangs."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = ws.receive_json()
        if msg.get("type") == "heartbeat":
            continue
        out.append(msg)
        if msg["type"] == type_:
            return out
    raise AssertionError(f"no {type_} in {[(m['type'], m.get('message')) for m in out]}")


def refused(client: Any, path: str, **kw: Any) -> WebSocketDenialResponse:
    """The HTTP response that refused the WebSocket handshake on `path`."""
    try:
        with client.websocket_connect(path, **kw):
            pass
    except WebSocketDenialResponse as exc:
        return exc
    raise AssertionError(f"{path} was accepted")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A real uvicorn server on 127.0.0.1 in a thread (runs the app's lifespan), with the
    WebSocket protocol `a3s serve` uses unless `ws` names another."""

    def __init__(self, app: FastAPI, ws: Any = A3SWebSocketProtocol) -> None:
        self.port = free_port()
        self.app = app
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", ws=ws)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


def serve(app: FastAPI) -> Iterator[Server]:
    with Server(app) as s:
        yield s
