"""The simulator's HTTP server: app factory, fault knobs, health paths, and `main`."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from a3s_engine_sim import metrics
from a3s_engine_sim.api import ApiError, OpenAIApi
from a3s_engine_sim.config import SimConfig, parse_args
from a3s_engine_sim.model import LatencyModel
from a3s_engine_sim.state import EngineState

log = logging.getLogger("a3s_engine_sim")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CONFIG: web.AppKey[SimConfig] = web.AppKey("config", SimConfig)
STATE: web.AppKey[EngineState] = web.AppKey("state", EngineState)
INFERENCE = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
# Health paths of every imitated engine, so whichever one the engine plugin declares works.
HEALTH_PATHS = ("/health", "/health_generate", "/ping", "/v1/health", "/")


class Faults:
    """Fail-rate draws, the crash counter and the slow-start clock (wall time, unscaled)."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed + 1)
        self.ready_at = time.monotonic() + cfg.slow_start
        self.answered = 0
        self.last_request = time.monotonic()  # any request; read by the orphan watchdog

    def loading(self) -> bool:
        return time.monotonic() < self.ready_at

    def should_fail(self) -> bool:
        return self.cfg.fail_rate > 0 and self.rng.random() < self.cfg.fail_rate

    def count_answer(self) -> None:
        self.answered += 1
        limit = self.cfg.crash_after
        if limit is not None and self.answered >= limit:
            log.error("simulated crash: exiting with code %d after %d requests (--crash-after)",
                      self.cfg.crash_exit_code, self.answered)
            logging.shutdown()
            # Give the event loop a moment to flush the last response, then die abruptly.
            asyncio.get_running_loop().call_later(0.05, os._exit, self.cfg.crash_exit_code)


FAULTS: web.AppKey[Faults] = web.AppKey("faults", Faults)


def create_app(cfg: SimConfig) -> web.Application:
    model = LatencyModel(cfg)
    state = EngineState(cfg, model)
    api = OpenAIApi(cfg, model, state)
    faults = Faults(cfg)

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        faults.last_request = time.monotonic()
        inference = request.method == "POST" and request.path in INFERENCE
        authorized = request.headers.get("Authorization") == f"Bearer {cfg.api_key}"
        if cfg.api_key and request.path.startswith("/v1") and not authorized:
            return ApiError(401, "Unauthorized", "authentication_error", None,
                                "invalid_api_key").response()
        if inference and faults.loading():
            return ApiError(503, "The model is still loading.", "service_unavailable").response()
        try:
            if inference and faults.should_fail():
                state.failures += 1
                raise ApiError(500, f"simulated engine failure (--fail-rate {cfg.fail_rate})",
                               "internal_server_error")
            return await handler(request)
        except ApiError as exc:
            return exc.response()
        finally:
            if inference:
                faults.count_answer()

    async def health(request: web.Request) -> web.Response:
        if faults.loading():
            return web.json_response({"status": "loading"}, status=503)
        if request.path == "/" and cfg.dialect == "ollama":
            return web.Response(text="Ollama is running")
        return web.Response(status=200)

    async def metrics_text(request: web.Request) -> web.Response:
        return web.Response(text=metrics.render(state), content_type="text/plain",
                            charset="utf-8", headers={"X-Engine-Dialect": cfg.dialect})

    async def version(request: web.Request) -> web.Response:
        return web.json_response({"version": "a3s-sim-0.1.0", "dialect": cfg.dialect})

    async def ollama_tags(request: web.Request) -> web.Response:
        return web.json_response({"models": [{"name": n, "model": n}
                                             for n in cfg.served_model_names]})

    app = web.Application(middlewares=[errors])
    app[CONFIG] = cfg
    app[STATE] = state
    app[FAULTS] = faults
    app.router.add_post("/v1/chat/completions", api.chat)
    app.router.add_post("/v1/completions", api.completions)
    app.router.add_post("/v1/embeddings", api.embeddings)
    app.router.add_get("/v1/models", api.models)
    app.router.add_get("/metrics", metrics_text)
    for path in HEALTH_PATHS:
        app.router.add_get(path, health)
    app.router.add_get("/version", version)
    app.router.add_get("/api/version", version)
    app.router.add_get("/api/tags", ollama_tags)
    app.on_startup.append(lambda app: _start_stats_logger(app))
    return app


async def _start_stats_logger(app: web.Application) -> None:
    """A periodic line like vLLM's: what runs, what waits, KV usage (only when busy)."""

    async def loop() -> None:
        state = app[STATE]
        last_prompt = last_gen = 0
        while True:
            await asyncio.sleep(10.0)
            prompt, gen = state.prompt_tokens_total, state.generation_tokens_total
            if prompt == last_prompt and gen == last_gen and not state.running:
                continue
            log.info("Avg prompt throughput: %.1f tokens/s, Avg generation throughput: %.1f "
                     "tokens/s, Running: %d reqs, Waiting: %d reqs, GPU KV cache usage: %.1f%%",
                     (prompt - last_prompt) / 10, (gen - last_gen) / 10, len(state.running),
                     len(state.waiting), 100 * state.kv_usage())
            last_prompt, last_gen = prompt, gen

    task = asyncio.get_running_loop().create_task(loop())
    app.on_cleanup.append(lambda _: _cancel(task))


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()


async def serve(cfg: SimConfig) -> None:
    app = create_app(cfg)
    # handler_cancellation: a client that goes away aborts its request and frees its slot,
    # as vLLM aborts requests on disconnect.
    runner = web.AppRunner(app, access_log=log if cfg.access_log else None,
                           handle_signals=False, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port)
    await site.start()
    log.info("simulating %s (%s dialect, %s) on %d× %s (TP=%d): serving %s on http://%s:%d",
             cfg.model, cfg.dialect, cfg.kind, cfg.tensor_parallel_size, cfg.gpu,
             cfg.tensor_parallel_size, ", ".join(cfg.served_model_names), cfg.host, cfg.port)
    if cfg.slow_start:
        log.info("loading: /health answers 503 for %.2f s (--slow-start)", cfg.slow_start)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watchdog = None
    if cfg.orphan_timeout:
        watchdog = loop.create_task(_orphan_watchdog(app, cfg.orphan_timeout, stop))
    await stop.wait()
    if watchdog is not None:
        watchdog.cancel()
    log.info("shutting down")
    await runner.cleanup()


async def _orphan_watchdog(app: web.Application, timeout: float, stop: asyncio.Event) -> None:
    """A platform that supervises this replica probes it every second or so; when nobody
    has for `timeout` seconds (the platform is gone, a test ended without deleting it), the
    simulated replica ends itself instead of lingering forever."""
    while True:
        await asyncio.sleep(min(5.0, timeout / 4))
        idle = time.monotonic() - app[FAULTS].last_request
        if idle > timeout:
            log.warning("no request for %.0f s: nobody supervises this replica any more; "
                        "exiting (--orphan-timeout %g)", idle, timeout)
            stop.set()
            return


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(asctime)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(cfg))
    except OSError as exc:  # port taken, bad host: say so and exit non-zero
        log.error("cannot serve on %s:%d: %s", cfg.host, cfg.port, exc)
        sys.exit(2)
