"""events: NOTIFY on insert (PostgreSQL), so other platform processes hear of new events

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

A statement-level trigger rather than a NOTIFY issued by the writer: it costs no extra
round trip, it fires for every writer of the table, and a batch of events (one INSERT)
sends one notification carrying the batch's highest seq. PostgreSQL delivers it when the
transaction commits, so a listener that reads after it arrives finds the rows. The
channel carries the schema's name: stores in different schemas of one database do not
wake each other. SQLite has no NOTIFY: one process owns the file, nothing to do there.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("""
        CREATE OR REPLACE FUNCTION a3s_events_notify() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('a3s_events_' || TG_TABLE_SCHEMA,
                              (SELECT max(seq) FROM inserted)::text);
            RETURN NULL;
        END $$
    """)
    op.execute("""
        CREATE TRIGGER events_notify AFTER INSERT ON events
        REFERENCING NEW TABLE AS inserted
        FOR EACH STATEMENT EXECUTE FUNCTION a3s_events_notify()
    """)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS events_notify ON events")
    op.execute("DROP FUNCTION IF EXISTS a3s_events_notify()")
