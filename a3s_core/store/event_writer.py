"""Event appends on SQLite straight through the driver, with SQLAlchemy's own conversions.

Every pipeline step, span and replica change is an event, and an emit from the event loop
blocks it until the row is committed. Through SQLAlchemy Core an append cost ~250 µs here,
of which SQLite itself (insert and commit) was ~100 µs: the rest was connection checkout,
execution context and result wrapping. This writer keeps one pooled connection for
appends (the store's event lock serialises them) and runs one prepared `INSERT …
RETURNING seq` per row. The values go through each column type's `bind_processor`, the
conversion SQLAlchemy itself applies, so rows are stored exactly as the ORM stores them
and read back the same. PostgreSQL keeps the Core path (its advisory lock and a
connection pool that survives server restarts matter more there than microseconds).
"""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

COLUMNS = ("ts", "type", "deployment_id", "name", "namespace", "level", "message",
           "trace_id", "span_id", "data")


class SqliteEventWriter:
    def __init__(self, engine: Engine, table: Table) -> None:
        self._engine = engine
        dialect = engine.dialect  # the dialect-level type, as the compiler uses it
        self._convert = [table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
                         for name in COLUMNS]
        marks = ", ".join("?" * len(COLUMNS))
        self._sql = (
            f"INSERT INTO {table.name} ({', '.join(COLUMNS)}) VALUES ({marks}) RETURNING seq"
        )
        self._conn: Any = None  # checked out of the engine's pool on first use, kept
        self._closed = False
        self._dbapi_error: type[Exception] = engine.dialect.loaded_dbapi.Error

    def append(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert the rows in one transaction; their seqs, in order. Caller serialises."""
        if self._conn is None:
            if self._closed:
                raise RuntimeError("the store is closed: events can no longer be appended")
            self._conn = self._engine.raw_connection()
        conn = self._conn
        convert = self._convert
        try:
            cursor = conn.cursor()
            seqs: list[int] = []
            for row in rows:
                params = [row[name] if fn is None else fn(row[name])
                          for name, fn in zip(COLUMNS, convert, strict=True)]
                cursor.execute(self._sql, params)
                seqs.append(int(cursor.fetchone()[0]))
            cursor.close()
            conn.commit()
        except BaseException as exc:
            with contextlib.suppress(Exception):
                conn.rollback()
            if isinstance(exc, self._dbapi_error):  # raise what the Core path raises
                raise DBAPIError.instance(self._sql, None, exc, self._dbapi_error) from exc
            raise
        return seqs

    def close(self) -> None:
        self._closed = True
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()  # back to the pool, which the engine then disposes
            self._conn = None
