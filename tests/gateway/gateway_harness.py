"""The gateway test kit: a gateway on a temp SQLite store behind a real uvicorn server on
127.0.0.1, with fake replicas, a test engine speaking vLLM's metrics dialect and the standard
balancers. The fixtures are re-exported by this directory's conftest."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import a3s_balancer_standard
import pytest
import uvicorn
from gateway_fake_replica import FakeReplica
from openai import AsyncOpenAI
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session, SQLModel

from a3s_core import hookimpl
from a3s_core.api.server import A3SHttpProtocol
from a3s_core.contracts import Balancer, Engine, LaunchContext
from a3s_core.gateway import Gateway
from a3s_core.gateway.asgi import ASGIApp
from a3s_core.keys import display_prefix, generate_key, hash_key
from a3s_core.plugins import Plugins, build_plugin_manager
from a3s_core.registry import BalancerRegistry, EngineRegistry
from a3s_core.settings import Settings
from a3s_core.store.db import make_engine
from a3s_core.store.tables import ApiKeyRow, DeploymentRow, ReplicaRow
from a3s_core.types import LoadFigures, ReplicaLoad


class FakeVllm(Engine):
    name = "fake-vllm"

    def command(self, ctx: LaunchContext) -> list[str]:
        return ["fake-vllm", "--port", str(ctx.port)]

    def parse_metrics(self, text: str) -> LoadFigures:
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                values[sample.name] = values.get(sample.name, 0.0) + sample.value
        return LoadFigures(
            waiting=values.get("vllm:num_requests_waiting"),
            running=values.get("vllm:num_requests_running"),
            kv_cache_usage=values.get("vllm:kv_cache_usage_perc"),
        )


class FakeEmbedder(Engine):
    name = "fake-embed"
    has_metrics = False
    serves_embeddings = True
    openai_paths: ClassVar[frozenset[str]] = frozenset({"/v1/embeddings", "/v1/models"})

    def command(self, ctx: LaunchContext) -> list[str]:
        return ["fake-embed"]


class RoundRobin(Balancer):
    """The baseline least-queue is compared with."""

    name = "round-robin"

    def __init__(self) -> None:
        self._n = 0

    def pick(self, replicas: Sequence[ReplicaLoad]) -> ReplicaLoad:
        self._n += 1
        return sorted(replicas, key=lambda r: r.replica_id)[self._n % len(replicas)]


class TestEngines:
    @staticmethod
    @hookimpl
    def a3s_register_engines(registry: EngineRegistry) -> None:
        registry.register(FakeVllm)
        registry.register(FakeEmbedder)

    @staticmethod
    @hookimpl
    def a3s_register_balancers(registry: BalancerRegistry) -> None:
        registry.register(RoundRobin)


@dataclass
class Deployed:
    id: str
    name: str
    namespace: str
    key: str
    replicas: list[FakeReplica]
    replica_ids: list[str]


@dataclass
class Harness:
    gateway: Gateway
    db: Any
    base_url: str
    settings: Settings
    replicas: list[FakeReplica] = field(default_factory=list)

    def endpoint(self, dep: Deployed) -> str:
        return f"{self.base_url}/d/{dep.namespace}/{dep.name}/v1"

    def client(self, dep: Deployed, key: str | None = None, **kw: Any) -> AsyncOpenAI:
        return AsyncOpenAI(base_url=self.endpoint(dep), api_key=key or dep.key,
                           max_retries=0, **kw)

    async def replica(self, **kw: Any) -> FakeReplica:
        r = await FakeReplica(**kw).start()
        self.replicas.append(r)
        return r

    def deploy(
        self,
        name: str,
        replicas: Sequence[FakeReplica | str],
        namespace: str = "team-a",
        engine: str = "fake-vllm",
        balancer: str | None = None,
        gpus: Sequence[tuple[str | None, int]] | None = None,
        status: str = "running",
    ) -> Deployed:
        """Rows for a deployment with ready replicas (a FakeReplica or a bare URL) and a key."""
        dep_id = "dep-" + uuid.uuid4().hex[:8]
        key = generate_key()
        gpus = list(gpus or [("A100-80GB", 1)] * len(replicas))
        ids = []
        with Session(self.db) as s:
            s.add(DeploymentRow(  # type: ignore[call-arg]  # sqlmodel Field(None, …) defaults
                id=dep_id, name=name, namespace=namespace, model="org/" + name, engine=engine,
                spec={"name": name, "model": "org/" + name, "engine": engine,
                      "balancer": balancer}, status=status,
            ))
            s.flush()
            for i, (r, (gpu, tp)) in enumerate(zip(replicas, gpus, strict=True)):
                rid = f"{dep_id}-r{i}"
                ids.append(rid)
                s.add(ReplicaRow(id=rid, deployment_id=dep_id, state="ready", gpu=gpu,
                                 tensor_parallel_size=tp, max_model_len=4096,
                                 url=r if isinstance(r, str) else r.url))
            s.add(ApiKeyRow(id="key-" + dep_id, deployment_id=dep_id, key_hash=hash_key(key),
                            prefix=display_prefix(key)))
            s.commit()
        self.gateway.invalidate()
        return Deployed(dep_id, name, namespace, key,
                        [r for r in replicas if isinstance(r, FakeReplica)], ids)

    def revoke(self, dep: Deployed) -> None:
        with Session(self.db) as s:
            row = s.get(ApiKeyRow, "key-" + dep.id)
            assert row is not None
            row.revoked_at = datetime.now(UTC)
            s.add(row)
            s.commit()
        self.gateway.invalidate()

    def set_replica_state(self, replica_id: str, state: str) -> None:
        with Session(self.db) as s:
            row = s.get(ReplicaRow, replica_id)
            assert row is not None
            row.state = state
            s.add(row)
            s.commit()
        self.gateway.invalidate()


def make_plugins() -> Plugins:
    plugins = Plugins(build_plugin_manager(load_entry_points=False))
    plugins.register(a3s_balancer_standard, name="balancer-standard")
    plugins.register(TestEngines, name="test-engines")
    return plugins


async def serve(app: ASGIApp) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    # A bounded graceful shutdown: a failed test may leave a stream open. The HTTP protocol
    # `a3s serve` uses (a3s_core/api/server.py).
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="off", timeout_graceful_shutdown=2,
                                           http=A3SHttpProtocol))
    task = asyncio.get_running_loop().create_task(server.serve())
    deadline = asyncio.get_running_loop().time() + 30
    while not server.started:  # bounded: a server that cannot start fails the test, loudly
        if task.done():
            task.result()
        if asyncio.get_running_loop().time() > deadline:
            task.cancel()
            raise RuntimeError("uvicorn did not start within 30 s")
        await asyncio.sleep(0.01)
    return server, task


class AsgiOnly:
    """The gateway's ASGI app without the `data_plane` attribute that `a3s serve`'s protocol
    answers data-plane paths through (a3s_core/api/fast_lane.py): every request takes
    uvicorn's ASGI way, as under another ASGI server."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


@pytest.fixture
def gateway_lane(request: pytest.FixtureRequest) -> str:
    """"fast" (the default, as `a3s serve` runs) or "asgi"; a test module parametrizes it
    (indirect=True) to run its tests both ways."""
    return str(getattr(request, "param", "fast"))


@pytest.fixture
async def harness(tmp_path: Path, gateway_lane: str) -> AsyncIterator[Harness]:
    settings = Settings(data_dir=tmp_path, scrape_interval_s=0.1, domain=None)
    db = make_engine(f"sqlite:///{tmp_path / 'a3s.db'}")
    SQLModel.metadata.create_all(db)
    gateway = Gateway(settings, db, make_plugins())
    await gateway.start()
    app = gateway.asgi()
    server, task = await serve(AsgiOnly(app) if gateway_lane == "asgi" else app)
    port = server.servers[0].sockets[0].getsockname()[1]
    h = Harness(gateway, db, f"http://127.0.0.1:{port}", settings)
    try:
        yield h
    finally:
        server.should_exit = True
        await task
        await gateway.stop()
        for r in h.replicas:
            await r.stop()
        db.dispose()


