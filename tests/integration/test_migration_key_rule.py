"""Migration v16 (issue 21): the key CHECK names no source, so a store added to the stores table
needs no migration; a generic order stored before with an id beginning `<word>:` (then accepted)
keeps working: a CHECK is evaluated again on every UPDATE, NOT VALID or not."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy.exc
from sqlalchemy import text

from shared.config import Settings
from shared.db import migrate
from shared.db.database import Database
from shared.db.engine import make_engine
from shared.db.migrate import LATEST, ensure_schema
from shared.errors import sqlstate

V16 = migrate.MIGRATIONS.index(migrate._keys_name_no_source) + 1
INSERT = ("INSERT INTO verification_sessions (order_id, source, customer_email, ordered_at, deadline) "
          "VALUES (:o, :s, 'x@example.com', now(), now())")


def database(url: str) -> Database:
    settings = Settings.from_env({"DATABASE_URL": url, "TASKS_BACKEND": "local",
                                  "TIMER_URL": "http://127.0.0.1:1/", "EVENTS_BACKEND": "local"})
    return Database(make_engine(settings.database))


@pytest.fixture
def before_v16(fresh_database):
    """A database at v15 with v12's key rule, holding a generic order `inv:5` (v12 allowed it)."""
    db = database(fresh_database)
    ensure_schema(db)
    with db.transaction() as conn:
        conn.execute(text("DELETE FROM schema_version WHERE version >= :v"), {"v": V16})
        conn.execute(text("ALTER TABLE verification_sessions DROP CONSTRAINT verification_sessions_key_source"))
        conn.execute(text("ALTER TABLE verification_sessions ADD CONSTRAINT verification_sessions_key_source "
                          f"CHECK ({migrate._V12_KEY_RULE}) NOT VALID"))
        conn.execute(text(INSERT), {"o": "inv:5", "s": "orders"})
    yield db
    db.engine.dispose()


def refused(db, key: str, source: str) -> bool:
    try:
        with db.transaction() as conn:
            conn.execute(text(INSERT), {"o": key, "s": source})
    except sqlalchemy.exc.DBAPIError as exc:
        assert sqlstate(exc) == "23514"  # check_violation
        return True
    return False


@pytest.mark.parametrize("key, source, refuse", [
    ("acme:1", "acme", False), ("shopify:1", "shopify", False), ("A-1", "orders", False), ("Acme:1", "orders", False),
    ("1", "acme", True), ("shopify:1", "acme", True), ("acme:1", "orders", True), ("new_store:1", "orders", True),
    ("Acme:1", "Acme", True),  # a source is named in lower-case words
])
def test_the_rule_names_no_source(fresh_database, key, source, refuse):
    db = database(fresh_database)
    try:
        assert ensure_schema(db) == LATEST
        assert refused(db, key, source) is refuse
    finally:
        db.engine.dispose()


def test_a_legacy_generic_key_stays_valid_and_a_new_one_is_refused(before_v16):
    db = before_v16
    assert ensure_schema(db) == LATEST
    with db.transaction() as conn:  # a later change of the old session is taken
        conn.execute(text("UPDATE verification_sessions SET status = 'cancelled', updated_at = now() "
                          "WHERE order_id = 'inv:5'"))
    assert refused(db, "inv:6", "orders") and refused(db, "acme:1", "orders")
    assert not refused(db, "acme:1", "acme")
    with db.read() as conn:
        rule = conn.execute(text("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                                 "WHERE conname = 'verification_sessions_key_source'")).scalar_one()
    assert "NOT VALID" in rule and "created_at" in rule


def test_without_legacy_keys_v16_writes_the_schemas_rule(fresh_database):
    db = database(fresh_database)
    try:
        ensure_schema(db)
        with db.read() as conn:
            rule = conn.execute(text("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                                     "WHERE conname = 'verification_sessions_key_source'")).scalar_one()
        assert "created_at" not in rule and "lightspeed" not in rule and "starts_with" in rule
    finally:
        db.engine.dispose()


def test_the_legacy_bound_is_the_newest_legacy_row():
    when = datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
    assert migrate._v16_key_rule(None) == migrate._V16_KEY_RULE
    assert migrate._v16_key_rule(when).endswith("created_at <= '2026-12-01T10:00:00+00:00'::timestamptz)")
