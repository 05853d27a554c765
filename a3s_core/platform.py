"""The platform container: one per process, built from settings, owned by the app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter

from a3s_core.catalog import GpuCatalog, load_catalog
from a3s_core.contracts import Runtime
from a3s_core.events import EventBus
from a3s_core.events.tracing import make_tracer_provider
from a3s_core.plugins import Plugins
from a3s_core.scaling.fleet import Fleet
from a3s_core.settings import Settings
from a3s_core.store import DeploymentRow, Store
from a3s_core.types import Event, Level

if TYPE_CHECKING:
    from a3s_core.controller.leader import LeaderElection
    from a3s_core.controller.reconcile import Controller
    from a3s_core.gateway.app import Gateway
    from a3s_core.scaling.autoscaler import Autoscaler

log = logging.getLogger("a3s")


class Platform:
    def __init__(
        self,
        settings: Settings,
        plugins: Plugins | None = None,
        span_exporter: SpanExporter | None = None,
    ) -> None:
        self.settings = settings
        self.plugins = plugins or Plugins()
        self.plugins.check()  # duplicate names and broken entry points fail here, at start-up
        self.admin_token, self.admin_token_created = settings.ensure_admin_token()
        self.catalog: GpuCatalog = load_catalog(settings.gpu_catalog)
        self.store = Store.open(settings.db_url)
        poll = settings.events_poll_interval_s
        if poll is None and self.store.is_postgres:
            poll = 1.0  # other API replicas may write events to the same store
        self.bus = EventBus(
            self.store,
            observers=self._observe,
            queue_size=settings.events_queue_size,
            poll_interval_s=poll,
            linger_s=settings.events_linger_s,
        )
        self.tracer_provider: TracerProvider = make_tracer_provider(self.bus, span_exporter)
        self.tracer = self.tracer_provider.get_tracer("a3s")
        runtime_cls = self.plugins.runtimes.get(settings.runtime)
        options: dict[str, Any] = {"data_dir": str(settings.data_dir), **settings.runtime_options}
        if settings.gpu_catalog:  # the inventory must name GPUs as sizing does
            options.setdefault("gpu_catalog", settings.gpu_catalog)
        self.runtime: Runtime = runtime_cls(options)
        self.gateway: Gateway | None = _make_gateway(self)
        # The replicas' load as this process sees it: its gateway, or in `--role control` a
        # gateway that only scrapes the engines (queue depth, GPU use) and serves nothing.
        self.observer: Gateway | None = self.gateway or _make_gateway(self, observer=True)
        # Every gateway process's traffic, from the store (a3s_core/scaling/fleet.py).
        self.fleet = Fleet(self)
        self.controller: Controller | None = None
        self.autoscaler: Autoscaler | None = None
        self.leader: LeaderElection | None = None  # None: controllers off in this process
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def emit_for(
        self,
        dep: DeploymentRow,
        type_: str,
        message: str,
        level: Level = "info",
        data: dict[str, Any] | None = None,
    ) -> None:
        """An event about a deployment, in the deployment's own trace (API and controller
        alike)."""
        self.bus.emit(
            type_,
            message,
            deployment_id=dep.id,
            name=dep.name,
            namespace=dep.namespace,
            level=level,
            data=data,
            trace_id=dep.trace_id,
            span_id=dep.span_id,
        )

    def _observe(self, event: Event) -> None:
        self.plugins.on_event(
            event, on_error=lambda name, exc: log.warning("event observer %s failed: %s", name, exc)
        )

    async def start(self) -> None:
        from a3s_core.controller.leader import LeaderElection
        from a3s_core.controller.reconcile import Controller

        await self.runtime.start()
        if self.store.is_postgres and (note := self.runtime.multi_process_note()):
            log.warning("%s", note)
        if self.gateway:
            await self.gateway.start()
        elif self.observer:
            await self.observer.start(publish=False)
        self.controller = Controller(self)
        if self.settings.controllers:  # run the loops only while this process leads
            self.leader = LeaderElection(
                self.store,
                on_elected=self._start_loops,
                on_deposed=self._deposed,
                duration_s=self.settings.lease_duration_s,
                renew_s=self.settings.lease_renew_interval_s,
            )
            await self.leader.start()
        if self.leader is None or not self.leader.leading:
            await self._runtime_leadership(False)

    async def _runtime_leadership(self, leading: bool) -> None:
        try:
            await self.runtime.on_leadership(leading)
        except Exception:  # the loops still run: observe() is the runtime's to get right
            log.exception("runtime %s: on_leadership(%s) failed", self.runtime.name, leading)

    async def _start_loops(self) -> None:
        """Reconcile and autoscale, fresh for each term: no in-memory state from an earlier
        term (another process led meanwhile) is trusted, and the runtime re-reads the
        cluster first, so the first pass sees every replica the old leader started."""
        from a3s_core.controller.reconcile import Controller

        await self._runtime_leadership(True)
        self.controller = Controller(self)
        self._tasks.append(asyncio.create_task(self.controller.run(), name="a3s-reconcile"))
        try:
            from a3s_core.scaling.autoscaler import Autoscaler
        except ImportError:  # the autoscaler lands separately
            Autoscaler = None  # type: ignore[assignment,misc]
        if Autoscaler is not None:
            self.autoscaler = Autoscaler(self)
            self._tasks.append(asyncio.create_task(self.autoscaler.run(), name="a3s-autoscale"))

    async def _deposed(self) -> None:
        await self._stop_loops()
        if not self._stopping:  # at shutdown the runtime's close() says what to keep
            await self._runtime_leadership(False)

    async def _stop_loops(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        self.autoscaler = None

    async def stop(self) -> None:
        self._stopping = True
        if self.leader is not None:
            await self.leader.stop()  # stops the loops and releases the lease
        await self._stop_loops()
        if self.observer:
            await self.observer.stop()
        await self.runtime.close()
        self.bus.close()
        self.tracer_provider.shutdown()
        self.store.close()


def _make_gateway(platform: Platform, observer: bool = False) -> Gateway | None:
    if platform.settings.role == "control" and not observer:  # the data plane runs elsewhere
        return None
    try:
        from a3s_core.gateway.app import Gateway
    except ImportError:  # until the gateway lands
        return None
    return Gateway(platform.settings, platform.store.engine, platform.plugins)
