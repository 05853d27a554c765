"""Profile one gateway process under proxy-bound load (issue 16, item 4).

Starts the two micro backends and the gateway as `bench_gateway.py --proxy-bound` does
(one worker, so one process to sample), drives plain (or streamed) requests at a fixed
concurrency for a while, and prints the gateway's CPU per request, its idle CPU per second
(scraping, directory refreshes) and, with `--py-spy OUT`, records a py-spy profile of it
(`py-spy` on PATH or beside this Python; `--native` for C frames; raw collapsed stacks,
which `--top` summarises by function, self and inclusive).

    .venv/bin/python benchmarks/profile_gateway.py --requests 40000
    .venv/bin/python benchmarks/profile_gateway.py --py-spy /tmp/gw.txt --top 40
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_gateway import HERE, MODEL, NAMESPACE, chat_body
from bench_procs import child_pids, cpu_seconds, spawn, started, wait_ready
from http_load import run_load

from a3s_core.net import free_port


async def main(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="a3s-prof-"))
    key = "sk-a3s-bench-" + os.urandom(16).hex()
    urls = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    with started([]) as procs:
        for i, url in enumerate(urls):
            backend = spawn(f"backend{i}", [sys.executable, str(HERE / "micro_backend.py"),
                                            "--port", url.rsplit(":", 1)[1]], workdir)
            procs.append(backend)
            await wait_ready(url + "/health", backend)
        port = free_port()
        entry = os.environ.get("A3S_PROFILE_ENTRY", str(HERE / "bench_gateway.py"))
        gateway = spawn("gateway", [sys.executable, entry,
                                    "--serve-gateway", str(port), ",".join(urls), key, "vllm",
                                    str(workdir), str(args.workers), ""], workdir)
        procs.append(gateway)
        auth = {"Authorization": f"Bearer {key}"}
        base = f"http://127.0.0.1:{port}/d/{NAMESPACE}/{MODEL}/v1"
        url = base + "/chat/completions"
        await wait_ready(base + "/models", gateway, headers=auth)
        body = chat_body(16, args.stream)
        await run_load("light", url, auth, body, args.stream, args.concurrency, 2000, 0)
        pid = gateway.popen.pid
        if args.workers > 1:
            await asyncio.sleep(1.0)  # every worker up (the first answered already)
        c0, t0 = cpu_seconds(pid) or 0.0, time.monotonic()
        await asyncio.sleep(args.idle_s)
        idle = ((cpu_seconds(pid) or 0.0) - c0) / (time.monotonic() - t0)
        spy = None
        if args.py_spy:
            exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            argv = [exe, "record", "--pid", str(pid), "--format", "raw", "-o", args.py_spy,
                    "--rate", str(args.rate)]
            # --native must stop the process to unwind C frames; Python frames need not.
            log = open(args.py_spy + ".log", "w")  # noqa: SIM115  # the child holds it
            spy = subprocess.Popen(argv + (["--native"] if args.native else ["--nonblocking"]),
                                   stdout=subprocess.DEVNULL, stderr=log)
            await asyncio.sleep(1.0)
        perf = None
        if args.perf:  # on-CPU samples of the C level (the interpreter, uvloop, the kernel)
            perf = subprocess.Popen(["perf", "record", "-F", "1999", "-p", str(pid), "-o",
                                     args.perf], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            await asyncio.sleep(1.0)
        c0, u0, s0 = cpu_seconds(pid) or 0.0, *user_sys(pid)
        ok, failed, secs, lat = await run_load("light", url, auth, body, args.stream,
                                               args.concurrency, args.requests, 0)
        busy = (cpu_seconds(pid) or 0.0) - c0
        u1, s1 = user_sys(pid)
        if perf is not None:
            perf.send_signal(2)
            perf.wait(30)
        if spy is not None:
            spy.send_signal(2)
            spy.wait(30)
        lat.sort()
        print(f"{'stream' if args.stream else 'plain'} at {args.concurrency}: {ok} ok, "
              f"{failed} failed, {ok / secs:.0f} req/s, p50 {lat[len(lat) // 2] * 1e3:.2f} ms, "
              f"p99 {lat[int(len(lat) * 0.99)] * 1e3:.2f} ms")
        print(f"gateway CPU: {busy / ok * 1e6:.1f} us per request under load "
              f"(of which idle work ~{idle * secs / ok * 1e6:.1f} us); "
              f"idle {idle * 1e3:.1f} ms CPU per second")
        print(f"  user {(u1 - u0) / ok * 1e6:.1f} us, system (syscalls, loopback TCP) "
              f"{(s1 - s0) / ok * 1e6:.1f} us per request")
    print("logs:", workdir)
    if args.py_spy and args.top:
        top(Path(args.py_spy), args.top)
    return 0


def user_sys(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process and its children (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    user, system = int(fields[11]) / tick, int(fields[12]) / tick
    for child in child_pids(pid):
        u, s = user_sys(child)
        user, system = user + u, system + s
    return user, system


def top(path: Path, n: int) -> None:
    """Self and inclusive sample shares by function, from py-spy's raw (collapsed) stacks."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        c = int(count)
        total += c
        frames = [f.split(" (")[0] + " " + f.rsplit("/", 1)[-1].split(":")[0].rstrip(")")
                  for f in stack.split(";")]
        own[frames[-1]] += c
        for f in set(frames):
            incl[f] += c
    print(f"\n{total} samples. self %:")
    for f, c in own.most_common(n):
        print(f"  {100 * c / total:5.1f}  {f}")
    print("inclusive %:")
    for f, c in incl.most_common(n):
        print(f"  {100 * c / total:5.1f}  {f}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=40000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--stream", action="store_true")
    p.add_argument("--workers", type=int, default=1,
                   help="gateway workers (CPU summed over all; --py-spy samples the supervisor "
                        "only, so profile with 1)")
    p.add_argument("--idle-s", type=float, default=3.0)
    p.add_argument("--py-spy", metavar="OUT")
    p.add_argument("--native", action="store_true")
    p.add_argument("--perf", metavar="OUT", help="also `perf record` the gateway into OUT")
    p.add_argument("--rate", type=int, default=500)
    p.add_argument("--top", type=int, default=0)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    sys.exit(asyncio.run(main(p.parse_args())))
