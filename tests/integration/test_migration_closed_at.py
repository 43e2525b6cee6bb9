"""Migration v19 (issue 24 item 12): a database from before our own close time gains `closed_at`;
its closed sessions get their decision time capped at their last update (a `decisionTime` in
the future no longer delays their erasure), open ones none; retention then counts from it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from shared.config import Settings
from shared.db.database import Database
from shared.db.engine import make_engine
from shared.db.migrate import LATEST, MIGRATIONS, ensure_schema
from shared.handlers import retention

NOW = datetime.now(timezone.utc)
BEFORE = MIGRATIONS.index(next(m for m in MIGRATIONS if m.__name__ == "_closed_at"))  # the version before it


def test_a_database_before_closed_at_gains_it_from_its_decision_times(fresh_database):
    settings = Settings.from_env({"DATABASE_URL": fresh_database, "TASKS_BACKEND": "local",
                                  "TIMER_URL": "http://127.0.0.1:1/", "EVENTS_BACKEND": "local",
                                  "CUSTOMER_KEY_SECRET": "x" * 32})
    db = Database(make_engine(settings.database))
    try:
        ensure_schema(db)
        with db.transaction() as conn:  # back before v19: no close time, the old index
            conn.execute(text("DELETE FROM schema_version WHERE version > :v"), {"v": BEFORE})
            conn.execute(text("DROP INDEX verification_sessions_to_erase"))
            conn.execute(text("ALTER TABLE verification_sessions DROP COLUMN closed_at"))
            conn.execute(text("CREATE INDEX verification_sessions_to_erase ON verification_sessions "
                              "(coalesce(decided_at, updated_at)) WHERE erased_at IS NULL "
                              "AND status IN ('verified', 'declined', 'expired', 'cancelled')"))
            for key, status, decided, updated in (
                    # a decisionTime in the future
                    ("future", "declined", NOW + timedelta(days=300), NOW - timedelta(days=95)),
                    ("past", "verified", NOW - timedelta(days=100), NOW - timedelta(days=91)),
                    ("recent", "verified", NOW - timedelta(days=200), NOW - timedelta(days=10)),
                    ("open", "in_review", None, NOW - timedelta(days=95))):
                conn.execute(text("INSERT INTO verification_sessions (order_id, source, customer_email, ordered_at, "
                                  "deadline, status, decided_at, updated_at) VALUES (:o, 'orders', :e, :u, :u, :s, "
                                  ":d, :u)"), {"o": key, "e": f"{key}@example.com", "s": status, "d": decided,
                                               "u": updated})
        assert ensure_schema(db) == LATEST
        with db.read() as conn:
            closed = dict(conn.execute(text("SELECT order_id, closed_at FROM verification_sessions")).all())
            index = conn.execute(text("SELECT indexdef FROM pg_indexes "
                                      "WHERE indexname = 'verification_sessions_to_erase'")).scalar_one()
        assert closed == {"future": NOW - timedelta(days=95), "past": NOW - timedelta(days=100),
                          "recent": NOW - timedelta(days=200), "open": None}
        assert "closed_at" in index and "decided_at" not in index

        retention.purge(db, settings, now=NOW)
        with db.read() as conn:
            erased = dict(conn.execute(text("SELECT order_id, customer_email IS NULL "
                                            "FROM verification_sessions")).all())
        # `recent` was decided 200 days ago by the provider's clock but updated 10 days ago: its
        # close is taken as the earlier time, never later than it happened.
        assert erased == {"future": True, "past": True, "recent": True, "open": True}
        assert ensure_schema(db) == LATEST  # idempotent
    finally:
        db.engine.dispose()
