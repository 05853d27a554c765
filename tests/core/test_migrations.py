"""The migration chain, on SQLite and PostgreSQL: it builds exactly the schema the table
models describe, and every revision can be undone and redone."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from a3s_core.store import leases, tables, traffic  # noqa: F401  (the models on the metadata)
from a3s_core.store.db import MIGRATIONS, make_engine, upgrade


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    url = (f"sqlite:///{tmp_path / 'a3s.db'}" if request.param == "sqlite"
           else str(request.getfixturevalue("pg_url")))
    eng = make_engine(url)
    request.addfinalizer(eng.dispose)
    return eng


def run(engine: Engine, verb: str, target: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        getattr(command, verb)(cfg, target)


def test_migrations_build_what_the_models_describe(engine: Engine) -> None:
    upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_every_revision_downgrades_and_upgrades_again(engine: Engine) -> None:
    upgrade(engine)
    run(engine, "downgrade", "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert {"deployments", "replicas", "events", "api_keys", "leases"} <= set(
        inspect(engine).get_table_names())
    if engine.dialect.name == "postgresql":  # the NOTIFY trigger came back with it
        with engine.connect() as conn:
            found = conn.execute(text(
                "SELECT count(*) FROM pg_trigger "
                "WHERE tgname = 'events_notify' AND tgrelid = 'events'::regclass")).scalar()
        assert found == 1
