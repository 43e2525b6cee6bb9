"""Old orders are never refunded by surprise (issue 10 item 6): a stale order opens no session,
and a session whose link email was never sent goes to a person at its deadline, not to a refund."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from shared.domain.messages import OrderPlaced, TimerPayload
from shared.handlers import intake, timers
from tests.sessions import mark_link_sent

T0 = datetime(2026, 9, 1, 12, 0, tzinfo=timezone.utc)


def rows(db, sql, **params):
    with db.read() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def refunds(db, order_id):
    return rows(db, "SELECT id FROM outbox WHERE order_id = :o AND payload->>'topic' = 'order-actions'", o=order_id)


def test_an_order_created_30_days_ago_opens_no_session_and_is_recorded(db, settings, order_id):
    order = OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com", ordered_at=T0 - timedelta(days=30))
    result = intake.place_order(db, settings, order, now=T0)
    assert result.status == "ignored"
    assert rows(db, "SELECT count(*) FROM verification_sessions WHERE order_id = :o", o=order_id) == [(0,)]
    assert rows(db, "SELECT type, data->>'ordered_at' FROM event_log WHERE order_id = :o", o=order_id) == [
        ("order.stale", (T0 - timedelta(days=30)).isoformat())]
    assert intake.place_order(db, settings, order, now=T0).status == "duplicate"
    assert timers.expire_overdue(db, now=T0 + timedelta(days=10), grace=timedelta(minutes=5)).failed == 0
    assert refunds(db, order_id) == []
    assert rows(db, "SELECT count(*) FROM outbox WHERE order_id = :o AND payload->>'topic' = 'customer-emails'",
                o=order_id) == [(0,)]


def test_an_order_within_max_order_age_opens_a_session_from_receipt(db, settings, order_id):
    order = OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com", ordered_at=T0 - timedelta(days=6))
    assert intake.place_order(db, settings, order, now=T0).status == "accepted"
    assert rows(db, "SELECT deadline FROM verification_sessions WHERE order_id = :o", o=order_id) == [
        (T0 + timedelta(hours=72),)]


def deadline(order_id):
    return TimerPayload(order_id=order_id, kind="deadline", reminder_index=0, deadline_version=1)


def test_a_session_whose_link_was_never_sent_goes_to_a_person_not_a_refund(db, settings, order_id):
    assert intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"),
                              now=T0).status == "accepted"
    result = timers.fire(db, deadline(order_id), now=T0 + timedelta(hours=72, seconds=1))
    assert result.status == "accepted"
    assert rows(db, "SELECT status FROM verification_sessions WHERE order_id = :o", o=order_id) == [("in_review",)]
    assert rows(db, "SELECT data->>'reason' FROM event_log WHERE order_id = :o AND type = 'verification.in_review'",
                o=order_id) == [("link_not_sent",)]
    assert refunds(db, order_id) == []
    assert rows(db, "SELECT count(*) FROM event_log WHERE order_id = :o AND type = 'verification.expired'",
                o=order_id) == [(0,)]


def test_the_same_session_with_its_link_sent_expires_with_one_refund(db, settings, order_id):
    intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"), now=T0)
    mark_link_sent(db, order_id)
    assert timers.fire(db, deadline(order_id), now=T0 + timedelta(hours=72, seconds=1)).status == "accepted"
    assert rows(db, "SELECT status FROM verification_sessions WHERE order_id = :o", o=order_id) == [("expired",)]
    assert len(refunds(db, order_id)) == 1
