"""Two platform processes sharing one simulated cluster (one state_dir): the follower
neither tails nor duplicates log lines but serves logs from the leader's records; a new
leader adopts the old leader's replicas and keeps a replica that served as ready through a
slow first health check."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from a3s_runtime_sim import SimRuntime
from test_runtime_sim_replicas import options, request, until


async def test_a_new_leader_adopts_the_old_leaders_replicas_and_keeps_them_ready(
    tmp_path: Path,
) -> None:
    leader = SimRuntime(options(tmp_path, health_timeout_s=0.3))
    follower = SimRuntime(options(tmp_path, health_timeout_s=0.3))
    await leader.start()
    await follower.start()
    await leader.on_leadership(True)
    await follower.on_leadership(False)
    try:
        await leader.create_replica(await request(leader, rid="keep"))
        await until(leader, "keep", "ready")
        assert follower.replicas.get("keep") is None  # a follower does not track it

        # The follower serves the logs from what the leader records, without tailing.
        async def logged() -> list[str]:
            return [x.line async for x in follower.logs("keep", tail=50)]

        for _ in range(100):
            if any("simulating" in line for line in await logged()):
                break
            await asyncio.sleep(0.05)
        assert any("simulating" in line for line in await logged())
        jsonl = (tmp_path / "sim" / "logs" / "keep.jsonl").read_text()
        assert jsonl.count("simulating") == 1  # written once, by the leader only

        # The leader dies (its replicas live on); the engine is slow to answer right then.
        pid = leader.replicas.get("keep").pid  # type: ignore[union-attr]
        await leader.close()
        os.killpg(pid, signal.SIGSTOP)
        try:
            await follower.on_leadership(True)
            (obs,) = await follower.observe()
            assert (obs.replica_id, obs.state) == ("keep", "ready"), obs
        finally:
            os.killpg(pid, signal.SIGCONT)
        assert (await until(follower, "keep", "ready")).replica_id == "keep"
    finally:
        await follower.delete_replica("keep")
        await follower.close()
        await leader.close()
    assert await SimRuntime(options(tmp_path)).observe() == []


async def test_the_follower_follows_logs_until_the_replica_ends(tmp_path: Path) -> None:
    leader = SimRuntime(options(tmp_path))
    follower = SimRuntime(options(tmp_path))
    await leader.start()
    await follower.start()
    await follower.on_leadership(False)
    try:
        await leader.create_replica(await request(leader, rid="r1"))
        await until(leader, "r1", "ready")
        seen: list[str] = []

        async def follow() -> None:
            async for item in follower.logs("r1", tail=0, follow=True):
                seen.append(item.line)

        task = asyncio.create_task(follow())
        await asyncio.sleep(0.3)
        # The engine's last words, written just before the delete (as its stdout would):
        # the leader records them while stopping it, then removes record and logs at once.
        last = [f"last line {i}" for i in range(5)]
        with (tmp_path / "sim" / "logs" / "r1.out").open("a") as out:
            out.write("".join(f"{line}\n" for line in last))
        await leader.delete_replica("r1")  # the record goes: following ends
        await asyncio.wait_for(task, 10)
        # every line written before the delete, in order, and what it said on SIGTERM
        assert [x for x in seen if x.startswith("last line")] == last, seen
        assert any(x.endswith("shutting down") for x in seen), seen
    finally:
        await leader.close()
        await follower.close()
