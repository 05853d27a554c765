"""The data-plane gateway: authenticate, find the deployment, pick a replica, forward.

    gateway = Gateway(settings, db_engine, plugins)
    await gateway.start()                 # pooled HTTP client + metrics scraper
    app = gateway.asgi(control_app)       # /v1/... and /d/{namespace}/{name}/v1/... here
    gateway.invalidate()                  # after deployments, replicas or keys change
    gateway.stats(deployment_id)          # per-replica load, latency percentiles (dict)
    gateway.signals(deployment_id)        # ScalingSignals for the autoscaler
    await gateway.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy.engine import Engine as DbEngine

from a3s_core.catalog import load_catalog
from a3s_core.contracts import Balancer, Engine
from a3s_core.errors import UnknownPlugin
from a3s_core.gateway import errors
from a3s_core.gateway.asgi import (
    MODELS,
    ASGIApp,
    AsgiReply,
    Receive,
    Reply,
    Route,
    Scope,
    Send,
    route_of,
)
from a3s_core.gateway.directory import DeploymentInfo, Directory, Snapshot
from a3s_core.gateway.errors import GatewayError
from a3s_core.gateway.latency import percentile
from a3s_core.gateway.load import LoadBook, ReplicaStats
from a3s_core.gateway.proxy import FORWARDED_REQUEST_HEADERS, Forwarder
from a3s_core.gateway.publish import TrafficPublisher, publish_group
from a3s_core.gateway.request import ClientGone, api_key, bounded, read_body, read_headers
from a3s_core.gateway.scraper import Scraper
from a3s_core.gateway.share import LoadShare
from a3s_core.gateway.upstream import UpstreamPool
from a3s_core.plugins import Plugins
from a3s_core.settings import Settings
from a3s_core.types import ScalingSignals

EMBEDDINGS = "/v1/embeddings"
JSON = [(b"content-type", b"application/json")]
log = logging.getLogger(__name__)
STALE_AFTER_INTERVALS = 3


class Gateway:
    def __init__(
        self,
        settings: Settings,
        db_engine: DbEngine,
        plugins: Plugins,
        directory_ttl_s: float = 0.5,
    ) -> None:
        self.settings = settings
        self.plugins = plugins
        self.db_engine = db_engine
        self.directory = Directory(db_engine, ttl_s=min(directory_ttl_s, 1.0))
        self.book = LoadBook(
            load_catalog(settings.gpu_catalog),
            stale_after_s=STALE_AFTER_INTERVALS * settings.scrape_interval_s,
        )
        self._session: aiohttp.ClientSession | None = None  # the scraper's
        self._pool: UpstreamPool | None = None  # the hot path's (see upstream.py)
        self._forwarder: Forwarder | None = None
        self._scraper: Scraper | None = None
        self._scrape_task: asyncio.Task[None] | None = None
        self.publisher: TrafficPublisher | None = None  # this process's traffic, to the store
        self._publish_task: asyncio.Task[None] | None = None
        self._balancers: dict[str, tuple[str, Balancer]] = {}
        self._engines: dict[str, Engine | None] = {}
        # The paths each engine serves (None: an engine not installed here, so not known
        # to refuse any), asked once per engine rather than per request.
        self._engine_paths: dict[str, frozenset[str] | None] = {}
        # One of several workers (`a3s serve --workers N`): load figures and store changes
        # are shared with the others through this file (share.py).
        self.share: LoadShare | None = None
        self._generation = 0
        if settings.load_share:
            self.share = LoadShare.attach(Path(settings.load_share), settings.worker_index)
            self.book.share = self.share
            self._generation = self.share.generation

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, scrape: bool = True, publish: bool = True) -> None:
        """Open the pooled clients (keep-alive to every replica) and start scraping, and
        (`publish`) writing this process's traffic to the store for the control plane."""
        if self._session is not None:
            return
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60, ttl_dns_cache=300),
            # No overall deadline: a long generation is not a failure. Connecting is.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            auto_decompress=False,
        )
        self._pool = UpstreamPool()
        self._forwarder = Forwarder(self._pool, self.book)
        self._scraper = Scraper(
            self._session, self.directory, self.book, self.plugins,
            self.settings.scrape_interval_s, engine_for=self.engine, after_round=self._prune,
        )
        if scrape:
            self._scrape_task = asyncio.get_running_loop().create_task(self._scraper.run())
        if publish and self.settings.traffic_publish_interval_s > 0:
            self.publisher = TrafficPublisher(
                self.book, self.db_engine, self.settings.traffic_publish_interval_s,
                group=publish_group(self.settings),
            )
            self._publish_task = asyncio.get_running_loop().create_task(self.publisher.run())

    async def stop(self) -> None:
        if self._publish_task is not None and self.publisher is not None:
            self._publish_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publish_task
            self._publish_task = None
            await self.publisher.publish_once()  # the last figures: in flight now, or none
        if self._scrape_task is not None:
            self._scrape_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scrape_task
            self._scrape_task = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
            self._forwarder = None

    def _prune(self, live_deployments: set[str]) -> None:
        for dep_id in [d for d in self._balancers if d not in live_deployments]:
            del self._balancers[dep_id]
        if self._forwarder is not None:
            self._forwarder.forget_except(live_deployments)

    def invalidate(self) -> None:
        """Deployments, replicas or keys changed: the next request reads the store, here
        and (through the shared generation) in every other worker."""
        self.directory.invalidate()
        if self.share is not None:
            self.share.bump()
            self._generation = self.share.generation

    def in_flight(self, replica_id: str) -> int:
        """Requests this gateway (all its workers) is still serving through the replica
        (drain waits on it)."""
        st = self.book.replicas.get(replica_id)
        if st is None and self.share is not None:  # never routed or scraped here
            slot = self.share.peek("r:" + replica_id)
            return slot.total() if slot is not None else 0
        return st.scrape_view()[2] if st else 0

    async def scrape_once(self) -> None:
        """One scrape round now (tests, and callers that want figures at once)."""
        if self._scraper is None:
            raise RuntimeError("Gateway.start() has not been called")
        await self._scraper.scrape_once()

    def asgi(self, app: ASGIApp | None = None) -> ASGIApp:
        """An ASGI app: the data-plane paths here, anything else to `app` (else 404)."""
        return GatewayApp(self, app)

    # -- plugins --------------------------------------------------------------------------

    def engine(self, name: str) -> Engine | None:
        """The engine plugin instance, or None when it is not installed in this process."""
        if name not in self._engines:
            try:
                self._engines[name] = self.plugins.engines.get(name)()
            except UnknownPlugin:
                self._engines[name] = None
        return self._engines[name]

    def balancer(self, dep: DeploymentInfo) -> Balancer:
        name = dep.balancer or self.settings.balancer
        held = self._balancers.get(dep.id)
        if held is not None and held[0] == name:
            return held[1]
        try:
            instance = self.plugins.balancers.get(name)()
        except UnknownPlugin as exc:
            raise GatewayError(503, exc.message, type_="server_error",
                               code="balancer_unavailable") from None
        self._balancers[dep.id] = (name, instance)
        return instance

    # -- the request path -----------------------------------------------------------------

    async def serve(self, scope: Scope, receive: Receive, send: Send, route: Route) -> None:
        """Answer one data-plane request (raw ASGI; `route` is `asgi.route_of(scope)`)."""
        await self.answer(scope["method"], read_headers(scope["headers"]), route, receive,
                          AsgiReply(send, scope))

    async def answer(self, method: str, headers: dict[str, str], route: Route,
                     receive: Receive, reply: Reply, body: bytes | None = None) -> None:
        """Answer one data-plane request, whatever happens, through `reply` (the fast
        lane's contract: a3s_core/api/fast_lane.py). `headers`: `request.read_headers`;
        `body`: the whole body when the server already has it (else read via `receive`)."""
        try:
            await self._serve(method, headers, route, receive, reply, body)
        except ClientGone:
            return  # left before the body was in: nobody to answer
        except GatewayError as exc:
            if reply.started:
                raise
            await exc.send(reply)
        except Exception as exc:  # a bug here must still answer in the client's terms
            log.exception("gateway failed on %s %s", method, route.asked)
            if reply.started:
                raise  # the server closes the connection: the answer is cut short
            await GatewayError(
                500, f"the gateway failed: {type(exc).__name__}: {exc}", type_="server_error",
                code="internal_error",
            ).send(reply)

    async def _serve(self, method: str, headers: dict[str, str], route: Route,
                     receive: Receive, reply: Reply, given: bytes | None) -> None:
        if self._forwarder is None:
            raise errors.unavailable("the gateway is not started")
        if not route.path:
            raise GatewayError(404, f"{route.asked} is not an endpoint of the OpenAI API "
                               "this gateway serves", code="unknown_endpoint")
        if method != route.method:
            raise GatewayError(405, f"{route.asked} takes {route.method}, not {method}",
                               code="method_not_allowed", headers={"Allow": route.method})
        key = api_key(headers)
        share = self.share
        if share is not None and share.generation != self._generation:
            # Another worker changed the store (a revoked key, a deleted deployment): read
            # it before answering, as that worker does.
            self._generation = share.generation
            self.directory.invalidate()
        # strict: while the store is unreachable, StoreUnavailable (503) rather than rows
        # older than a change made in this process (directory.py).
        snap = self.directory.in_hand() or await self.directory.snapshot(strict=True)
        found = snap.key(key)
        if found.deployment_id is None:
            try:
                snap = await self.directory.fresh_on_miss(snap)
            except errors.StoreUnavailable:
                if found.revoked:  # revocation is final: no store needed to refuse it
                    raise errors.invalid_key(key, True) from None
                raise
            found = snap.key(key)
            if found.deployment_id is None:
                raise errors.invalid_key(key, found.revoked)
        own = snap.deployments[found.deployment_id]

        limit = self.settings.max_body_bytes
        if method != "POST":
            body = b""
        elif given is not None:
            body = bounded(given, headers, limit)
        else:
            body = await read_body(receive, headers, limit)
        if route.name == own.name and route.namespace == own.namespace:
            target = own  # /d/{namespace}/{name}/v1/... of the key's own deployment
        else:
            target, snap = await self._target(headers, method, snap, own, route, body)

        if route.path == MODELS:
            return await self._models(reply, snap, target, route.model)
        try:
            paths = self._engine_paths[target.engine]
        except KeyError:
            engine = self.engine(target.engine)
            paths = self._engine_paths[target.engine] = (
                _paths(engine) if engine is not None else None)
        if paths is not None and route.path not in paths:
            raise GatewayError(
                404, f"deployment {target.namespace}/{target.name} (engine {target.engine}) "
                f"does not serve {route.path}", code="unsupported_endpoint",
            )
        replicas = self.book.sync(snap.ready_replicas(target.id))
        if not replicas:
            raise errors.unavailable(
                f"deployment {target.namespace}/{target.name} has no ready replica "
                f"(status: {target.status}); try again when it is running", retry_after_s=5,
            )
        fwd = {k: v for k in FORWARDED_REQUEST_HEADERS if (v := headers.get(k)) is not None}
        await self._forwarder.forward(
            target, replicas, self.balancer(target), route.path, method, body, fwd, reply,
            receive,
        )

    async def _target(
        self, headers: dict[str, str], method: str, snap: Snapshot, own: DeploymentInfo,
        route: Route, body: bytes,
    ) -> tuple[DeploymentInfo, Snapshot]:
        """The deployment this request is for, or 404 / 403. The key is already valid."""
        namespace, name = route.namespace, route.name
        if namespace is not None and name is not None:  # /d/{namespace}/{name}/v1/...
            if (own.namespace, own.name) == (namespace, name):
                return own, snap
            if snap.by_path(namespace, name) is None:
                snap = await self.directory.fresh_on_miss(snap)
                if snap.by_path(namespace, name) is None:
                    raise errors.unknown_model(f"{namespace}/{name}")
            raise errors.foreign_key(f"{namespace}/{name}")
        host_name = self._host_name(headers.get("host"))
        if host_name is not None:  # <name>.<domain>/v1/...: the key picks the namespace
            return await self._by_name(snap, own, host_name)
        # Bare /v1/...: the `model` field names the deployment.
        if method != "POST":
            return own, snap
        try:
            model = json.loads(body).get("model") if body else None
        except (ValueError, AttributeError):
            raise errors.bad_request("the request body is not a JSON object") from None
        if not isinstance(model, str) or not model:
            raise errors.bad_request(
                "you must provide a model parameter (the deployment's name)", param="model"
            )
        return await self._by_name(snap, own, model)

    async def _by_name(
        self, snap: Snapshot, own: DeploymentInfo, name: str
    ) -> tuple[DeploymentInfo, Snapshot]:
        # A name may exist in several namespaces; a key belongs to exactly one deployment,
        # so the key settles which one is meant, and names elsewhere are simply foreign.
        if own.name == name:
            return own, snap
        if not snap.named(name):
            snap = await self.directory.fresh_on_miss(snap)
            if not snap.named(name):
                raise errors.unknown_model(name)
        raise errors.foreign_key(name)

    def _host_name(self, host_header: str | None) -> str | None:
        domain = self.settings.domain
        if not domain:
            return None
        host = (host_header or "").rsplit(":", 1)[0].lower().rstrip(".")
        suffix = "." + domain.lower().strip(".")
        if not host.endswith(suffix):
            return None
        label = host[: -len(suffix)]
        return label if label and "." not in label else None

    async def _models(
        self, reply: Reply, snap: Snapshot, dep: DeploymentInfo, model: str | None
    ) -> None:
        replicas = snap.ready_replicas(dep.id)
        card: dict[str, Any] = {
            "id": dep.name, "object": "model", "created": dep.created,
            "owned_by": dep.namespace, "root": dep.model,
        }
        if replicas and replicas[0].max_model_len:
            card["max_model_len"] = replicas[0].max_model_len
        if model is not None:
            if model != dep.name:
                raise errors.unknown_model(model)
            return await reply.whole(200, JSON, json.dumps(card).encode())
        await reply.whole(200, JSON, json.dumps({"object": "list", "data": [card]}).encode())

    # -- figures for the API and the autoscaler ---------------------------------------------

    def stats(self, deployment_id: str) -> dict[str, Any]:
        """Live load and latency of a deployment and each of its ready replicas (those
        the gateway has seen: routed to or scraped). Safe to call from any thread."""
        now = time.monotonic()
        stale = self.book.stale_after_s
        replicas = []
        for st in self._replica_stats(deployment_id):
            load = st.as_load(now, stale, live=False)
            replicas.append({
                "id": st.info.id, "url": st.info.url, "gpu": st.info.gpu,
                "tensorParallelSize": st.info.tensor_parallel_size, "weight": st.weight,
                "inFlight": load.gateway_in_flight,
                "waiting": load.waiting if load.metrics_fresh else None,
                "running": load.running if load.metrics_fresh else None,
                "kvCacheUsage": load.kv_cache_usage, "gpuUtilization": load.gpu_utilization,
                "metricsFresh": load.metrics_fresh,
                "metricsAgeS": None if (at := st.scrape_view()[1]) is None
                else round(now - at, 3),
                "ejected": st.ejected(now),
                "ejectedForS": round(st.ejected_until - now, 3) if st.ejected(now)
                and st.ejected_until is not None else None,
                "failures": st.failures, "lastError": st.last_error or None,
                "requests": st.requests,
                "ttft": st.ttft.summary(now), "total": st.total.summary(now),
            })
        dep = self.book.deployments.get(deployment_id)
        return {
            "windowS": dep.total.window_s if dep else None,
            "ttft": dep.ttft.summary(now) if dep else None,
            "total": dep.total.summary(now) if dep else None,
            "firstByte": dep.first_byte.summary(now) if dep else None,
            "requests": dep.requests(now) if dep else 0,
            "failedRequests": dep.failed(now) if dep else 0,
            "inFlight": sum(r["inFlight"] for r in replicas),
            "replicas": replicas,
        }

    def signals(self, deployment_id: str, since_s: float | None = None) -> ScalingSignals:
        """The autoscaler's view now (it keeps `queue_zero_for_s` itself). Any thread.
        `since_s`: seconds since the last scaling change; the `recent_*` figures count only
        requests answered after it (all of the window when None)."""
        now = time.monotonic()
        stale = self.book.stale_after_s
        stats = self._replica_stats(deployment_id)
        loads = [st.as_load(now, stale, live=False) for st in stats]
        snap = self.directory.current
        ready = len(snap.ready_replicas(deployment_id)) if snap is not None else 0
        fresh = [r for r in loads if r.metrics_fresh]
        utils = [r.gpu_utilization for r in fresh if r.gpu_utilization is not None]
        dep = self.book.deployments.get(deployment_id)
        p99 = dep.first_byte.summary(now)["p99_s"] if dep else None
        since = None if since_s is None else now - since_s
        recent = sorted(dep.first_byte.values(now, since)) if dep else []
        recent_p99 = percentile(recent, 99)
        # The gateway's own in-flight count, or what the engines report running (requests
        # other platform processes proxied), whichever is larger.
        # (every worker's, with several: `in_flight` of a load is this worker's only)
        in_flight = max(sum(r.gateway_in_flight for r in loads), sum(r.running for r in fresh))
        return ScalingSignals(
            replicas=ready,
            gpu_utilization=sum(utils) / len(utils) if utils else None,
            queue_depth=sum(r.waiting for r in fresh) if fresh else None,
            p99_latency_s=float(p99) if p99 is not None else None,
            requests_in_window=dep.requests(now) if dep else 0,
            in_flight=int(in_flight),
            recent_p99_latency_s=recent_p99,
            recent_requests=len(recent),
        )

    def _replica_stats(self, deployment_id: str) -> list[ReplicaStats]:
        # Read-only: the API calls stats() from a worker thread; only the loop mutates.
        snap = self.directory.current
        if snap is None:
            return []
        known = self.book.replicas
        return [st for r in snap.ready_replicas(deployment_id) if (st := known.get(r.id))]


class GatewayApp:
    """The gateway in front of another ASGI app (the control API, or nothing)."""

    def __init__(self, gateway: Gateway, app: ASGIApp | None = None) -> None:
        self.gateway = gateway
        self.app = app
        # `a3s serve`'s protocol answers the data-plane paths through this directly.
        self.data_plane = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = route_of(scope)
            if route is not None:
                return await self.gateway.serve(scope, receive, send, route)
            if self.app is None:
                return await GatewayError(404, f"{scope['path']} is not found",
                                          code="unknown_endpoint").send(AsgiReply(send, scope))
        if self.app is not None:
            await self.app(scope, receive, send)
        elif scope["type"] == "lifespan":  # nothing to start: say so and wait for the end
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})


def _paths(engine: Engine) -> frozenset[str]:
    paths = engine.openai_paths | {"/v1/models"}
    return paths | {EMBEDDINGS} if engine.serves_embeddings else paths
