"""`a3s serve --workers N --role R`: several processes on one port, and roles.

One Python process serves on one core. With N workers the supervisor (this module, in the
`a3s serve` process) holds the port and starts N worker processes, each listening on it
with `SO_REUSEPORT`: the kernel spreads new connections evenly over the workers by their
addresses. (One listening socket shared by all was tried first: the worker that woke
first took all 8 connections a test opened at once, so keep-alive clients opened
together, or the few connections an ingress keeps open, can all land on one core.) A worker
listens only once its app has started; when it dies its socket leaves the group, and new
connections go to the others. Each worker is a whole platform process of its role:

- `all` (the default): API, event stream, gateway, and a candidate for the controllers'
  lease. The socket is shared, so any worker may get any request; the API and the event
  stream read the store, as several platform processes on one store already do, and the
  existing leader election runs the controllers in exactly one worker (another takes over
  if it dies). On SQLite the event bus polls the store (every 0.25 s unless
  `A3S_EVENTS_POLL_INTERVAL_S` says otherwise), so a worker's WebSocket clients see the
  events the leading worker emits.
- `gateway`: the data plane only (`/d/...` and the OpenAI `/v1/...` paths, `/healthz`):
  no API, no controllers, no runtime, no event bus. Reads the store; never migrates it.
- `control`: API, controllers and events, no data plane.

The workers of one supervisor share a `LoadShare` (share.py): scraped figures, in-flight
counts and request counts, and a generation that makes every worker re-read the store
after any worker's change. Gateways on other machines (`--role gateway` pods) share
nothing but the store: each scrapes for itself, as separate platform processes did.

A worker that dies is started again (its shared counts zeroed first); one that keeps
dying within 30 s of starting (five times running) stops the supervisor instead of looping.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import logging.config
import multiprocessing
import os
import secrets
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from a3s_core.gateway.asgi import ASGIApp, Receive, Scope, Send
from a3s_core.gateway.share import LoadShare
from a3s_core.settings import Settings

if TYPE_CHECKING:
    from a3s_core.plugins import Plugins

# Builds the plugins in each worker (tests add their own); None: the installed ones.
PluginsFactory = Callable[[], "Plugins"] | None

log = logging.getLogger("a3s.workers")
SQLITE_POLL_S = 0.25  # how soon one worker's events reach another's WebSocket clients
GRACE_S = 30.0  # a worker's in-flight answers may finish before it is killed
CRASH_LOOP_S = 30.0  # a worker that dies this soon after starting, 5 times running
CRASH_LOOP_TRIES = 5
BAD_CONFIG_EXIT = 78  # EX_CONFIG: the worker cannot be built; starting it again won't help


def default_workers() -> int:
    """One worker per CPU this process may run on (cgroup CPU limits aside)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def build_app(settings: Settings, plugins: Plugins | None = None) -> ASGIApp:
    """The ASGI app of one process of `settings.role`."""
    if settings.role == "gateway":
        return GatewayRoleApp(settings, plugins)
    from a3s_core.api.app import create_app

    return create_app(settings, plugins)  # type: ignore[return-value]  # an ASGI app


class GatewayRoleApp:
    """The data plane alone: the gateway on the store, plus `/healthz`."""

    def __init__(self, settings: Settings, plugins: Plugins | None = None) -> None:
        from a3s_core.gateway.app import Gateway
        from a3s_core.plugins import Plugins
        from a3s_core.store.db import make_engine

        self.settings = settings
        plugins = plugins or Plugins()
        plugins.check()
        # No migration: the control plane owns the schema. Until it has made the tables,
        # reads fail and the gateway answers 503 store_unavailable (fail static).
        self.db = make_engine(settings.db_url)
        self.gateway = Gateway(settings, self.db, plugins)
        self._inner = self.gateway.asgi(self._system)
        # `a3s serve`'s protocol answers the data-plane paths through this directly.
        self.data_plane = self.gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        await self._inner(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.gateway.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.gateway.stop()
                self.db.dispose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _system(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/healthz":
            d = self.gateway.directory
            body: dict[str, Any] = {
                "status": "ok", "role": "gateway",
                "store": {"ok": d.store_ok, "staleForS": d.stale_for_s},
                **worker_info(self.settings),
            }
            status = 200
        else:
            status = 404
            body = {"error": {"message": f"{scope['path']} is not served by a gateway-only "
                              "process (--role gateway); the API is on the control plane",
                              "type": "invalid_request_error", "param": None,
                              "code": "unknown_endpoint"}}
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def worker_info(settings: Settings) -> dict[str, Any]:
    """What `/healthz` says about the process that answered (one of N workers)."""
    if (settings.workers or 1) <= 1:
        return {}
    return {"worker": {"index": settings.worker_index, "of": settings.workers,
                       "pid": os.getpid()}}


def serve_logging() -> dict[str, Any]:
    """What `a3s serve` logs, in each worker (as the CLI's serve_logging for one process):
    uvicorn's logging with credentials taken out of every line, warnings from every `a3s`
    logger, leadership changes and this module's notes at info."""
    from a3s_core.log_config import uvicorn_log_config

    config = uvicorn_log_config()
    config["loggers"]["a3s"] = {"handlers": ["default"], "level": "WARNING", "propagate": False}
    config["loggers"]["a3s.leader"] = {"level": "INFO"}
    config["loggers"]["a3s.workers"] = {"level": "INFO"}
    return config


# -- the supervisor ---------------------------------------------------------------------


def serve(settings: Settings, access_log: bool, say: Any = print) -> int:
    """`a3s serve` for more than one worker or for `--role gateway` (a single process of
    role all or control keeps the CLI's own path). Returns the exit status."""
    n = settings.workers or default_workers()
    if settings.role != "gateway":
        token, created = settings.ensure_admin_token()
        if created:
            say(f"admin token (shown once, saved in {settings.data_dir / 'admin-token'}):"
                f"\n  {token}")
    runtime = "" if settings.role == "gateway" else f"runtime {settings.runtime}, "
    say(f"A3S {settings.role} on {settings.base_url} — {runtime}{n} worker(s), "
        f"store {settings.db_url.split('@')[-1]}")
    if n == 1:
        from a3s_core.api import server

        server.run(build_app(settings), host=settings.host, port=settings.port,
                   log_level="info", access_log=access_log, log_config=serve_logging())
        return 0
    return Supervisor(settings, n, access_log).run()


def bind(host: str, port: int) -> socket.socket:
    """A socket bound with SO_REUSEPORT and not listening yet. The supervisor's holds the
    port (and fails early if it is taken); each worker binds its own, and uvicorn starts
    listening on it once the app has started, so no connection waits on a worker that is
    still starting."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def hold_port(host: str, port: int) -> socket.socket:
    """The supervisor's socket, open to its workers. SO_REUSEPORT lets any process of this
    user bind the port as well, so a second `a3s serve` on it would not fail but share the
    connections with the first (half the requests to each platform): a bind without it
    first fails while anything else holds the port."""
    if port:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
            probe.bind((host, port))
    return bind(host, port)


def _share_path(settings: Settings) -> Path:
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    return base / f"a3s-load-{os.getpid()}-{secrets.token_hex(4)}"


def worker_settings(settings: Settings, share: Path) -> Settings:
    """The settings every worker runs with (its index is set when it starts)."""
    update: dict[str, Any] = {"load_share": str(share)}
    if settings.events_poll_interval_s is None and not settings.db_url.startswith("postgres"):
        update["events_poll_interval_s"] = SQLITE_POLL_S
    return settings.model_copy(update=update)


def _die_with(parent: int) -> None:
    """SIGTERM this worker when the supervisor dies, even by SIGKILL (Linux
    PR_SET_PDEATHSIG): a worker left behind would go on serving, and leading, alone."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the supervisor's SIGTERM only
        return
    if os.getppid() != parent:  # it died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def run_worker(
    settings: Settings, index: int, access_log: bool,
    plugins: PluginsFactory = None, parent: int | None = None,
) -> None:
    """One worker process: its app on the shared port until SIGTERM/SIGINT."""
    if parent is not None:
        _die_with(parent)
    from a3s_core.api import server

    settings = settings.model_copy(update={"worker_index": index})
    log_config = serve_logging()
    logging.config.dictConfig(log_config)  # before the app is built: its errors are logged
    from a3s_core.errors import A3SError

    try:
        app = build_app(settings, plugins() if plugins is not None else None)
    except A3SError as exc:  # a setting or a plugin is wrong: say so once, plainly
        log.error("error: %s", exc.message)
        raise SystemExit(BAD_CONFIG_EXIT) from None
    # Bound here, listened on by uvicorn after the app's startup (see bind()).
    server.run(app, sockets=[bind(settings.host, settings.port)], log_level="info",
               log_config=log_config, access_log=access_log,
               timeout_graceful_shutdown=int(GRACE_S))


class Supervisor:
    """Starts N workers on one port, restarts a worker that dies, stops them all on
    SIGTERM/SIGINT (each finishes what it has in flight, up to `GRACE_S`)."""

    def __init__(
        self, settings: Settings, workers: int, access_log: bool = False,
        plugins: PluginsFactory = None,
    ) -> None:
        self.settings = settings
        self.plugins = plugins
        self.n = workers
        self.access_log = access_log
        self.ctx = multiprocessing.get_context("spawn")
        self.procs: dict[int, BaseProcess] = {}
        self.started_at: dict[int, float] = {}
        self.quick_deaths: dict[int, int] = {}
        self.stopping = False
        self.share: LoadShare | None = None
        self.sock: socket.socket | None = None

    def prepare(self) -> None:
        """Once, before any worker: the schema (so workers do not race to migrate), the
        socket, the shared load file."""
        if self.settings.role != "gateway":
            from a3s_core.store import Store

            Store.open(self.settings.db_url).close()
        self.sock = hold_port(self.settings.host, self.settings.port)
        port = self.sock.getsockname()[1]  # the one bound, when port 0 asked for any
        path = Path(self.settings.load_share or _share_path(self.settings))
        self.share = LoadShare.create(path, self.n)
        self.settings = worker_settings(
            self.settings.model_copy(update={"workers": self.n, "port": port}), path
        )

    def start_worker(self, index: int) -> None:
        proc = self.ctx.Process(
            target=run_worker, name=f"a3s-worker-{index}",
            args=(self.settings, index, self.access_log, self.plugins, os.getpid()),
        )
        proc.start()
        self.procs[index] = proc
        self.started_at[index] = time.monotonic()

    def run(self) -> int:
        logging.config.dictConfig(serve_logging())
        try:
            self.prepare()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            log.error("error: cannot listen on %s:%s: address already in use (another "
                      "`a3s serve`? choose another --port)", self.settings.host,
                      self.settings.port)
            return 1
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        try:
            for i in range(self.n):
                self.start_worker(i)
            return self._watch()
        finally:
            self._stop_all()
            if self.share is not None:
                with contextlib.suppress(OSError):
                    self.share.path.unlink()
                self.share.close()
            if self.sock is not None:
                self.sock.close()

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _watch(self) -> int:
        while not self.stopping:
            sentinels = {p.sentinel: i for i, p in self.procs.items()}
            for ready in wait(list(sentinels), timeout=0.5):
                if self.stopping:
                    break
                index = sentinels[ready]  # type: ignore[index]
                proc = self.procs[index]
                proc.join()
                if proc.exitcode == BAD_CONFIG_EXIT:
                    return 1  # the worker said why; every other worker would say the same
                quick = time.monotonic() - self.started_at[index] < CRASH_LOOP_S
                self.quick_deaths[index] = self.quick_deaths.get(index, 0) + 1 if quick else 0
                if self.quick_deaths[index] >= CRASH_LOOP_TRIES:
                    log.error("worker %d exited %d times right after starting; stopping",
                              index, CRASH_LOOP_TRIES)
                    return 1
                log.warning("worker %d (pid %s) exited with %s; starting it again",
                            index, proc.pid, proc.exitcode)
                assert self.share is not None
                self.share.clear_worker(index)  # what it had in flight is gone with it
                self.start_worker(index)
        return 0

    def _stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S + 5
        for proc in self.procs.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
