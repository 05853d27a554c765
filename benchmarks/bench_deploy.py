"""Time from POST /v1/deployments to `running` on the sim runtime (target: p50 < 1 s).

Runs the real platform (uvicorn on 127.0.0.1, SQLite in a temp dir, the sim runtime) and
deploys single-replica models one after another, timing each from the POST until the
deployment reports `running`; each is deleted before the next.

    python benchmarks/bench_deploy.py [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

from a3s_core.api.app import create_app
from a3s_core.procs import free_port
from a3s_core.settings import Settings

TOKEN = "bench-admin"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        settings = Settings(data_dir=Path(tmp), admin_token=TOKEN, port=port, runtime="sim",
                            runtime_options={"time_scale": 0.01, "stop_on_close": True})
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1",
                                               port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}",
                            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        times: list[float] = []
        try:
            for i in range(args.runs):
                body = {"models": [{"name": f"bench-{i}", "model": "Qwen/Qwen2.5-7B-Instruct"}]}
                t0 = time.perf_counter()
                dep = http.post("/v1/deployments", json=body).json()["deployments"][0]
                while http.get(f"/v1/deployments/{dep['id']}").json()["status"] != "running":
                    time.sleep(0.005)
                times.append(time.perf_counter() - t0)
                http.delete(f"/v1/deployments/{dep['id']}")
        finally:
            server.should_exit = True
            thread.join(timeout=30)
    times.sort()
    p = lambda q: times[min(len(times) - 1, int(q * len(times)))]  # noqa: E731
    print(f"POST → running on the sim runtime, {len(times)} single-replica deployments")
    print(f"  p50 {p(0.5) * 1000:7.1f} ms   p90 {p(0.9) * 1000:7.1f} ms   "
          f"max {times[-1] * 1000:7.1f} ms   mean {statistics.mean(times) * 1000:7.1f} ms")
    print(f"  target p50 < 1000 ms: {'met' if p(0.5) < 1.0 else 'NOT met'}")


if __name__ == "__main__":
    main()
