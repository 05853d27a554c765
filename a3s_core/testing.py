"""Test kit, installed as a pytest plugin (`-p a3s`, automatic via the pytest11 entry point).

Fixtures:
- `a3s_default_plugins`: a fresh plugin facade with only the built-in defaults.
- `a3s_plugins`: defaults plus every installed `a3s` entry point.
- `register_plugin`: `register_plugin(plugins, obj, name)` for one test, removed after.
- `a3s_settings`: settings on a temporary data dir with a known admin token.
- `make_app`: `make_app(**settings_overrides)` → a started TestClient with admin headers.
- `pg_url`: a PostgreSQL URL on a fresh schema (skips when the server is absent).
- `FakeRuntime`: an in-memory runtime (named as a fake) whose replicas become ready at once.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from a3s_core import hookimpl
from a3s_core.contracts import Runtime
from a3s_core.plugins import Plugins, build_plugin_manager
from a3s_core.settings import Settings
from a3s_core.types import GpuDevice, LogLine, Node, ReplicaObservation, ReplicaRequest

ADMIN_TOKEN = "a3s-admin-test-token"
PG_BASE = os.environ.get("A3S_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class FakeRuntime(Runtime):
    """A fake runtime for control-plane tests: nodes from options, replicas 'ready' as soon
    as they are observed, no processes. Fault injection: `fail(replica_id)`."""

    name = "fake"
    replicas: dict[str, ReplicaObservation]

    def __init__(self, options: dict[str, object] | None = None) -> None:
        super().__init__(options)
        self.replicas = {}
        self.requests: dict[str, ReplicaRequest] = {}
        spec = self.options.get("nodes") or [("gpu-a100-0", "A100-80GB", 81920, 8)]
        self.nodes = [
            Node(
                name=n,
                gpu_product=g,
                gpu_memory_mib=m,
                gpu_count=c,
                gpus=[GpuDevice(index=i) for i in range(c)],
                cpu_cores=32,
                memory_bytes=256 * 2**30,
            )
            for n, g, m, c in spec  # type: ignore[attr-defined]
        ]

    async def list_nodes(self) -> list[Node]:
        return [n.model_copy(deep=True) for n in self.nodes]

    async def create_replica(self, request: ReplicaRequest) -> ReplicaObservation:
        obs = ReplicaObservation(
            replica_id=request.replica_id,
            deployment_id=request.deployment_id,
            state="starting",
            node=request.placement.node,
            gpu_indices=request.placement.gpu_indices,
            since=datetime.now(UTC),
        )
        self.replicas[request.replica_id] = obs
        self.requests[request.replica_id] = request
        return obs

    async def delete_replica(self, replica_id: str) -> None:
        self.replicas.pop(replica_id, None)

    async def observe(self) -> list[ReplicaObservation]:
        for rid, obs in self.replicas.items():
            if obs.state == "starting" and not self.options.get("stay_starting"):
                self.replicas[rid] = obs.model_copy(
                    update={"state": "ready", "url": f"http://127.0.0.1:9/{rid}"}
                )
        return list(self.replicas.values())

    def fail(self, replica_id: str, message: str = "engine exited with code 1") -> None:
        self.replicas[replica_id] = self.replicas[replica_id].model_copy(
            update={"state": "failed", "message": message}
        )

    async def logs(
        self, replica_id: str, tail: int = 100, follow: bool = False
    ) -> AsyncIterator[LogLine]:
        yield LogLine(replica_id=replica_id, ts=datetime.now(UTC), line="fake engine log")


class FakeRuntimePlugin:
    @hookimpl
    def a3s_register_runtimes(self, registry: Any) -> None:
        registry.register(FakeRuntime)


@pytest.fixture
def a3s_default_plugins() -> Plugins:
    return Plugins(build_plugin_manager(load_entry_points=False))


@pytest.fixture
def a3s_plugins() -> Plugins:
    p = Plugins()
    p.register(FakeRuntimePlugin(), name="a3s-testing-fake-runtime")
    return p


@pytest.fixture
def register_plugin() -> Iterator[Callable[[Plugins, object, str], None]]:
    registered: list[tuple[Plugins, str]] = []

    def register(plugins: Plugins, plugin: object, name: str) -> None:
        plugins.register(plugin, name=name)
        registered.append((plugins, name))

    yield register
    for plugins, name in registered:
        plugins.unregister(name)


@pytest.fixture
def a3s_settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "a3s",
        admin_token=ADMIN_TOKEN,
        runtime="fake",
        reconcile_interval_s=0.05,
        port=18080,
    )


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards. Connections are tagged
    with the schema's name as application_name, so that any a test leaves open (a
    background thread still finishing) are ended first instead of deadlocking the drop."""
    psycopg = pytest.importorskip("psycopg")
    dsn = PG_BASE.replace("postgresql+psycopg://", "postgresql://")
    schema = "t_" + secrets.token_hex(6)
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable at {dsn}: {exc}")
    conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}&application_name={schema}"
    finally:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()", (schema,),
        )
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()


@pytest.fixture
def make_app(a3s_settings: Settings, a3s_plugins: Plugins) -> Iterator[Callable[..., Any]]:
    """`make_app(**overrides)` → a started `fastapi.testclient.TestClient` with the admin
    token set; closed (platform stopped) after the test."""
    from fastapi.testclient import TestClient

    from a3s_core.api.app import create_app

    clients: list[TestClient] = []

    def make(plugins: Plugins | None = None, **overrides: Any) -> TestClient:
        settings = a3s_settings.model_copy(update=overrides)
        client = TestClient(create_app(settings, plugins or a3s_plugins))
        client.headers["Authorization"] = f"Bearer {settings.admin_token or ADMIN_TOKEN}"
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in reversed(clients):
        c.__exit__(None, None, None)
