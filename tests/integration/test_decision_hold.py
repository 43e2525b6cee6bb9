"""A customer who submitted before the deadline is not expired while the provider decides
(issue 10 item 3): the deadline waits for the decision up to DECISION_GRACE past it."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from sqlalchemy import text

from shared.db import redrive
from shared.domain.messages import OrderPlaced, ProviderDecision, ProviderEvent, TimerPayload
from shared.domain.model import Decision, ProviderEventKind
from shared.handlers import intake, timers
from tests.sessions import bind_provider_session, mark_link_sent

T0 = datetime(2026, 10, 1, 12, 0, tzinfo=timezone.utc)
DEADLINE = T0 + timedelta(hours=72)
GRACE = timedelta(hours=24)  # the default DECISION_GRACE


def open_session(db, settings, order_id):
    assert intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"),
                              now=T0).status == "accepted"
    bind_provider_session(db, order_id, f"vs-{order_id}")
    mark_link_sent(db, order_id)


def submit(db, settings, order_id, at):
    event = ProviderEvent("veriff", f"vs-{order_id}:7002:{at.isoformat()}", order_id,
                          ProviderEventKind.SUBMITTED, f"vs-{order_id}")
    return intake.record_provider_event(db, settings, event, now=at)


def fire_deadline(db, order_id, at):
    return timers.fire(db, TimerPayload(order_id=order_id, kind="deadline", reminder_index=0, deadline_version=1),
                       now=at)


def overdue(db, order_id, now, sweep_grace=timedelta(minutes=5)) -> bool:
    with db.read() as conn:
        return order_id in redrive.overdue_sessions(conn, now - sweep_grace, 1_000_000)


def status_of(db, order_id):
    with db.read() as conn:
        return conn.execute(text("SELECT status FROM verification_sessions WHERE order_id = :o"),
                            {"o": order_id}).scalar_one()


def test_submitted_before_the_deadline_waits_for_the_decision(db, settings, order_id):
    open_session(db, settings, order_id)
    assert submit(db, settings, order_id, DEADLINE - timedelta(hours=1)).status == "accepted"
    assert fire_deadline(db, order_id, DEADLINE + timedelta(seconds=1)).status == "ignored"
    assert status_of(db, order_id) == "pending"
    assert not overdue(db, order_id, DEADLINE + GRACE - timedelta(minutes=1))
    decision = ProviderDecision("veriff", f"d-{order_id}", order_id, Decision.APPROVED, f"vs-{order_id}", 9001,
                                birth_date=date(1990, 1, 1), decided_at=DEADLINE + timedelta(hours=20))
    assert intake.record_decision(db, settings, decision, now=DEADLINE + timedelta(hours=20)).status == "accepted"
    assert status_of(db, order_id) == "verified"


def test_submitted_without_a_decision_expires_at_deadline_plus_grace(db, settings, order_id):
    open_session(db, settings, order_id)
    submit(db, settings, order_id, DEADLINE - timedelta(minutes=1))
    assert timers.expire(db, order_id, now=DEADLINE + GRACE - timedelta(seconds=1)).status == "ignored"
    sweep_at = DEADLINE + GRACE + timedelta(minutes=6)
    assert overdue(db, order_id, sweep_at)
    assert timers.expire(db, order_id, now=sweep_at, actor="sweeper").status == "accepted"
    assert status_of(db, order_id) == "expired"


def test_submitted_after_the_deadline_holds_nothing(db, settings, order_id):
    open_session(db, settings, order_id)
    assert submit(db, settings, order_id, DEADLINE + timedelta(seconds=1)).status == "accepted"
    assert fire_deadline(db, order_id, DEADLINE + timedelta(seconds=2)).status == "accepted"
    assert status_of(db, order_id) == "expired"


def test_a_resubmission_request_releases_the_hold(db, settings, order_id):
    open_session(db, settings, order_id)
    submit(db, settings, order_id, DEADLINE - timedelta(hours=2))
    resubmit = ProviderDecision("veriff", f"r-{order_id}", order_id, Decision.RESUBMISSION_REQUESTED,
                                f"vs-{order_id}", 9103)
    assert intake.record_decision(db, settings, resubmit, now=DEADLINE - timedelta(hours=1)).status == "accepted"
    assert fire_deadline(db, order_id, DEADLINE + timedelta(seconds=1)).status == "accepted"
    assert status_of(db, order_id) == "expired"


def test_a_customer_who_submitted_gets_no_reminder_while_the_provider_decides(db, settings, order_id):
    """The reminder (24 h after the order) fires while the customer's submission awaits its
    decision: the session is still pending, but "verify your age" is wrong by then."""
    open_session(db, settings, order_id)
    assert submit(db, settings, order_id, T0 + timedelta(hours=23)).status == "accepted"
    reminder = TimerPayload(order_id=order_id, kind="reminder", reminder_index=0, deadline_version=1)
    assert timers.fire(db, reminder, now=T0 + timedelta(hours=24)).status == "ignored"
    with db.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM outbox WHERE order_id = :o "
                                 "AND payload->'data'->>'kind' = 'reminder'"), {"o": order_id}).scalar_one() == 0
