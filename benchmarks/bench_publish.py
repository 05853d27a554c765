"""What one traffic-publishing round costs a gateway process (a3s_core/gateway/publish.py),
in CPU seconds of the whole process (the event loop's part and the worker thread's), for
rounds that carry 0, 400 and 4,000 requests (2 s at 0, 200 and 2,000 requests/s), against
a SQLite store on disk and, with --pg URL, PostgreSQL.

    /work/venv/bin/python benchmarks/bench_publish.py
    /work/venv/bin/python benchmarks/bench_publish.py --pg postgresql+psycopg://USER@HOST/DB

`bench_gateway.py --publish-interval 2` measures the same thing end to end (CPU per
request with the publisher on and off); on a busy 2-core machine that difference is below
its resolution, which this isolates.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select

from a3s_core.catalog import load_catalog
from a3s_core.gateway.load import LoadBook
from a3s_core.gateway.publish import TrafficPublisher
from a3s_core.store import Store
from a3s_core.store.traffic import GatewayTrafficRow


def fill(book: LoadBook, deployments: int, requests: int) -> None:
    """`requests` answers since the last round, over `deployments` deployments."""
    for i in range(requests):
        dst = book.deployment(f"dep-{i % deployments}")
        at = time.monotonic()  # after the last round's mark: this round publishes them
        dst.arrivals.add(0.0, now=at)
        dst.first_byte.add(0.02 + (i % 50) / 1000, now=at)


async def measure(url: str, requests: int, deployments: int, rounds: int) -> list[float]:
    store = Store.open(url)
    try:
        book = LoadBook(load_catalog(None), stale_after_s=1.5)
        # A gateway name of its own per measure, whose rows alone are summed below: the
        # measures share the store, and under one name the previous measure's rows (in
        # slots this one does not write) were added in, failing the check now and then.
        gateway = f"bench-{requests}"
        pub = TrafficPublisher(book, store.engine, 2.0, gateway=gateway)
        await pub.publish_once()  # the connection and the first slots
        out = []
        for _ in range(rounds):
            fill(book, deployments, requests)
            cpu = time.process_time()
            assert await pub.publish_once()
            out.append(time.process_time() - cpu)
        with store.engine.connect() as conn:  # every request made it into a row
            written = conn.execute(
                select(func.sum(GatewayTrafficRow.requests))  # type: ignore[arg-type]
                .where(GatewayTrafficRow.gateway == gateway)).scalar()
        assert (written or 0) == rounds * requests, (written, rounds * requests)
        return out
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", help="a PostgreSQL URL to measure too (a database of its "
                        "own: it is migrated and written to)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--deployments", type=int, default=4)
    args = parser.parse_args()
    stores = {"sqlite": f"sqlite:///{Path(tempfile.mkdtemp()) / 'a3s.db'}"}
    if args.pg:
        stores["postgresql"] = args.pg
    print(f"{'store':<11}{'requests/round':>15}{'CPU/round ms':>14}{'CPU/request us':>16}")
    for name, url in stores.items():
        for requests in (0, 400, 4000):
            cpu = asyncio.run(measure(url, requests, args.deployments, args.rounds))
            med = statistics.median(cpu)
            per = f"{med / requests * 1e6:>16.1f}" if requests else f"{'-':>16}"
            print(f"{name:<11}{requests:>15}{med * 1000:>14.2f}{per}")
    print("(medians of the rounds; the request path itself does nothing more when publishing)")


if __name__ == "__main__":
    main()
