"""Issue 18's acceptance test: two `a3s serve` processes on one PostgreSQL database share
one simulated cluster (one sim `state_dir`); the leader is killed twice in a row with the
deployment running (SIGKILL, then the same with SIGTERM). Requests flow all along through
a third process that never leads (`A3S_CONTROLLERS=false`), the surviving gateway.

Wanted: no replica replaced, no engine orphaned, no request failed, the deployment
`running` throughout, and each leadership change logged on `a3s.leader`.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from a3s_core.net import free_port
from a3s_core.store import Store

pytestmark = pytest.mark.postgres

TOKEN = "a3s-admin-failover-test"
LEASE_S = 2.0  # takes over within ~2.5 s of a kill
GRACE_S = 2.0  # a replica not reported this long after a take-over would be replaced
BODY = {"models": [{"name": "ha", "model": "Qwen/Qwen2.5-7B-Instruct", "replicas": 2,
                    "autoscaling": {"enabled": False}}]}


def eventually(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with_value = check()
        if with_value:
            return with_value
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
    tmp: Path
    pg_url: str
    tag: str = field(default_factory=lambda: secrets.token_hex(6))
    serves: list[Serve] = field(default_factory=list)

    @property
    def state_dir(self) -> Path:
        return self.tmp / "shared-sim"

    def start(self, name: str, controllers: bool = True) -> Serve:
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
            "A3S_LEASE_DURATION_S": str(LEASE_S),
            "A3S_LEASE_RENEW_INTERVAL_S": str(LEASE_S / 4),
            "A3S_REPLICA_LOST_GRACE_S": str(GRACE_S),
            "A3S_RECONCILE_INTERVAL_S": "0.2",
        }
        log = self.tmp / f"{name}.log"
        a3s = Path(sys.executable).parent / "a3s"
        with log.open("ab") as out:
            popen = subprocess.Popen([str(a3s), "serve"], env=env, stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        serve = Serve(name, port, log, popen)
        self.serves.append(serve)

        def up() -> bool:
            assert popen.poll() is None, f"{name} exited: {log.read_text()[-2000:]}"
            try:
                return httpx.get(f"{serve.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        eventually(up, f"{name} serves")
        return serve

    def engines(self) -> dict[int, str]:
        """Our simulator processes now running: pid → command line."""
        out: dict[int, str] = {}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                environ = (proc / "environ").read_bytes()
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if (f"A3S_HA_TEST_TAG={self.tag}".encode() in environ.split(b"\0")
                    and "a3s_engine_sim" in cmdline and "/bin/sh" not in cmdline
                    and state not in ("Z", "X")):
                out[int(proc.name)] = cmdline
        return out


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path, pg_url)
    yield c
    for s in c.serves:
        if s.popen.poll() is None:
            s.popen.terminate()
    for s in c.serves:
        try:
            s.popen.wait(15)
        except subprocess.TimeoutExpired:
            s.popen.kill()
            s.popen.wait(5)
    for pid in c.engines():  # the test's own engines only (tagged), by pid
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
        body = {"model": "ha", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                try:
                    r = client.post(f"{self.url}/d/default/ha/v1/chat/completions", json=body,
                                    headers={"Authorization": f"Bearer {self.key}"})
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
    """The deployment as the surviving gateway's API shows it, every 50 ms."""

    def __init__(self, url: str, dep_id: str) -> None:
        self.url, self.dep_id = url, dep_id
        self.statuses: set[str] = set()
        self.replica_sets: set[frozenset[str]] = set()
        self.not_ready: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(timeout=10, headers=headers) as client:
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
    r = httpx.get(f"{url}/v1/system", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    system: dict[str, Any] = r.json()["controllers"]
    return system


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_killing_the_leader_twice_keeps_every_replica_and_every_request(
    cluster: Cluster, sig: signal.Signals
) -> None:
    a = cluster.start("a")  # the first to start leads
    b = cluster.start("b")
    gw = cluster.start("gateway", controllers=False)
    assert controllers(gw.url)["leader"].split("-")[-2] == str(a.popen.pid)

    admin = {"Authorization": f"Bearer {TOKEN}"}
    dep = httpx.post(f"{gw.url}/v1/deployments", json=BODY, headers=admin,
                     timeout=30).json()["deployments"][0]

    def view() -> dict[str, Any]:
        d: dict[str, Any] = httpx.get(f"{gw.url}/v1/deployments/{dep['id']}", headers=admin,
                                      timeout=10).json()
        return d

    first = eventually(lambda: (d := view())["status"] == "running"
                       and d["readyReplicas"] == 2 and d, "the deployment runs")
    replicas = {r["id"] for r in first["replicas"]}
    assert len(replicas) == 2 and len(cluster.engines()) == 2
    term = controllers(gw.url)["term"]
    leader, follower = a, b
    chat = {"model": "ha", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    eventually(lambda: httpx.post(
        f"{gw.url}/d/default/ha/v1/chat/completions", json=chat, timeout=30,
        headers={"Authorization": f"Bearer {dep['apiKey']}"}).status_code == 200,
        "the gateway process has seen the deployment run")

    with Traffic(gw.url, dep["apiKey"]) as traffic, Watch(gw.url, dep["id"]) as watch:
        eventually(lambda: traffic.ok >= 20, "requests flow through the gateway")
        for round_ in (1, 2):
            print(f"round {round_}: signal at {time.time():.2f}")
            leader.popen.send_signal(sig)
            leader.popen.wait(30)
            new = eventually(lambda term=term: (c := controllers(gw.url))["leader"]
                             and c["term"] > term and c, f"round {round_}: a new leader")
            print(f"round {round_}: new leader at {time.time():.2f}")
            assert new["leader"].split("-")[-2] == str(follower.popen.pid)
            term = new["term"]
            # Past the grace after which an unseen replica would be replaced, with passes
            # of the new leader's controller in between.
            time.sleep(GRACE_S + 2.0)
            before = traffic.ok
            eventually(lambda before=before: traffic.ok > before + 10, "requests still flow")
            leader, follower = follower, cluster.start(f"{leader.name}{round_}")
            assert watch.statuses == {"running"} and not traffic.failed, (
                watch.statuses, traffic.failed[:5])

    assert traffic.ok > 50 and traffic.failed == []
    assert watch.statuses == {"running"}, watch.statuses
    assert watch.replica_sets == {frozenset(replicas)}, watch.replica_sets
    assert watch.not_ready == []

    store = Store.open(cluster.pg_url)
    try:
        types = [e.type for e in store.events_since(0, deployment_id=dep["id"])]
        assert types.count("replica.starting") == 2, types
        for bad in ("replica.failed", "replica.lost", "deployment.failed", "replica.restarting"):
            assert bad not in types, types
        assert {r.id for r in store.replicas(dep["id"])} == replicas
        assert store.get_deployment(dep["id"]).failures == 0
    finally:
        store.close()

    # No orphan: exactly the two replicas' engines run, each on record in the shared dir.
    engines = cluster.engines()
    assert len(engines) == 2, engines
    records = {p.stem: json.loads(p.read_text()) for p in cluster.state_dir.glob("*.json")}
    assert set(records) == replicas
    ports = {str(r["meta"]["port"]) for r in records.values()}
    assert {cmd.split("--port ")[1].split()[0] for cmd in engines.values()} == ports

    # Each change of leader is logged on a3s.leader by `a3s serve`.
    logs = "".join(s.log.read_text() for s in cluster.serves)
    assert logs.count("now leads the controllers") >= 3, logs[-3000:]
    assert "sim runtime, several platform processes" in logs

    # Deleting through the gateway process stops both engines (the leader does it).
    assert httpx.delete(f"{gw.url}/v1/deployments/{dep['id']}", headers=admin,
                        timeout=10).status_code == 202
    eventually(lambda: view()["status"] == "deleted", "the deployment is deleted")
    eventually(lambda: not cluster.engines(), "no engine left")
