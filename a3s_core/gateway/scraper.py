"""Scrape every ready replica's /metrics on a short interval; probe ejected replicas back.

Figures older than `stale_after_s` are ignored by the balancers (`metrics_fresh` False),
so a replica whose /metrics stops answering falls back to the gateway's own counts
instead of looking idle forever. A refused connection counts as a failure towards
ejection (a killed replica is noticed without a request paying for it); a slow answer
only makes the figures stale.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiohttp

from a3s_core.contracts import Engine
from a3s_core.errors import UnknownPlugin
from a3s_core.gateway.directory import Directory
from a3s_core.gateway.load import LoadBook, ReplicaStats
from a3s_core.plugins import Plugins

log = logging.getLogger(__name__)


class Scraper:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        directory: Directory,
        book: LoadBook,
        plugins: Plugins,
        interval_s: float,
        engine_for: Callable[[str], Engine | None] | None = None,
        after_round: Callable[[set[str]], None] | None = None,
    ) -> None:
        self.session = session
        self.directory = directory
        self.book = book
        self.plugins = plugins
        self.interval_s = interval_s
        self._timeout = aiohttp.ClientTimeout(total=max(0.5, 2 * interval_s))
        self._engines: dict[str, Engine | None] = {}
        self.engine = engine_for or self._engine
        self.after_round = after_round

    def _engine(self, name: str) -> Engine | None:
        """The engine plugin instance, or None when it is not installed here."""
        if name not in self._engines:
            try:
                self._engines[name] = self.plugins.engines.get(name)()
            except UnknownPlugin:
                log.warning("engine %r is not installed: its replicas are not scraped", name)
                self._engines[name] = None
        return self._engines[name]

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.scrape_once()
            except Exception:  # the loop must outlive any one bad round
                log.exception("metrics scrape round failed")
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))

    async def scrape_once(self) -> None:
        snap = await self.directory.snapshot()
        jobs = []
        live: set[str] = set()
        for dep_id, replicas in snap.replicas.items():
            dep = snap.deployments[dep_id]
            engine = self.engine(dep.engine)
            for st in self.book.sync(replicas):
                live.add(st.info.id)
                jobs.append(self._one(st, engine))
        self.book.forget_except(live, set(snap.deployments))
        self.book.publish(set(snap.deployments))
        if self.after_round is not None:
            self.after_round(set(snap.deployments))
        if jobs:
            await asyncio.gather(*jobs)

    async def _one(self, st: ReplicaStats, engine: Engine | None) -> None:
        now = time.monotonic()
        if st.ejected(now):
            return  # sitting out its back-off
        probing = self.book.probe_due(st, now)
        metrics = engine is not None and engine.has_metrics
        # With several workers one of them scrapes each replica and shares the figures.
        scrape = metrics and self.book.owns(st)
        if not scrape and not probing:
            return
        path = "/metrics" if metrics else (engine.health_path if engine else "/health")
        try:
            async with self.session.get(st.info.url + path, timeout=self._timeout) as resp:
                text = await resp.text()
                ok = resp.status < 500
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            if not isinstance(exc, aiohttp.ServerTimeoutError):
                self.book.failed(st, f"{type(exc).__name__} on {path} of {st.info.url}")
            return
        except TimeoutError:
            return
        if not ok:
            return
        if probing:
            self.book.readmit(st)
        if metrics and engine is not None and resp.status == 200:
            try:
                figures = engine.parse_metrics(text)
            except Exception:
                log.exception("engine %r could not parse /metrics of %s", engine.name,
                              st.info.url)
                return
            self.book.scraped(st, figures)
