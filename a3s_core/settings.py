"""Platform settings: `A3S_*` environment variables, CLI flags, or code (tests)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ADMIN_TOKEN_PREFIX = "a3s-admin-"  # generated tokens; the gateway names the kind by it


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "a3s"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="A3S_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite:///<data_dir>/a3s.db"
    )
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = Field(
        None, description="how clients reach this gateway; default http://<host>:<port>"
    )
    domain: str | None = Field(
        None, description="wildcard domain for host-based endpoints (<name>.<domain>)"
    )
    endpoint_scheme: str = "https"
    admin_token: str | None = None
    runtime: str = "sim"
    runtime_options: dict[str, Any] = Field(default_factory=dict)
    scheduler: str = "binpack"
    balancer: str = "least-queue"
    max_replicas: int = Field(16, ge=1, description="ceiling for replicas in one request")
    max_body_bytes: int = 1024 * 1024
    gpu_catalog: str | None = Field(None, description="path to a GPU catalog TOML")
    engine_images: dict[str, str] = Field(default_factory=dict, description="engine → image")
    reconcile_interval_s: float = 1.0
    autoscale_interval_s: float = 5.0
    scrape_interval_s: float = 0.5
    traffic_publish_interval_s: float = Field(
        2.0,
        ge=0,
        description="how often each gateway process writes its requests, latency histogram "
        "and in-flight counts to the store for the control plane (0: never; docs/gateway.md)",
    )
    replica_start_timeout_s: float = 900.0
    max_restarts: int = 3
    replica_lost_grace_s: float = Field(
        15.0,
        gt=0,
        description="a replica the runtime does not report is lost (replaced) only after "
        "this long since it was created and since this process began leading",
    )
    failed_retry_s: float | None = Field(
        60.0,
        gt=0,
        description="a deployment failed for a cause that may clear (engines crashing "
        "max_restarts times in a row, runtime or hub unreachable) is tried again after "
        "this long, doubling each time it fails again, at most 1 h; None: never",
    )
    controllers: bool = Field(
        True,
        description="campaign for the controllers' lease and run the reconcile/autoscale "
        "loops while holding it; false: this process never runs them",
    )
    lease_duration_s: float = Field(
        15.0, gt=0, description="how long the controllers' lease lasts without a renewal"
    )
    lease_renew_interval_s: float = Field(
        5.0,
        gt=0,
        description="how often the leader renews its lease and the others try to take it; "
        "at most half of lease_duration_s",
    )
    role: Literal["all", "gateway", "control"] = Field(
        "all",
        description="all: API, controllers, events and gateway; gateway: the data plane "
        "only; control: API, controllers and events, no data plane",
    )
    workers: int | None = Field(
        None, ge=1, le=256, description="processes sharing the listening socket "
        "(a3s serve); default: one per CPU; 1 is a single process"
    )
    # Set by `a3s serve --workers N` for each worker process, not by hand.
    worker_index: int = Field(0, ge=0, description="this worker's index (internal)")
    load_share: str | None = Field(None, description="the workers' shared load file (internal)")
    hf_timeout_s: float = 10.0
    events_heartbeat_s: float = Field(15.0, gt=0, description="idle WebSocket heartbeat")
    events_queue_size: int = Field(
        1000, ge=10, description="events a slow WebSocket client may lag before it is cut off"
    )
    events_linger_s: float = Field(
        0.008, ge=0, le=1, description="while events come faster than this apart, deliver "
        "them to subscribers at most this often, gathered (a quiet stream is not delayed)"
    )
    events_poll_interval_s: float | None = Field(
        None, gt=0, description="how often an idle bus looks for other platform "
        "processes' events itself: default 1 s on PostgreSQL (a fallback: notifications "
        "wake it at once), off on SQLite"
    )

    @model_validator(mode="after")
    def _lease_timing(self) -> Settings:
        if self.lease_renew_interval_s * 2 > self.lease_duration_s:
            raise ValueError(
                f"lease_renew_interval_s ({self.lease_renew_interval_s}) must be at most half "
                f"of lease_duration_s ({self.lease_duration_s}): a leader that misses a "
                "renewal must still have time to stop its loops before the lease expires"
            )
        return self

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'a3s.db'}"

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    def endpoint_for(self, namespace: str, name: str) -> str:
        """The OpenAI base_url of a deployment, usable as it is."""
        if self.domain:
            return f"{self.endpoint_scheme}://{name}.{self.domain}/v1"
        return f"{self.base_url}/d/{namespace}/{name}/v1"

    def ensure_admin_token(self) -> tuple[str, bool]:
        """The admin token: from settings, else the one stored in the data dir, else a new
        one written there with 0600 permissions. Returns (token, newly_created)."""
        if self.admin_token:
            return self.admin_token, False
        path = self.data_dir / "admin-token"
        if path.exists():
            return path.read_text().strip(), False
        self.data_dir.mkdir(parents=True, exist_ok=True)
        token = ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token, True
