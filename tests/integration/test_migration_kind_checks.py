"""Migration v8: a database at v7 gains the email kind CHECK, and every kind CHECK follows its enum."""

from __future__ import annotations

import pytest
import sqlalchemy.exc
from sqlalchemy import text

from shared.config import Settings
from shared.db.database import Database
from shared.db.engine import make_engine
from shared.db.migrate import LATEST, ensure_schema
from shared.errors import sqlstate

INSERT_EMAIL = text("INSERT INTO email_sends (order_id, kind, reminder_index, state) VALUES ('o', :k, 0, 'sent')")


def _checks(db: Database) -> dict[str, str]:
    with db.read() as conn:
        rows = conn.execute(text("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                                 "WHERE contype = 'c' AND (conname LIKE '%kind' OR conname LIKE '%status')")).all()
    return dict(rows)


def test_a_version_7_database_gains_the_kind_constraints(fresh_database):
    settings = Settings.from_env({"DATABASE_URL": fresh_database, "TASKS_BACKEND": "local",
                                  "TIMER_URL": "http://127.0.0.1:1/", "EVENTS_BACKEND": "local"})
    db = Database(make_engine(settings.database))
    ensure_schema(db)
    built = _checks(db)
    with db.transaction() as conn:  # back to what v7 had
        conn.execute(text("ALTER TABLE email_sends DROP CONSTRAINT email_sends_kind"))
        conn.execute(text("DELETE FROM schema_version WHERE version > 7"))
    assert "email_sends_kind" not in _checks(db)

    assert ensure_schema(db) == LATEST
    assert _checks(db) == built and "email_sends_kind" in built
    with pytest.raises(sqlalchemy.exc.DBAPIError) as refused:
        with db.transaction() as conn:
            conn.execute(INSERT_EMAIL, {"k": "newsletter"})
    assert sqlstate(refused.value) == "23514"  # check_violation
    with db.transaction() as conn:
        conn.execute(INSERT_EMAIL, {"k": "link"})
    db.engine.dispose()
