"""Migration v23: a database from before it gains `effect_runs`, the generic durable claim of a registered side
effect (`shared.effects`), as `schema.py` defines it, with no CHECK naming an effect (a new
effect needs no migration)."""

from __future__ import annotations

import pytest
import sqlalchemy.exc
from sqlalchemy import text

from shared.config import Settings
from shared.db import effect_runs, migrate, schema
from shared.db.database import Database
from shared.db.engine import make_engine
from shared.db.migrate import LATEST, ensure_schema


def _columns(conn) -> dict[str, tuple[str, bool]]:
    return {name: (kind, nullable == "YES") for name, kind, nullable in conn.execute(text(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_name = 'effect_runs'"))}


def test_a_database_before_the_step_gains_effect_runs_as_the_schema_defines_it(fresh_database):
    settings = Settings.from_env({"DATABASE_URL": fresh_database, "TASKS_BACKEND": "local",
                                  "TIMER_URL": "http://127.0.0.1:1/", "EVENTS_BACKEND": "local"})
    db = Database(make_engine(settings.database))
    step = migrate.MIGRATIONS.index(migrate._effect_runs) + 1
    try:
        ensure_schema(db)  # a new database: v1 created the table from schema.py
        with db.read() as conn:
            created = _columns(conn)
        with db.transaction() as conn:  # back to the version before the step
            conn.execute(text("DELETE FROM schema_version WHERE version >= :v"), {"v": step})
            conn.execute(text("DROP TABLE effect_runs"))
        assert ensure_schema(db) == LATEST >= step
        with db.read() as conn:
            migrated = _columns(conn)
            indexes = set(conn.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = 'effect_runs'"))
                          .scalars())
        assert migrated == created and set(migrated) == set(schema.effect_runs.columns.keys())
        assert indexes == {"effect_runs_pkey", "effect_runs_open", "effect_runs_failed"}

        with db.transaction() as conn:  # any effect name is stored; one run per order and effect
            conn.execute(text("INSERT INTO effect_runs (order_id, effect, reason) "
                              "VALUES ('o-1', 'some_new_effect', 'expired')"))
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="effect_runs_pkey"):
            with db.transaction() as conn:
                conn.execute(text("INSERT INTO effect_runs (order_id, effect) VALUES ('o-1', 'some_new_effect')"))
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="effect_runs_state"):
            with db.transaction() as conn:
                conn.execute(text("INSERT INTO effect_runs (order_id, effect, state) VALUES ('o-2', 'x', 'lost')"))
        claim = effect_runs.claim_effect_run(db, "o-1", "some_new_effect", 300.0)
        assert (claim["outcome"], claim["attempts"], claim["reason"], claim["source"]) == ("claimed", 1, "expired", None)
        assert effect_runs.claim_effect_run(db, "o-1", "some_new_effect", 300.0) == {"outcome": "busy"}

        with db.transaction() as conn:  # the step again changes nothing (a new database runs it after v1)
            migrate._effect_runs(conn)
        assert ensure_schema(db) == LATEST
    finally:
        db.engine.dispose()
