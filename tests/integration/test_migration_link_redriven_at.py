"""Migration v25: a database from before it gains `verification_sessions.link_redriven_at` as
`schema.py` defines it, keeping its sessions, and the sweeper re-drives a link never claimed once
a lease (not on every sweep once the relay delivered the last copy)."""

from __future__ import annotations

from sqlalchemy import text

from shared.config import Settings
from shared.db import migrate, redrive, schema
from shared.db.database import Database
from shared.db.engine import make_engine
from shared.db.migrate import LATEST, ensure_schema


def _columns(conn) -> dict[str, tuple[str, bool]]:
    return {name: (kind, nullable == "YES") for name, kind, nullable in conn.execute(text(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_name = 'verification_sessions'"))}


def test_a_database_before_the_step_gains_link_redriven_at_and_keeps_its_sessions(fresh_database):
    settings = Settings.from_env({"DATABASE_URL": fresh_database, "TASKS_BACKEND": "local",
                                  "TIMER_URL": "http://127.0.0.1:1/", "EVENTS_BACKEND": "local"})
    db = Database(make_engine(settings.database))
    step = migrate.MIGRATIONS.index(migrate._link_redriven_at) + 1
    assert step == 25
    try:
        ensure_schema(db)  # a new database: v1 created the column from schema.py
        with db.read() as conn:
            created = _columns(conn)
        with db.transaction() as conn:  # back to v24, a pending session whose link was never claimed
            conn.execute(text("DELETE FROM schema_version WHERE version >= :v"), {"v": step})
            conn.execute(text("ALTER TABLE verification_sessions DROP COLUMN link_redriven_at"))
            conn.execute(text("INSERT INTO verification_sessions (order_id, source, customer_email, status, "
                              "ordered_at, deadline, created_at) VALUES ('o-1', 'orders', 'a@example.com', "
                              "'pending', now() - interval '1 day', now() + interval '1 day', "
                              "now() - interval '1 day')"))
        assert ensure_schema(db) == LATEST >= step
        with db.read() as conn:
            migrated = _columns(conn)
            sessions = conn.execute(text("SELECT order_id, status, link_redriven_at FROM verification_sessions")).all()
        assert migrated == created and set(migrated) == set(schema.verification_sessions.columns.keys())
        assert migrated["link_redriven_at"] == ("timestamp with time zone", True)
        assert [tuple(s) for s in sessions] == [("o-1", "pending", None)]

        for expected in ([("o-1", "link", 0)], []):  # once a lease: the second sweep finds it re-driven
            with db.transaction() as conn:
                assert redrive.emails_to_redrive(conn, 300.0, 10) == expected
        with db.read() as conn:
            assert conn.execute(text("SELECT link_redriven_at IS NOT NULL FROM verification_sessions")).scalar()

        with db.transaction() as conn:  # the step again changes nothing (a new database runs it after v1)
            migrate._link_redriven_at(conn)
        assert ensure_schema(db) == LATEST
    finally:
        db.engine.dispose()
