"""Hear other platform processes' events at once: PostgreSQL LISTEN on the channel the
`events_notify` trigger (migration 0003) notifies after every committed insert.

    listener = store.event_listener()     # None where the store cannot notify (SQLite)
    seq = listener.wait(1.0)               # highest seq committed, or None after 1 s
    listener.close()

The bus still reads the events from the table: a notification only says "there is
something after seq N", so a lost one (a dropped connection) costs latency, not events.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

CHANNEL_PREFIX = "a3s_events_"  # + the schema's name, as the trigger builds it


class EventListener:
    def __init__(self, engine: Engine) -> None:
        # A connection of its own, held for as long as the listener lives; closed, not
        # returned to the pool, so no pooled connection is ever left in autocommit.
        self._raw = engine.raw_connection()
        try:
            conn: Any = self._raw.driver_connection  # psycopg.Connection
            conn.autocommit = True
            # The channel as the trigger computes it (NAMEDATALEN caps names at 63 bytes).
            row = conn.execute(
                "SELECT left(%s || current_schema(), 63)", (CHANNEL_PREFIX,)
            ).fetchone()
            self.channel: str = row[0]
            from psycopg import sql

            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        except BaseException:
            self._raw.invalidate()
            raise
        self._conn = conn

    def wait(self, timeout_s: float) -> int | None:
        """Block until a notification arrives (its seq; 0 if it carried none) or
        `timeout_s` passes (None). Raises the driver's error if the connection broke."""
        for note in self._conn.notifies(timeout=timeout_s, stop_after=1):
            try:
                return int(note.payload)
            except ValueError:
                return 0
        return None

    def close(self) -> None:
        self._raw.invalidate()  # closes the connection; LISTEN ends with it
