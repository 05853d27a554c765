"""The platform for real (HTTP server, controller, gateway, `local` runtime on the CPU) and
the process helpers the real-engine end-to-end tests share (llama.cpp, Ollama)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn

from a3s_core.api.app import create_app
from a3s_core.net import free_port
from a3s_core.settings import Settings

START_DEADLINE_S = 120.0  # the engines load the tiny model in seconds; CI gets slack


@dataclass
class Running:
    url: str
    http: httpx.Client
    data_dir: Path

    def view(self, dep_id: str) -> dict[str, Any]:
        r = self.http.get(f"/v1/deployments/{dep_id}")
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def wait(self, dep_id: str, what: str, ok: Callable[[dict[str, Any]], bool],
             timeout: float = START_DEADLINE_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            v = self.view(dep_id)
            if ok(v):
                return v
            if v["status"] == "failed" or time.monotonic() > deadline:
                events = [(e["type"], e["message"]) for e in v["recentEvents"]]
                pytest.fail(f"waiting for {what}: status {v['status']!r} ({v['reason']}); "
                            f"replicas {v['replicas']}; events {events}")
            time.sleep(0.2)


@contextmanager
def run_platform(tmp_path: Path, admin: str) -> Iterator[Running]:
    """The platform on a free loopback port, the `local` runtime offering the CPU only."""
    port = free_port()
    settings = Settings(
        runtime="local",
        # The CPU only, whatever this machine has; replicas stopped if the test fails midway.
        runtime_options={"use_gpus": False, "stop_on_close": True},
        data_dir=tmp_path / "a3s",
        admin_token=admin,
        host="127.0.0.1",
        port=port,
        reconcile_interval_s=0.2,
    )
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "platform did not start"
        time.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"},
                      timeout=30) as http:
        try:
            yield Running(url, http, settings.data_dir)
        finally:
            server.should_exit = True
            thread.join(timeout=30)


def records(state_dir: Path, marker: str) -> dict[str, dict[str, Any]]:
    """replica id → the local runtime's record (argv, pid, health URL…) of each replica
    whose argv mentions `marker`."""
    out: dict[str, dict[str, Any]] = {}
    for path in state_dir.glob("*.json"):
        record = json.loads(path.read_text())
        if any(marker in arg for arg in record["argv"]):
            out[record["name"]] = record
    return out


def engine_pids(state_dir: Path, marker: str) -> dict[str, tuple[int, int | None]]:
    """replica id → (supervisor wrapper pid, engine pid): the engine is the wrapper's child."""
    out: dict[str, tuple[int, int | None]] = {}
    for name, record in records(state_dir, marker).items():
        wrapper = int(record["pid"])
        kids = [pid for pid, ppid in processes() if ppid == wrapper]
        out[name] = (wrapper, kids[0] if kids else None)
    return out


def processes() -> list[tuple[int, int]]:
    """(pid, parent pid) of every process, from /proc."""
    out: list[tuple[int, int]] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue  # exited while we looked
        out.append((int(stat.parent.name), int(fields[1])))
    return out


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children…)."""
    tree = processes()
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        kids = [p for p, pp in tree if pp == parent]
        found += kids
        todo += kids
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has exited; only its parent's wait is missing


def wait_gone(pids: list[int], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, f"still running: {[p for p in pids if alive(p)]}"
        time.sleep(0.1)


def chat_plain_and_streamed(client: openai.OpenAI) -> tuple[Any, list[Any]]:
    """The same greedy 8-token chat asked plainly and streamed through the gateway: the
    checks every real engine must pass (the plain answer cut at max_tokens, the stream
    passed on chunk by chunk and carrying the same tokens). Returns (answer, chunks)."""
    ask = {"model": "tiny", "messages": [{"role": "user", "content": "hello world"}],
           "max_tokens": 8, "temperature": 0}
    plain = client.chat.completions.create(**ask)
    text = plain.choices[0].message.content or ""
    assert plain.choices[0].finish_reason == "length"
    assert plain.usage is not None and plain.usage.completion_tokens == 8
    assert text.strip()
    chunks = list(client.chat.completions.create(**ask, stream=True))
    pieces = [c.choices[0].delta.content for c in chunks
              if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 2  # passed through chunk by chunk, not buffered into one
    assert "".join(pieces) == text  # greedy: the same tokens as the plain answer
    return plain, chunks
