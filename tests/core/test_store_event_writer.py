"""SQLite event appends go through the driver (store/event_writer.py): the rows must be
exactly what SQLAlchemy Core writes, read back the same, and a failed append must leave
nothing behind and the writer usable."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from a3s_core.store import Store
from a3s_core.store.repo import _INSERT_EVENT, _event_values
from a3s_core.types import Event


def raw_rows(path: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT * FROM events ORDER BY seq").fetchall()


def test_rows_are_byte_for_byte_what_core_writes(tmp_path: Path) -> None:
    path = tmp_path / "a3s.db"
    store = Store.open(f"sqlite:///{path}")
    event = Event(ts=datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC), type="t.x",
                  deployment_id="dep-1", name="qwen", namespace="team-a", level="warning",
                  message="héllo", trace_id="a" * 32, span_id="b" * 16,
                  data={"gpus": [0, 1], "why": "ünïcode", "nested": {"k": None}})
    (fast,) = store.append_events([event])
    with store.engine.begin() as conn:  # the Core path, as PostgreSQL uses it
        conn.execute(_INSERT_EVENT, _event_values(event))
    first, second = raw_rows(path)
    assert first[1:] == second[1:] and second[0] == first[0] + 1
    back = store.events_since(0)
    assert back[0] == fast and back[0].model_copy(update={"seq": back[1].seq}) == back[1]
    assert back[0].ts == event.ts and back[0].data == event.data
    store.close()


def test_a_failed_append_leaves_nothing_and_the_next_one_works(tmp_path: Path) -> None:
    path = tmp_path / "a3s.db"
    store = Store.open(f"sqlite:///{path}")
    good = Event(ts=datetime.now(UTC), type="t.ok", message="ok")
    bad = good.model_copy(update={"message": None})  # NOT NULL column
    with pytest.raises(IntegrityError):
        store.append_events([good, bad])
    assert raw_rows(path) == []  # the whole batch rolled back
    (again,) = store.append_events([good])
    assert [r[0] for r in raw_rows(path)] == [again.seq]
    store.close()


def test_closing_while_another_thread_appends_ends_its_appends_cleanly(tmp_path: Path) -> None:
    # Closing the writer's connection in the middle of an append on another thread
    # crashed the interpreter once; close now waits for the append, and later appends
    # fail with a plain error instead of touching a closed connection.
    store = Store.open(f"sqlite:///{tmp_path / 'a3s.db'}")
    appended, errors = [], []
    started = threading.Event()

    def appender() -> None:
        try:
            while True:
                appended.extend(store.append_events([
                    Event(ts=datetime.now(UTC), type="t", level="info", message="m")]))
                started.set()
        except Exception as exc:  # the end this test expects
            errors.append(exc)

    t = threading.Thread(target=appender, daemon=True)
    t.start()
    assert started.wait(10)
    store.close()
    t.join(10)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError), errors
    assert "store is closed" in str(errors[0])
    assert appended
