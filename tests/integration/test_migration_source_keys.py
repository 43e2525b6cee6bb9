"""Migration v8 (issue 10 item 5): a database whose Lightspeed sales were keyed by their bare sale id
moves each to `lightspeed:<sale id>` in every table, its scheduled timers to tasks of the new names,
and a decision for a provider session opened before (vendorData = the bare id) still binds."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
import sqlalchemy.exc
from sqlalchemy import text

from shared.config import Settings
from shared.db.database import Database
from shared.db.engine import make_engine
from shared.db.migrate import LATEST, ensure_schema
from shared.domain.messages import IgnoredDelivery, OrderPlaced, ProviderDecision
from shared.domain.model import Decision, task_name
from shared.errors import sqlstate
from shared.handlers import intake
from tests.sessions import bind_provider_session, mark_link_sent

NOW = datetime.now(timezone.utc)


@pytest.fixture
def migrated(fresh_database):
    """A database at v7 holding what the code before v8 wrote, then brought to LATEST."""
    settings = Settings.from_env({"DATABASE_URL": fresh_database, "TASKS_BACKEND": "local",
                                  "TIMER_URL": "http://127.0.0.1:1/", "EVENTS_BACKEND": "local"})
    db = Database(make_engine(settings.database))
    ensure_schema(db)
    with db.transaction() as conn:  # back to v7: no key constraint
        conn.execute(text("DELETE FROM schema_version WHERE version > 7"))
        conn.execute(text("ALTER TABLE verification_sessions DROP CONSTRAINT verification_sessions_key_source"))
    # Before v8 a sale's key was its bare id ...
    assert intake.place_order(db, settings, OrderPlaced("lightspeed", "S-1:CLOSED:1", "S-1", "till@example.com"),
                              now=NOW).status == "accepted"
    bind_provider_session(db, "S-1", "vs-S-1")  # its link: vendorData "S-1"
    mark_link_sent(db, "S-1")
    # ... so a generic order with the same id was swallowed as a duplicate,
    assert intake.place_order(db, settings, OrderPlaced("orders", "msg-S-1", "S-1", "web@example.com"),
                              now=NOW).status == "duplicate"
    # a walk-in sale was recorded under its bare id, and a generic order stands apart.
    intake.record_ignored(db, settings, IgnoredDelivery("lightspeed", "W-1:CLOSED:", "W-1", "no_customer_email"),
                          now=NOW)
    assert intake.place_order(db, settings, OrderPlaced("orders", "msg-G-1", "G-1", "g@example.com"),
                              now=NOW).status == "accepted"
    with db.read() as conn:
        before = dict(conn.execute(text("SELECT * FROM verification_sessions WHERE order_id = 'S-1'")).mappings().one())
    assert ensure_schema(db) == LATEST
    yield db, settings, before
    db.engine.dispose()


def rows(db, sql: str, **params) -> list[tuple]:
    with db.read() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def test_a_bare_sale_key_moves_to_its_source_key_in_every_table(migrated):
    db, _, before = migrated
    with db.read() as conn:
        after = dict(conn.execute(text("SELECT * FROM verification_sessions WHERE order_id = 'lightspeed:S-1'"))
                     .mappings().one())
    assert after == {**before, "order_id": "lightspeed:S-1"}
    assert rows(db, "SELECT order_id, source FROM verification_sessions WHERE order_id IN ('S-1', 'G-1') "
                    "ORDER BY 1") == [("G-1", "orders")]
    assert rows(db, "SELECT order_id, session_id FROM provider_sessions WHERE session_id = 'vs-S-1'") == [
        ("lightspeed:S-1", "vs-S-1")]
    assert rows(db, "SELECT order_id, kind, state FROM email_sends WHERE order_id LIKE '%S-1'") == [
        ("lightspeed:S-1", "link", "sent")]
    for table in ("countdown_timers", "email_sends", "provider_sessions", "outbox"):
        assert rows(db, f"SELECT count(*) FROM {table} WHERE order_id = 'S-1'") == [(0,)], table
    assert rows(db, "SELECT provider, event_id FROM webhook_events WHERE order_id = 'S-1'") == [
        ("orders", "msg-S-1")]  # the generic order's delivery
    # Events: the sale's move with it; the generic order's duplicate stays under the generic id.
    assert rows(db, "SELECT type FROM event_log WHERE order_id = 'lightspeed:S-1' ORDER BY id") == [
        ("order.received",), ("verification.requested",)]
    assert rows(db, "SELECT type, data->>'provider' FROM event_log WHERE order_id = 'S-1'") == [
        ("order.duplicate", "orders")]
    assert rows(db, "SELECT order_id, type FROM event_log WHERE order_id LIKE '%W-1'") == [
        ("lightspeed:W-1", "order.ignored")]
    assert rows(db, "SELECT provider, order_id FROM webhook_events WHERE event_id LIKE 'S-1:%' "
                    "OR event_id LIKE 'W-1:%' ORDER BY 2") == [
        ("lightspeed", "lightspeed:S-1"), ("lightspeed", "lightspeed:W-1")]


def test_timers_take_new_task_names_and_the_outbox_moves_the_cloud_tasks(migrated):
    db, _, _ = migrated
    timers = rows(db, "SELECT kind, reminder_index, deadline_version, task_name, state FROM countdown_timers "
                      "WHERE order_id = 'lightspeed:S-1' ORDER BY kind")
    assert [t[0] for t in timers] == ["deadline", "reminder"]
    for kind, index, version, name, state in timers:  # the SQL of v8 computes model.task_name's names
        assert name == task_name("lightspeed:S-1", kind, index, version) and state == "scheduled"
    old = {task_name("S-1", kind, index, version) for kind, index, version, *_ in timers}
    moves = rows(db, "SELECT kind, payload->>'name', payload->'body'->>'order_id' FROM outbox "
                     "WHERE order_id = 'lightspeed:S-1' AND kind LIKE 'task.%' AND delivered_at IS NULL "
                     "AND id > (SELECT max(id) FROM outbox WHERE payload->'attributes'->>'type' = 'order.received' "
                     "AND order_id = 'lightspeed:S-1') ORDER BY id")
    assert {name for kind, name, _ in moves if kind == "task.delete"} >= old
    assert {(name, body) for kind, name, body in moves if kind == "task.create"} >= {
        (t[3], "lightspeed:S-1") for t in timers}
    # Every outbox row of the sale names it by its new key, in its messages and task bodies too.
    assert rows(db, """
        SELECT count(*) FROM outbox WHERE order_id = 'lightspeed:S-1' AND (
            (kind = 'publish' AND (payload->>'ordering_key' <> 'lightspeed:S-1'
                                   OR payload->'attributes'->>'order_id' <> 'lightspeed:S-1'
                                   OR coalesce(payload->'data'->>'order_id', 'lightspeed:S-1') <> 'lightspeed:S-1'))
            OR (kind = 'task.create' AND payload->'body'->>'order_id' <> 'lightspeed:S-1'))""") == [(0,)]


def test_after_v8_the_same_generic_id_opens_its_own_session_and_a_legacy_link_still_binds(migrated):
    db, settings, _ = migrated
    generic = intake.place_order(db, settings, OrderPlaced("orders", "msg-S-1-again", "S-1", "web@example.com"),
                                 now=NOW)
    assert generic.status == "accepted"  # no key, timer or task name shared with the sale
    # Veriff still sends the bare id the link was opened with: the provider session says whose it is.
    approved = intake.record_decision(db, settings, ProviderDecision(
        "veriff", "vs-S-1:9001:", "S-1", Decision.APPROVED, "vs-S-1", 9001, birth_date=date(1990, 1, 1)), now=NOW)
    assert (approved.status, approved.order_id) == ("accepted", "lightspeed:S-1")
    assert rows(db, "SELECT order_id, status FROM verification_sessions WHERE order_id IN ('S-1', 'lightspeed:S-1') "
                    "ORDER BY 1") == [("S-1", "pending"), ("lightspeed:S-1", "verified")]


def test_v8_is_idempotent(migrated):
    db, _, _ = migrated
    with db.transaction() as conn:
        conn.execute(text("DELETE FROM schema_version WHERE version > 7"))
    assert ensure_schema(db) == LATEST
    assert rows(db, "SELECT order_id FROM verification_sessions WHERE source = 'lightspeed'") == [("lightspeed:S-1",)]
    assert rows(db, "SELECT count(*) FROM countdown_timers WHERE order_id = 'lightspeed:S-1'") == [(2,)]


@pytest.mark.parametrize("key, source", [
    ("S-2", "lightspeed"), ("lightspeed:S-2", "orders"),
    # v12: Shopify and WooCommerce orders are namespaced too
    ("1001", "shopify"), ("shopify:1001", "orders"), ("woocommerce:7", "shopify"), ("shopify:7", "woocommerce"),
])
def test_after_v8_the_database_refuses_a_key_that_does_not_match_its_source(migrated, key, source):
    db, _, _ = migrated
    with pytest.raises(sqlalchemy.exc.DBAPIError) as refused, db.transaction() as conn:
        conn.execute(text("INSERT INTO verification_sessions (order_id, source, customer_email, ordered_at, deadline) "
                          "VALUES (:o, :s, 'x@example.com', now(), now())"), {"o": key, "s": source})
    assert sqlstate(refused.value) == "23514"  # check_violation


@pytest.mark.parametrize("key, source", [("shopify:1001", "shopify"), ("woocommerce:7", "woocommerce"), ("G-9", "orders")])
def test_after_v12_a_store_order_keyed_by_its_source_is_taken(migrated, key, source):
    db, _, _ = migrated
    with db.transaction() as conn:
        conn.execute(text("INSERT INTO verification_sessions (order_id, source, customer_email, ordered_at, deadline) "
                          "VALUES (:o, :s, 'x@example.com', now(), now())"), {"o": key, "s": source})
    assert rows(db, "SELECT source FROM verification_sessions WHERE order_id = :o", o=key) == [(source,)]
