"""Issue 18's acceptance test: two `a3s serve` processes on one PostgreSQL database share
one simulated cluster (one sim `state_dir`); the leader is killed twice in a row with the
deployment running (SIGKILL, then the same with SIGTERM). Requests flow all along through
a third process that never leads (`A3S_CONTROLLERS=false`): the surviving gateway.

Wanted: no replica replaced, no engine orphaned, no request failed, the deployment
`running` throughout, and each leadership change logged on `a3s.leader`. Lease and grace
are short here (2 s); benchmarks/bench_failover.py runs the same with the defaults.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from failover_kit import Cluster, delete, run_failovers

pytestmark = pytest.mark.postgres

GRACE_S = 2.0  # a replica not reported this long after a take-over would be replaced
FAST = {
    "A3S_LEASE_DURATION_S": "2",
    "A3S_LEASE_RENEW_INTERVAL_S": "0.5",
    "A3S_REPLICA_LOST_GRACE_S": str(GRACE_S),
    "A3S_RECONCILE_INTERVAL_S": "0.2",
}


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path, pg_url, FAST)
    yield c
    c.close()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_killing_the_leader_twice_keeps_every_replica_and_every_request(
    cluster: Cluster, sig: signal.Signals
) -> None:
    # Past the grace after which an unseen replica would be replaced, with passes of the
    # new leader's controller in between.
    r = run_failovers(cluster, sig, rounds=2, settle_s=GRACE_S + 2.0)
    assert r.ok > 50 and r.failed == [], r.failed[:5]
    assert r.statuses == {"running"}, r.statuses
    assert r.replica_sets == {frozenset(r.replicas)}, r.replica_sets
    assert r.not_ready == [], r.not_ready[:5]
    assert r.event_types.count("replica.starting") == 2, r.event_types
    for bad in ("replica.failed", "replica.lost", "deployment.failed", "replica.restarting"):
        assert bad not in r.event_types, r.event_types
    assert r.failures == 0

    # No orphan: exactly the two replicas' engines run, each on record in the shared dir.
    assert len(r.engines) == 2, r.engines
    assert set(r.records) == r.replicas
    ports = {str(rec["meta"]["port"]) for rec in r.records.values()}
    assert {cmd.split("--port ")[1].split()[0] for cmd in r.engines.values()} == ports

    # Each change of leader is logged on a3s.leader by `a3s serve`, and the sim runtime
    # said at start-up what several processes mean for it.
    logs = "".join(s.log.read_text() for s in cluster.serves)
    assert logs.count("now leads the controllers") == 3, logs[-3000:]
    assert "sim runtime, several platform processes" in logs

    delete(cluster, r.deployment_id)
