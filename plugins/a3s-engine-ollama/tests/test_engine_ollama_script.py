"""The entry script, run for real against a stand-in `ollama` binary on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from a3s_engine_ollama import OllamaEngine

from a3s_core.contracts import LaunchContext

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/version", timeout=0.5).read()
    except OSError:
        return False
    return True


def children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return kids


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode() for a in raw.split(b"\0") if a]


def can_bind_loopback_2() -> bool:
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.2", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(sys.platform != "linux" or not can_bind_loopback_2(), reason="needs 127.0.0.2")
def test_address_is_bound_only_after_the_model_is_fetched(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ollama").symlink_to(HERE / "fake_ollama.py")
    log = tmp_path / "ollama.log"
    port = free_port()
    c = LaunchContext(
        served_model_name="qwen-7b",
        model="Qwen/Qwen2.5-7B-Instruct",
        max_model_len=32768,
        port=port,
        host="127.0.0.1",
    )
    engine = OllamaEngine()
    env = {
        **os.environ,
        **engine.env(c),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_OLLAMA_LOG": str(log),
        "FAKE_PULL_SECONDS": "0.5",
        "FAKE_RUN_FOREVER": "1",  # the preload's answer never ends (a base model)
    }
    proc = subprocess.Popen(engine.command(c), env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 30

        # While the pull runs, the replica's address must not answer.
        def verbs() -> list[list[str]]:
            text = log.read_text() if log.exists() else ""
            return [line.split()[:2] for line in text.splitlines()]

        private, public = f"127.0.0.2:{port}", f"127.0.0.1:{port}"
        while ["pull", private] not in verbs():
            assert time.monotonic() < deadline, "the fetch never started"
            assert proc.poll() is None
            time.sleep(0.05)
        assert not answers(port)
        while ["run", public] not in verbs():
            assert time.monotonic() < deadline, "the model was never preloaded"
            assert proc.poll() is None
            time.sleep(0.05)
        assert answers(port)
        # The preload's answer is cut off once the model is listed as loaded: no `ollama
        # run` is left holding a slot.
        while any("run" in " ".join(cmdline(p)) for p in children(proc.pid)):
            assert time.monotonic() < deadline, "the preload was never stopped"
            time.sleep(0.05)
        assert ["ps", public] in verbs()
        assert proc.poll() is None and answers(port)
        seen = verbs()
        assert ["serve", private] in seen and ["cp", private] in seen
        assert seen.index(["cp", private]) < seen.index(["serve", public])
        # SIGTERM (what a pod or the local runtime sends) stops the server and the script.
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        assert not answers(port)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
