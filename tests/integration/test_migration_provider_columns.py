"""Migration v22 (issue 22, item 5: the ID provider behind a seam): a database at v21, whose
sessions name Veriff in their columns, gets neutral names (`provider_session_id`,
`provider_url`) and a `provider` column on its sessions and provider sessions, every row from
before being Veriff's; its rows survive, renamed, and a decision for a link sent before still
binds."""

from __future__ import annotations

from sqlalchemy import text

from shared.config import Settings
from shared.db import migrate, sessions
from shared.db.database import Database
from shared.db.engine import make_engine
from shared.db.migrate import LATEST, ensure_schema


def _columns(conn, table: str) -> set[str]:
    return set(conn.execute(text("SELECT column_name FROM information_schema.columns "
                                 "WHERE table_schema = current_schema() AND table_name = :t"), {"t": table}).scalars())


def test_a_version_21_database_gets_neutral_provider_columns_and_keeps_its_rows(fresh_database):
    settings = Settings.from_env({"DATABASE_URL": fresh_database, "TASKS_BACKEND": "local",
                                  "TIMER_URL": "http://127.0.0.1:1/", "EVENTS_BACKEND": "local"})
    db = Database(make_engine(settings.database))
    step = migrate.MIGRATIONS.index(migrate._neutral_provider_columns) + 1
    assert step == 22
    try:
        ensure_schema(db)
        with db.transaction() as conn:  # back to v21: Veriff's names, no provider columns
            conn.execute(text("DELETE FROM schema_version WHERE version >= :v"), {"v": step})
            conn.execute(text("ALTER TABLE verification_sessions DROP COLUMN provider"))
            conn.execute(text("ALTER TABLE provider_sessions DROP COLUMN provider"))
            conn.execute(text("ALTER TABLE verification_sessions RENAME COLUMN provider_session_id TO veriff_session_id"))
            conn.execute(text("ALTER TABLE verification_sessions RENAME COLUMN provider_url TO veriff_url"))
            conn.execute(text("""
                INSERT INTO verification_sessions (order_id, source, customer_email, ordered_at, deadline,
                                                   veriff_session_id, veriff_url)
                VALUES ('linked-1', 'orders', 'a@example.com', now(), now() + interval '1 day',
                        'vs-2', 'https://veriff.example/vs-2'),
                       ('unlinked-1', 'orders', 'b@example.com', now(), now() + interval '1 day', NULL, NULL)"""))
            conn.execute(text("INSERT INTO provider_sessions (order_id, session_id, superseded_at) "
                              "VALUES ('linked-1', 'vs-1', now()), ('linked-1', 'vs-2', NULL)"))
        assert ensure_schema(db) == LATEST >= step
        with db.read() as conn:
            columns = _columns(conn, "verification_sessions")
            rows = conn.execute(text("SELECT order_id, provider_session_id, provider_url, provider "
                                     "FROM verification_sessions ORDER BY order_id")).all()
            bound = conn.execute(text("SELECT session_id, provider, superseded_at IS NOT NULL FROM provider_sessions "
                                      "ORDER BY session_id")).all()
            nullable = dict(conn.execute(text(
                "SELECT table_name, is_nullable FROM information_schema.columns WHERE table_schema = "
                "current_schema() AND column_name = 'provider' AND table_name IN "
                "('verification_sessions', 'provider_sessions')")).all())
            assert sessions.provider_session_state(conn, "linked-1", "veriff", "vs-2") == "current"
            assert sessions.provider_session_state(conn, "linked-1", "veriff", "vs-1") == "superseded"
            assert sessions.provider_session_state(conn, "linked-1", "acme", "vs-2") == "unknown"
        assert {"provider_session_id", "provider_url", "provider"} <= columns
        assert not {"veriff_session_id", "veriff_url"} & columns
        assert [tuple(r) for r in rows] == [("linked-1", "vs-2", "https://veriff.example/vs-2", "veriff"),
                                            ("unlinked-1", None, None, "veriff")]
        assert [tuple(r) for r in bound] == [("vs-1", "veriff", True), ("vs-2", "veriff", False)]
        assert nullable == {"verification_sessions": "NO", "provider_sessions": "NO"}
        with db.transaction() as conn:  # a new session's provider is set when its link is created
            conn.execute(text("INSERT INTO verification_sessions (order_id, source, customer_email, ordered_at, "
                              "deadline) VALUES ('new-1', 'orders', 'c@example.com', now(), now() + interval '1 day')"))
            assert conn.execute(text("SELECT provider FROM verification_sessions WHERE order_id = 'new-1'")
                                ).scalar_one() == ""
            sessions.set_provider_session(conn, "new-1", "acme", "as-1", "https://acme.example/as-1")
            assert conn.execute(text("SELECT provider FROM verification_sessions WHERE order_id = 'new-1'")
                                ).scalar_one() == "acme"
        with db.transaction() as conn:  # the step again changes nothing (a new database runs it after v1)
            migrate._neutral_provider_columns(conn)
        assert ensure_schema(db) == LATEST
    finally:
        db.engine.dispose()
