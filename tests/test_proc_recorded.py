"""A follower reading a process's log from the leader's records (`a3s_core.proc_recorded`):
every line written before the process ends is delivered, whether the leader removed the
files at once, had not recorded the last lines yet, or rotated the record meanwhile."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from a3s_core.proc_output import OutputTail
from a3s_core.proc_recorded import recorded_lines


class Recorder(OutputTail):
    """The leader's side: `<name>.out` written by "the process", recorded by `pump`."""

    def __init__(self, state: Path, name: str = "r1") -> None:
        (state / "logs").mkdir(parents=True, exist_ok=True)
        super().__init__(name, state / "logs", 1000)
        self.state, self.name = state, name
        (state / f"{name}.json").write_text("{}")  # the record: the process exists

    def is_running(self) -> bool:
        return True

    def write(self, *lines: str, newline: bool = True) -> None:
        with self.out_path.open("a") as out:
            out.write("\n".join(lines) + ("\n" if newline else ""))

    def forget(self) -> None:
        """What the supervisor does after the stop: record first, then every file."""
        (self.state / f"{self.name}.json").unlink()
        for suffix in (".out", ".jsonl", ".jsonl.1", ".exit"):
            (self.state / "logs" / f"{self.name}{suffix}").unlink(missing_ok=True)


async def follow(state: Path, seen: list[str], tail: int = 0) -> None:
    async for row in recorded_lines(state, "r1", tail, True, poll_s=0.05):
        seen.append(row.line)


async def settle() -> None:
    await asyncio.sleep(0.2)  # a few of the follower's polls


async def test_lines_recorded_just_before_the_files_are_removed_arrive(tmp_path: Path) -> None:
    leader = Recorder(tmp_path)
    leader.write("old")
    leader.pump()
    seen: list[str] = []
    task = asyncio.create_task(follow(tmp_path, seen, tail=1))
    await settle()
    leader.write("a", "b")
    leader.pump()
    await settle()
    # The last words, then (between two polls of the follower) record and logs removed.
    leader.write("c", "d", "bye")
    leader.pump(final=True)
    leader.forget()
    await asyncio.wait_for(task, 5)
    assert seen == ["old", "a", "b", "c", "d", "bye"]


async def test_lines_the_leader_has_not_recorded_are_read_from_the_output(
    tmp_path: Path,
) -> None:
    leader = Recorder(tmp_path)
    leader.write("one")
    leader.pump()
    seen: list[str] = []
    task = asyncio.create_task(follow(tmp_path, seen))
    await settle()
    # The process writes and exits; the leader has not looked yet (or is gone).
    leader.write("two", "three")
    leader.write("no newline at the end", newline=False)
    (tmp_path / "logs" / "r1.exit").write_text("1\n")
    await asyncio.wait_for(task, 5)
    assert seen == ["two", "three", "no newline at the end"]


async def test_a_rotated_record_is_read_to_its_end_then_the_new_one(tmp_path: Path) -> None:
    leader = Recorder(tmp_path)
    seen: list[str] = []
    leader.write("x")
    leader.pump()
    task = asyncio.create_task(follow(tmp_path, seen))
    await settle()
    leader.write("before rotation")
    leader.pump()
    os.replace(leader.jsonl_path, leader.jsonl_path.with_suffix(".jsonl.1"))
    leader.write("after rotation")
    leader.pump()
    await settle()
    leader.forget()
    await asyncio.wait_for(task, 5)
    assert seen == ["before rotation", "after rotation"]


async def test_without_follow_only_the_tail(tmp_path: Path) -> None:
    leader = Recorder(tmp_path)
    leader.write(*[f"l{i}" for i in range(5)])
    leader.pump()
    rows = [r.line async for r in recorded_lines(tmp_path, "r1", 2, False)]
    assert rows == ["l3", "l4"]
