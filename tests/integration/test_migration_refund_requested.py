"""Migration v21 (issue 23, lost erased refunds): a database from before it, whose sessions were
owed refunds by status only, gains `refund_requested_at`, set from the refund requests its event
log holds, so the sweep's re-drive asks again for an erased customer's cancelled order and never
for a store's own cancellation, a settled refund, or one a store's connector makes."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import text

from shared.config import Settings
from shared.db import migrate, redrive
from shared.db.database import Database
from shared.db.engine import make_engine
from shared.db.migrate import LATEST, ensure_schema

# (key, source, status, refund_status, the refund.requested event's data or None)
SESSIONS = [
    ("erased-1", "orders", "cancelled", None, {"reason": "erased"}),
    ("declined-1", "orders", "declined", None, {"reason": "underage"}),
    ("lightspeed:erased-2", "lightspeed", "cancelled", "requested", {"reason": "erased"}),  # claimed, then lost
    ("voided-1", "orders", "cancelled", None, None),  # the store cancelled first: none owed
    ("settled-1", "orders", "expired", "refunded", {"reason": "expired"}),
    ("shopify:9", "shopify", "declined", None, {"reason": "declined", "by": "shopify"}),  # the store's refund
]


def test_a_database_before_v21_learns_which_sessions_are_owed_a_refund(fresh_database):
    settings = Settings.from_env({"DATABASE_URL": fresh_database, "TASKS_BACKEND": "local",
                                  "TIMER_URL": "http://127.0.0.1:1/", "EVENTS_BACKEND": "local"})
    db = Database(make_engine(settings.database))
    step = migrate.MIGRATIONS.index(migrate._refund_requested_at) + 1
    try:
        ensure_schema(db)
        with db.transaction() as conn:  # back to before the step: the status-based index, no column
            conn.execute(text("DELETE FROM schema_version WHERE version >= :v"), {"v": step})
            conn.execute(text("DROP INDEX verification_sessions_refund_owed"))
            conn.execute(text("ALTER TABLE verification_sessions DROP COLUMN refund_requested_at"))
            conn.execute(text("CREATE INDEX verification_sessions_refund_owed ON verification_sessions (updated_at) "
                              "WHERE status IN ('declined', 'expired') "
                              "AND (refund_status IS NULL OR refund_status = 'requested')"))
            for key, source, status, refund, requested in SESSIONS:
                conn.execute(text(
                    "INSERT INTO verification_sessions (order_id, source, customer_email, ordered_at, deadline, "
                    "status, refund_status, updated_at) VALUES (:k, :s, NULL, now() - interval '4 days', "
                    "now() - interval '1 day', :st, :r, now() - interval '1 day')"),
                    {"k": key, "s": source, "st": status, "r": refund})
                if requested is not None:
                    conn.execute(text("INSERT INTO event_log (event_id, order_id, type, occurred_at, data) "
                                      "VALUES (:id, :k, 'refund.requested', now() - interval '1 day', "
                                      "CAST(:d AS jsonb))"),
                                 {"id": str(uuid.uuid4()), "k": key, "d": json.dumps(requested)})
        assert ensure_schema(db) == LATEST >= step
        with db.read() as conn:
            owed = dict(conn.execute(text("SELECT order_id, refund_requested_at IS NOT NULL "
                                          "FROM verification_sessions")).all())
        assert owed == {"erased-1": True, "declined-1": True, "lightspeed:erased-2": True, "voided-1": False,
                        "settled-1": False, "shopify:9": False}

        with db.transaction() as conn:
            redriven = sorted(redrive.refunds_to_redrive(conn, 300.0, 100))
        assert redriven == [("declined-1", "underage"), ("erased-1", "erased"), ("lightspeed:erased-2", "erased")]
        with db.transaction() as conn:  # once a lease
            assert redrive.refunds_to_redrive(conn, 300.0, 100) == []
        with db.transaction() as conn:  # the step again changes nothing (a new database runs it after v1)
            migrate._refund_requested_at(conn)
        assert ensure_schema(db) == LATEST
    finally:
        db.engine.dispose()
