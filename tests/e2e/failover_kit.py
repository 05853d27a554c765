"""Leader failover with real `a3s serve` processes on one PostgreSQL database sharing one
sim cluster (one `state_dir`), traffic through a process that never leads: the pieces
shared by tests/e2e/test_e2e_failover.py and benchmarks/bench_failover.py."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from a3s_core.net import free_port
from a3s_core.store import Store

TOKEN = "a3s-admin-failover-test"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
BODY = {"models": [{"name": "ha", "model": "Qwen/Qwen2.5-7B-Instruct", "replicas": 2,
                    "autoscaling": {"enabled": False}}]}
CHAT = {"model": "ha", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def eventually(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout:.0f}s: {what}")


@dataclass
class Serve:
    name: str
    port: int
    log: Path
    popen: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Cluster:
    """`a3s serve` processes started by `start`; `settings` are extra A3S_* variables."""

    tmp: Path
    pg_url: str
    settings: dict[str, str] = field(default_factory=dict)
    tag: str = field(default_factory=lambda: secrets.token_hex(6))
    serves: list[Serve] = field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        return self.tmp / "shared-sim"

    def start(self, name: str, controllers: bool = True, wait: bool = True) -> Serve:
        """Start `a3s serve`; with `wait`, return once it answers `/healthz`."""
        port = free_port("127.0.0.1")
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "A3S_HA_TEST_TAG": self.tag,  # inherited by the engines: finds ours in /proc
            "A3S_DATABASE_URL": self.pg_url,
            "A3S_DATA_DIR": str(self.tmp / name),  # each its own, as in the issue
            "A3S_PORT": str(port),
            "A3S_ADMIN_TOKEN": TOKEN,
            "A3S_RUNTIME": "sim",
            "A3S_RUNTIME_OPTIONS": json.dumps(
                {"state_dir": str(self.state_dir), "time_scale": 0.02, "stop_timeout_s": 3}
            ),
            "A3S_CONTROLLERS": "true" if controllers else "false",
            "A3S_WORKERS": "1",  # each `a3s serve` is one process: killing it kills the leader
            **self.settings,
        }
        log = self.tmp / f"{name}.log"
        a3s = Path(sys.executable).parent / "a3s"
        with log.open("ab") as out:
            popen = subprocess.Popen([str(a3s), "serve"], env=env, stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        serve = Serve(name, port, log, popen)
        self.serves.append(serve)
        if wait:
            self.wait_up(serve)
        return serve

    def wait_up(self, serve: Serve) -> None:
        def up() -> bool:
            assert serve.popen.poll() is None, (
                f"{serve.name} exited: {serve.log.read_text()[-2000:]}")
            try:
                return httpx.get(f"{serve.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        eventually(up, f"{serve.name} serves")

    def engines(self) -> dict[int, str]:
        """Our simulator processes now running (tagged through the environment): pid →
        command line."""
        out: dict[int, str] = {}
        mark = f"A3S_HA_TEST_TAG={self.tag}".encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                environ = (proc / "environ").read_bytes().split(b"\0")
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if (mark in environ and "a3s_engine_sim" in cmdline
                    and not cmdline.startswith("/bin/sh") and state not in ("Z", "X")):
                out[int(proc.name)] = cmdline
        return out

    def close(self) -> None:
        for s in self.serves:
            if s.popen.poll() is None:
                s.popen.terminate()
        for s in self.serves:
            try:
                s.popen.wait(15)
            except subprocess.TimeoutExpired:
                s.popen.kill()
                s.popen.wait(5)
        for pid in self.engines():  # this cluster's own engines only, by pid
            os.kill(pid, signal.SIGKILL)


class Traffic:
    """Chat requests through one gateway, back to back on two threads, all counted."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.ok = 0
        self.failed: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(2)]

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                try:
                    r = client.post(f"{self.url}/d/default/ha/v1/chat/completions", json=CHAT,
                                    headers=headers)
                except httpx.HTTPError as exc:
                    self.failed.append(f"{time.time():.2f} {type(exc).__name__}: {exc}")
                    continue
                if r.status_code == 200:
                    with self.lock:
                        self.ok += 1
                else:
                    self.failed.append(f"{time.time():.2f} {r.status_code}: {r.text[:200]}")

    def __enter__(self) -> Traffic:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(40)


class Watch:
    """The deployment as the gateway process's API shows it, every 50 ms."""

    def __init__(self, url: str, dep_id: str) -> None:
        self.url, self.dep_id = url, dep_id
        self.statuses: set[str] = set()
        self.replica_sets: set[frozenset[str]] = set()
        self.not_ready: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10, headers=ADMIN) as client:
            while not self.stop.is_set():
                d = client.get(f"{self.url}/v1/deployments/{self.dep_id}").json()
                self.statuses.add(d["status"])
                self.replica_sets.add(frozenset(r["id"] for r in d["replicas"]))
                self.not_ready += [f"{r['id']}: {r['state']} {r['message']}"
                                   for r in d["replicas"] if r["state"] != "ready"]
                time.sleep(0.05)

    def __enter__(self) -> Watch:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop.set()
        self.thread.join(20)


def controllers(url: str) -> dict[str, Any]:
    r = httpx.get(f"{url}/v1/system", headers=ADMIN, timeout=5)
    system: dict[str, Any] = r.json()["controllers"]
    return system


def pid_of(identity: str) -> int:
    """The pid in an elector identity `<host>-<pid>-<random>`."""
    return int(identity.split("-")[-2])


@dataclass
class Report:
    """What happened across the leader changes, as the gateway process and the store saw."""

    deployment_id: str
    replicas: set[str]
    takeover_s: list[float]
    ok: int
    failed: list[str]
    statuses: set[str]
    replica_sets: set[frozenset[str]]
    not_ready: list[str]
    event_types: list[str]
    failures: int
    engines: dict[int, str]
    records: dict[str, dict[str, Any]]


def run_failovers(cluster: Cluster, sig: signal.Signals, rounds: int, settle_s: float) -> Report:
    """Start two controller processes and a gateway-only one, deploy 2 replicas through
    the gateway, then `rounds` times: signal the leader, time the take-over, let the new
    leader work for `settle_s`, start a replacement process. Traffic flows all along."""
    a = cluster.start("a")  # the first to start leads
    b = cluster.start("b", wait=False)
    gw = cluster.start("gateway", controllers=False)
    cluster.wait_up(b)
    assert pid_of(controllers(gw.url)["leader"]) == a.popen.pid
    dep = httpx.post(f"{gw.url}/v1/deployments", json=BODY, headers=ADMIN,
                     timeout=30).json()["deployments"][0]

    def view() -> dict[str, Any]:
        d: dict[str, Any] = httpx.get(f"{gw.url}/v1/deployments/{dep['id']}", headers=ADMIN,
                                      timeout=10).json()
        return d

    first = eventually(lambda: (d := view())["status"] == "running"
                       and d["readyReplicas"] == 2 and d, "the deployment runs")
    replicas = {r["id"] for r in first["replicas"]}
    key = {"Authorization": f"Bearer {dep['apiKey']}"}
    eventually(lambda: httpx.post(f"{gw.url}/d/default/ha/v1/chat/completions", json=CHAT,
                                  headers=key, timeout=30).status_code == 200,
               "the gateway process routes to the deployment")
    term = controllers(gw.url)["term"]
    leader, follower = a, b
    takeovers: list[float] = []
    with Traffic(gw.url, dep["apiKey"]) as traffic, Watch(gw.url, dep["id"]) as watch:
        eventually(lambda: traffic.ok >= 20, "requests flow through the gateway")
        for round_ in range(1, rounds + 1):
            t0 = time.monotonic()
            leader.popen.send_signal(sig)
            new = eventually(lambda term=term: (c := controllers(gw.url))["leader"]
                             and c["term"] > term and c, f"round {round_}: a new leader")
            takeovers.append(time.monotonic() - t0)
            assert pid_of(new["leader"]) == follower.popen.pid
            term = new["term"]
            leader.popen.wait(30)
            settled = time.monotonic() + settle_s
            spare = cluster.start(f"{leader.name}{round_}", wait=False)  # the next follower
            time.sleep(max(0.0, settled - time.monotonic()))
            cluster.wait_up(spare)
            leader, follower = follower, spare
        before = traffic.ok
        with contextlib.suppress(AssertionError):  # the caller judges what it got
            eventually(lambda: traffic.ok > before + 10, "requests still flow at the end", 20)

    store = Store.open(cluster.pg_url)
    try:
        types = [e.type for e in store.events_since(0, deployment_id=dep["id"])]
        failures = store.get_deployment(dep["id"]).failures
    finally:
        store.close()
    records = {p.stem: json.loads(p.read_text()) for p in cluster.state_dir.glob("*.json")}
    return Report(dep["id"], replicas, takeovers, traffic.ok, list(traffic.failed),
                  set(watch.statuses), set(watch.replica_sets), list(watch.not_ready), types,
                  failures, cluster.engines(), records)


def delete(cluster: Cluster, deployment_id: str) -> None:
    """Delete through the gateway process; the leader stops the engines."""
    gw = next(s for s in cluster.serves if s.name == "gateway")
    r = httpx.delete(f"{gw.url}/v1/deployments/{deployment_id}", headers=ADMIN, timeout=10)
    assert r.status_code == 202, r.text
    eventually(lambda: httpx.get(f"{gw.url}/v1/deployments/{deployment_id}", headers=ADMIN,
                                 timeout=10).json()["status"] == "deleted", "deleted")
    eventually(lambda: not cluster.engines(), "no engine left")
