"""Migration v3: a database at v2 gains provider_sessions (backfilled from the sessions' stored
provider session, so decisions for links already sent still bind) and decision_hold_until."""

from __future__ import annotations

from sqlalchemy import text

from shared.config import Settings
from shared.db.database import Database
from shared.db.engine import make_engine
from shared.db.migrate import LATEST, ensure_schema


def test_a_version_2_database_migrates_forward_and_keeps_its_links_bindable(fresh_database):
    settings = Settings.from_env({"DATABASE_URL": fresh_database, "TASKS_BACKEND": "local",
                                  "TIMER_URL": "http://127.0.0.1:1/", "EVENTS_BACKEND": "local"})
    db = Database(make_engine(settings.database))
    ensure_schema(db)
    with db.transaction() as conn:  # roll back to what v2 created, with a link already sent
        conn.execute(text("DROP TABLE provider_sessions"))
        conn.execute(text("ALTER TABLE verification_sessions DROP COLUMN decision_hold_until"))
        conn.execute(text("ALTER TABLE verification_sessions DROP COLUMN provider"))  # v22's, with its names
        conn.execute(text("ALTER TABLE verification_sessions RENAME COLUMN provider_session_id TO veriff_session_id"))
        conn.execute(text("ALTER TABLE verification_sessions RENAME COLUMN provider_url TO veriff_url"))
        conn.execute(text("DELETE FROM schema_version WHERE version > 2"))
        conn.execute(text("""
            INSERT INTO verification_sessions (order_id, source, customer_email, ordered_at, deadline,
                                               veriff_session_id, veriff_url)
            VALUES ('old-1', 'orders', 'a@example.com', now(), now() + interval '1 day',
                    'vs-old', 'https://veriff.example/vs-old'),
                   ('old-2', 'orders', 'b@example.com', now(), now() + interval '1 day', NULL, NULL)
        """))
    assert ensure_schema(db) == LATEST
    with db.read() as conn:
        bound = conn.execute(text("SELECT order_id, session_id, superseded_at, provider FROM provider_sessions")).all()
        column = conn.execute(text("SELECT count(*) FROM information_schema.columns WHERE "
                                   "table_name = 'verification_sessions' AND column_name = 'decision_hold_until'"
                                   )).scalar()
    assert [tuple(r) for r in bound] == [("old-1", "vs-old", None, "veriff")] and column == 1
    assert ensure_schema(db) == LATEST  # idempotent
    db.engine.dispose()
