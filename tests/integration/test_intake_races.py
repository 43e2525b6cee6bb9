"""Idempotency under real concurrency: threads, each with its own pooled connection."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timezone

from sqlalchemy import text

from shared.domain.messages import OrderPlaced, ProviderDecision, StoreCancelled
from shared.domain.model import Decision
from shared.db import sessions
from shared.handlers import intake
from tests.sessions import bind_provider_session


def counts(db, order_id):
    with db.read() as conn:
        return {
            table: conn.execute(text(f"SELECT count(*) FROM {table} WHERE order_id = :o"), {"o": order_id}).scalar()
            for table in ("verification_sessions", "webhook_events", "countdown_timers", "event_log", "outbox")
        }


def run_together(n, fn):
    """Start n calls at the same instant (barrier) on n threads; return their results."""
    barrier = threading.Barrier(n)

    def call(i):
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(call, range(n)))


def test_sixteen_concurrent_deliveries_of_one_event_accept_once(db, settings, order_id):
    command = OrderPlaced("orders", f"msg_{uuid.uuid4().hex}", order_id, "a@example.com")
    now = datetime.now(timezone.utc)
    results = run_together(16, lambda i: intake.place_order(db, settings, command, now=now).status)
    assert Counter(results) == {"accepted": 1, "duplicate": 15}
    assert counts(db, order_id) == {"verification_sessions": 1, "webhook_events": 1,
                                    "countdown_timers": 2, "event_log": 2, "outbox": 5}
    with db.read() as conn:
        assert conn.execute(text("SELECT deliveries FROM webhook_events WHERE order_id = :o"),
                            {"o": order_id}).scalar() == 16


def test_sixteen_concurrent_event_ids_for_one_order_open_one_session(db, settings, order_id):
    now = datetime.now(timezone.utc)
    results = run_together(16, lambda i: intake.place_order(
        db, settings, OrderPlaced("orders", f"msg_{i}_{order_id}", order_id, "a@example.com"), now=now).status)
    assert Counter(results) == {"accepted": 1, "duplicate": 15}
    c = counts(db, order_id)
    assert (c["verification_sessions"], c["webhook_events"], c["countdown_timers"]) == (1, 16, 2)
    with db.read() as conn:
        types = Counter(conn.execute(text("SELECT type FROM event_log WHERE order_id = :o"),
                                     {"o": order_id}).scalars())
    assert types == {"order.received": 1, "verification.requested": 1, "order.duplicate": 15}


def test_concurrent_approve_decline_and_cancel_end_in_one_terminal_state(db, settings):
    """For many orders, three closing inputs race; exactly one wins each time."""
    now = datetime.now(timezone.utc)
    orders = [f"race-{uuid.uuid4().hex[:10]}" for _ in range(20)]
    for order_id in orders:
        intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"), now=now)
        bind_provider_session(db, order_id, "v")  # the provider session the decisions refer to

    def closing_input(i, order_id):
        if i == 0:
            return intake.record_decision(db, settings, ProviderDecision(
                "veriff", f"a-{order_id}", order_id, Decision.APPROVED, "v", 9001, birth_date=date(1990, 1, 1)),
                now=now)
        if i == 1:
            return intake.record_decision(db, settings, ProviderDecision(
                "veriff", f"d-{order_id}", order_id, Decision.DECLINED, "v", 9102), now=now)
        return intake.cancel_order(db, settings, StoreCancelled("lightspeed", f"c-{order_id}", order_id), now=now)

    for order_id in orders:
        results = run_together(3, lambda i: closing_input(i, order_id).status)
        assert Counter(results) == {"accepted": 1, "ignored": 2}
        with db.read() as conn:
            status = conn.execute(text("SELECT status FROM verification_sessions WHERE order_id = :o"),
                                  {"o": order_id}).scalar()
            terminal_events = conn.execute(text(
                "SELECT count(*) FROM event_log WHERE order_id = :o AND type IN "
                "('verification.approved', 'verification.declined', 'order.cancelled')"), {"o": order_id}).scalar()
            refunds = conn.execute(text(
                "SELECT count(*) FROM outbox WHERE order_id = :o AND payload->>'topic' = 'order-actions'"),
                {"o": order_id}).scalar()
            deletes = conn.execute(text(
                "SELECT count(*) FROM outbox WHERE order_id = :o AND kind = 'task.delete'"), {"o": order_id}).scalar()
        assert status in ("verified", "declined", "cancelled")
        assert terminal_events == 1
        assert refunds == (1 if status == "declined" else 0)
        assert deletes == 2  # each timer's task deleted once, by the winner


def test_order_events_record_their_actor(db, settings, order_id):
    """place_order (PL/pgSQL) writes the same event columns as every other writer, actor included."""
    now = datetime.now(timezone.utc)
    key = f"lightspeed:{order_id}"  # a sale's session key (shared.domain.keys)
    order = OrderPlaced("lightspeed", f"m-{order_id}", key, "a@example.com")
    intake.place_order(db, settings, order, now=now)
    intake.place_order(db, settings, OrderPlaced("lightspeed", f"m2-{order_id}", key, "a@example.com"), now=now)
    with db.read() as conn:
        actors = conn.execute(text("SELECT type, actor FROM event_log WHERE order_id = :o ORDER BY id"),
                              {"o": key}).all()
    assert [tuple(a) for a in actors] == [("order.received", "lightspeed"), ("verification.requested", "lightspeed"),
                                          ("order.duplicate", "lightspeed")]


def test_a_void_racing_the_paid_sale_it_cancels_opens_nothing(db, settings, order_id, monkeypatch):
    """A sale voided as it was paid: the VOIDED finds no session yet and is recorded; the CLOSED,
    processed while the void's transaction is still open, must not open a session behind it.
    The void is held right after it found no session (its transaction open) while the CLOSED
    runs; without the order's lock the CLOSED opened the session then."""
    key = f"lightspeed:{order_id}"
    now = datetime.now(timezone.utc)
    checked, placed = threading.Event(), threading.Event()
    real_status = sessions.session_status

    def held_status(conn, oid):
        status = real_status(conn, oid)
        if threading.current_thread().name == "void":
            checked.set()
            placed.wait(2)  # the CLOSED runs now, unless the void's lock holds it back
        return status

    monkeypatch.setattr(sessions, "session_status", held_status)
    voided = []
    void = threading.Thread(name="void", target=lambda: voided.append(intake.cancel_order(
        db, settings, StoreCancelled("lightspeed", f"{order_id}:VOIDED:2", key), now=now)))
    void.start()
    assert checked.wait(30)
    paid = intake.place_order(db, settings, OrderPlaced("lightspeed", f"{order_id}:CLOSED:1", key, "a@example.com"),
                              now=now)
    placed.set()
    void.join(30)
    assert voided[0].status == "ignored"
    assert paid.status == "ignored" and paid.detail == "cancelled_by_store"
    c = counts(db, key)
    assert (c["verification_sessions"], c["countdown_timers"]) == (0, 0)
    with db.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM outbox WHERE order_id = :o AND payload->>'topic' <> "
                                 "'verification-events'"), {"o": key}).scalar() == 0  # no link email, no refund
