"""Migration v14 (issue 23): a database at v12, with sessions, gains the verified-customer table
and the sessions' key columns; its sessions are kept, and verify once works on it at once."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from shared.config import Settings
from shared.db.database import Database
from shared.db.engine import make_engine
from shared.db.migrate import LATEST, ensure_schema
from shared.domain.messages import OrderPlaced
from shared.handlers import intake, transitions
from tests.conftest import CUSTOMER_KEY_SECRET

NOW = datetime.now(timezone.utc)


def test_a_database_at_v12_gains_the_records_and_keeps_its_sessions(fresh_database):
    settings = Settings.from_env({"DATABASE_URL": fresh_database, "TASKS_BACKEND": "local",
                                  "TIMER_URL": "http://127.0.0.1:1/", "EVENTS_BACKEND": "local",
                                  "CUSTOMER_KEY_SECRET": CUSTOMER_KEY_SECRET})
    db = Database(make_engine(settings.database))
    try:
        ensure_schema(db)
        with db.transaction() as conn:  # back to v12: no records, no key columns
            conn.execute(text("DELETE FROM schema_version WHERE version > 12"))
            conn.execute(text("DROP TABLE verified_customers"))
            conn.execute(text("ALTER TABLE verification_sessions DROP COLUMN customer_key, DROP COLUMN email_key"))
            conn.execute(text("INSERT INTO verification_sessions (order_id, source, customer_email, customer_id, "
                              "ordered_at, deadline) VALUES ('old-1', 'orders', 'old@example.com', 'c-1', now(), "
                              "now() + interval '72 hours')"))
        assert ensure_schema(db) == LATEST >= 14  # v13 and later steps run again, idempotent
        with db.read() as conn:
            assert conn.execute(text("SELECT customer_email, customer_key FROM verification_sessions "
                                     "WHERE order_id = 'old-1'")).one() == ("old@example.com", None)
            assert conn.execute(text("SELECT count(*) FROM verified_customers")).scalar_one() == 0
        # An order before v14 had no key: its customer verifies once more, then is remembered.
        order = lambda key: OrderPlaced("orders", f"m-{key}", key, "old@example.com", customer_id="c-1")  # noqa: E731
        assert intake.place_order(db, settings, order("new-1"), now=NOW).status == "accepted"
        assert transitions.operator_action(db, "new-1", "verify", operator="op", now=NOW, reason="id_checked_in_store",
                                           age_checked=True, reverify_after=timedelta(days=365)).status == "accepted"
        assert intake.place_order(db, settings, order("new-2"), now=NOW).status == "accepted"
        with db.read() as conn:
            assert conn.execute(text("SELECT status FROM verification_sessions WHERE order_id = 'new-2'")
                                ).scalar_one() == "verified"
        assert ensure_schema(db) == LATEST  # idempotent
    finally:
        db.engine.dispose()
