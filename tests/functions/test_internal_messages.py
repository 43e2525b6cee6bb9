"""Internal messages are checked, not trusted (issue 10 item 7): an unknown timer kind or order
action is a permanent error that moves nothing; refunds only for declined or expired sessions;
outcome emails only when the status matches; MAX_MESSAGE_AGE never drops a refund request."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from tests.fakes.http_server import FakeHttpServer, Reply
from tests.functions.conftest import client_for, count
from tests.functions.test_subscribers import deliver, email_job, place, smtp  # noqa: F401 (fixture)
from tests.functions.test_timer_and_sweep import fire
from tests.sessions import mark_link_sent


def set_status(db, order_id, status, *, overdue=False):
    with db.transaction() as conn:
        conn.execute(text("UPDATE verification_sessions SET status = :s, "
                          "deadline = CASE WHEN :overdue THEN now() - interval '1 hour' ELSE deadline END "
                          "WHERE order_id = :o"), {"s": status, "o": order_id, "overdue": overdue})


def session(db, order_id):
    with db.read() as conn:
        return conn.execute(text("SELECT status, refund_status FROM verification_sessions WHERE order_id = :o"),
                            {"o": order_id}).one()


@pytest.mark.parametrize("kind", ["expire", "Deadline", "deadline ", "refund", ""])
def test_an_unknown_timer_kind_is_acknowledged_and_moves_nothing(app_env, db, settings, order_id, kind):
    place(db, settings, order_id)
    mark_link_sent(db, order_id)
    set_status(db, order_id, "pending", overdue=True)  # a real deadline timer would expire it now
    body = json.dumps({"v": 1, "order_id": order_id, "kind": kind, "reminder_index": 0,
                       "deadline_version": 1}).encode()
    response = fire(client_for("timer_expiry"), body)
    assert response.status_code == 200 and response.json["status"] == "ignored"
    assert session(db, order_id) == ("pending", None)
    assert count(db, "SELECT count(*) FROM event_log WHERE order_id = :o AND type = 'verification.expired'",
                 o=order_id) == 0
    # The same order with a real deadline timer does expire: the rejection was the kind's.
    good = json.dumps({"v": 1, "order_id": order_id, "kind": "deadline", "reminder_index": 0,
                       "deadline_version": 1}).encode()
    assert fire(client_for("timer_expiry"), good).json["status"] == "accepted"
    assert session(db, order_id)[0] == "expired"


@pytest.fixture
def refund_api(app_env):
    with FakeHttpServer(*[Reply(200, {"status": "refunded"})] * 3) as api:
        app_env(REFUND_BACKEND="http", REFUND_API_URL=api.url + "/refunds", REFUND_API_TOKEN="tok",
                MAX_MESSAGE_AGE="1h")
        yield api


def refund(order_id, action="refund", reason="expired"):
    return {"v": 1, "order_id": order_id, "action": action, "reason": reason}


@pytest.mark.parametrize("action", ["cancel", "refund_all", "REFUND"])
def test_an_unknown_order_action_is_acknowledged_and_refunds_nothing(refund_api, db, settings, order_id, action):
    place(db, settings, order_id)
    set_status(db, order_id, "expired")
    client = client_for("request_refund", "cloudevent")
    assert deliver(client, "order-actions", refund(order_id, action), key=f"{order_id}:x").status_code == 200
    assert refund_api.requests == [] and session(db, order_id) == ("expired", None)


@pytest.mark.parametrize("status", ["verified", "pending", "in_review", "cancelled"])
def test_no_refund_for_a_session_that_is_not_declined_or_expired(refund_api, db, settings, order_id, status):
    place(db, settings, order_id)
    set_status(db, order_id, status)
    client = client_for("request_refund", "cloudevent")
    assert deliver(client, "order-actions", refund(order_id), key=f"{order_id}:refund").status_code == 200
    assert refund_api.requests == [] and session(db, order_id) == (status, None)


@pytest.mark.parametrize("status", ["declined", "expired"])
def test_a_refund_request_older_than_max_message_age_is_still_processed(refund_api, db, settings, order_id,
                                                                        status):
    place(db, settings, order_id)
    set_status(db, order_id, status)
    client = client_for("request_refund", "cloudevent")
    old = datetime.now(timezone.utc) - timedelta(hours=5)
    assert deliver(client, "order-actions", refund(order_id, reason=status), key=f"{order_id}:refund",
                   published=old).status_code == 200
    assert [r.headers["idempotency-key"] for r in refund_api.requests] == [f"refund-{order_id}"]
    assert session(db, order_id) == (status, "refunded")


def test_an_analytics_event_older_than_max_message_age_is_still_counted(app_env, db):
    from shared.handlers.analytics import funnel
    app_env(MAX_MESSAGE_AGE="1h")
    day = datetime(2034, 2, 3, 9, 0, tzinfo=timezone.utc)  # a day no other test writes
    message = {"v": 1, "id": "old-event-1", "type": "order.received", "order_id": "o-old",
               "occurred_at": day.isoformat(), "data": {}}
    old = datetime.now(timezone.utc) - timedelta(hours=5)
    client = client_for("record_analytics", "cloudevent")
    assert deliver(client, "verification-events", message, key="old-event-1", published=old).status_code == 200
    assert funnel(db, day.date(), day.date())["counts"] == {"orders_received": 1}


@pytest.mark.parametrize("kind, status, sent", [
    ("verified", "expired", False), ("declined", "verified", False), ("expired", "pending", False),
    ("expired", "expired", True), ("verified", "verified", True),
])
def test_an_outcome_email_goes_out_only_when_the_status_matches(app_env, db, settings, smtp, order_id,
                                                                kind, status, sent):
    inbox, port = smtp
    app_env(EMAIL_BACKEND="smtp", SMTP_PORT=str(port), SMTP_STARTTLS="false")
    place(db, settings, order_id)
    set_status(db, order_id, status)
    client = client_for("send_customer_email", "cloudevent")
    assert deliver(client, "customer-emails", email_job(order_id, kind), key=f"{order_id}:{kind}").status_code == 200
    assert len(inbox.messages) == (1 if sent else 0)
