"""Leader failover on default settings: what clients and replicas see when the leader dies.

Two `a3s serve` processes on one PostgreSQL database share one sim cluster (one
`state_dir`); a third serves the API and gateway only (`A3S_CONTROLLERS=false`) and carries
requests back to back all along. A deployment of 2 replicas runs; the leader is signalled
`--rounds` times in a row (a replacement process is started after each take-over). Prints
per signal: take-over times, requests answered and failed through the gateway, replicas
replaced or lost, engines left running vs on record, and the statuses seen.

    python benchmarks/bench_failover.py [--pg postgresql+psycopg://postgres@127.0.0.1/test]
        [--rounds 2] [--signals KILL,TERM]
"""

from __future__ import annotations

import argparse
import secrets
import signal
import sys
import tempfile
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))
from failover_kit import Cluster, Report, delete, run_failovers

DEFAULT_GRACE_S = 15.0  # Settings.replica_lost_grace_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--signals", default="KILL,TERM")
    args = ap.parse_args()
    dsn = args.pg.replace("postgresql+psycopg://", "postgresql://")
    for name in args.signals.split(","):
        sig = signal.Signals[f"SIG{name}"]
        schema = "bench_" + secrets.token_hex(5)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        url = f"{args.pg}?options=-csearch_path%3D{schema}&application_name={schema}"
        try:
            with tempfile.TemporaryDirectory() as tmp:
                cluster = Cluster(Path(tmp), url)  # every timing at its default
                try:
                    r = run_failovers(cluster, sig, args.rounds, settle_s=DEFAULT_GRACE_S + 5)
                    report(name, args.rounds, r)
                    try:
                        delete(cluster, r.deployment_id)
                    except AssertionError as exc:
                        print(f"  deleting the deployment: {exc}; "
                              f"{len(cluster.engines())} engine(s) left running")
                finally:
                    cluster.close()
        finally:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s AND pid <> pg_backend_pid()", (schema,))
                conn.execute(f"DROP SCHEMA {schema} CASCADE")


def report(name: str, rounds: int, r: Report) -> None:
    replaced = r.event_types.count("replica.starting") - len(r.replicas)
    print(f"SIG{name}, {rounds} leader changes in a row, defaults "
          f"(lease 15 s, renewed every 5 s, lost-replica grace {DEFAULT_GRACE_S:g} s):")
    print("  take-over after the signal: " + ", ".join(f"{t:.1f} s" for t in r.takeover_s))
    print(f"  requests through the gateway process: {r.ok} answered, {len(r.failed)} failed")
    print(f"  replicas replaced: {replaced}; replica.lost: {r.event_types.count('replica.lost')}"
          f"; replica.failed: {r.event_types.count('replica.failed')}; "
          f"deployment.failed: {r.event_types.count('deployment.failed')}")
    print(f"  engines running: {len(r.engines)}, on record: {len(r.records)} "
          f"(orphans: {max(0, len(r.engines) - len(r.records))})")
    print(f"  statuses seen: {', '.join(sorted(r.statuses))}; "
          f"replica sets seen: {len(r.replica_sets)}", flush=True)

if __name__ == "__main__":
    main()
