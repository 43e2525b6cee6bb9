"""Issue 10 over HTTP: the age rule, decisions bound to our provider sessions, Veriff event webhooks.

Decision and event bodies are shaped like Veriff's (devstack.signing): `person.dateOfBirth`,
`decisionTime` with milliseconds or microseconds, event webhooks with `attemptId` and `feature`."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from devstack.signing import veriff_body, veriff_event_body, veriff_headers
from shared.db.schema import metadata
from shared.handlers.analytics import funnel
from tests.conftest import VERIFF_API_KEY, VERIFF_SECRET
from tests.functions.conftest import client_for, count
from tests.functions.test_subscribers import deliver
from tests.functions.test_webhook_intake import post_order, status_of
from tests.sessions import bind_provider_session


def post_signed(intake, body: bytes):
    return intake.post("/webhooks/veriff", data=body, headers=veriff_headers(VERIFF_SECRET, VERIFF_API_KEY, body))


def opened(intake, db, order_id) -> str:
    """An order with its link's provider session, as the email subscriber leaves it."""
    assert post_order(intake, order_id).status_code == 200
    session_id = str(uuid.uuid4())
    bind_provider_session(db, order_id, session_id)
    return session_id


def approve(intake, order_id, session_id, dob, decision_time="2026-11-29T10:00:00.000Z"):
    return post_signed(intake, veriff_body(order_id, 9001, verification_id=session_id, date_of_birth=dob,
                                           decision_time=decision_time))


def events(db, order_id, type_):
    with db.read() as conn:
        return [row[0] for row in conn.execute(
            text("SELECT data FROM event_log WHERE order_id = :o AND type = :t ORDER BY id"),
            {"o": order_id, "t": type_})]


def refund_requests(db, order_id):
    with db.read() as conn:
        return [row[0] for row in conn.execute(
            text("SELECT payload->'data' FROM outbox WHERE order_id = :o AND payload->>'topic' = 'order-actions'"),
            {"o": order_id})]


# ---- the age rule ----------------------------------------------------------------------


def test_one_day_short_of_21_on_the_decision_date_is_declined_as_underage(intake, db, order_id):
    session_id = opened(intake, db, order_id)
    response = approve(intake, order_id, session_id, "2005-11-30")
    assert response.status_code == 200 and response.json["status"] == "accepted"
    assert status_of(db, order_id) == "declined"
    [declined] = events(db, order_id, "verification.declined")
    assert (declined["reason"], declined["age_check"], declined["decision"]) == ("underage", "underage", "approved")
    assert [r["reason"] for r in refund_requests(db, order_id)] == ["underage"]
    assert count(db, "SELECT count(*) FROM outbox WHERE order_id = :o AND payload->'data'->>'kind' = 'declined'",
                 o=order_id) == 1
    assert events(db, order_id, "verification.approved") == []


def test_exactly_21_on_the_decision_date_is_verified_and_decided_at_is_the_providers(intake, db, order_id):
    session_id = opened(intake, db, order_id)
    assert approve(intake, order_id, session_id, "2005-11-29",
                   decision_time="2026-11-29T10:00:00.476108Z").json["status"] == "accepted"
    assert status_of(db, order_id) == "verified"
    [approved] = events(db, order_id, "verification.approved")
    assert approved["age_check"] == "passed"
    assert refund_requests(db, order_id) == []
    assert count(db, "SELECT count(*) FROM verification_sessions WHERE order_id = :o "
                     "AND decided_at = '2026-11-29T10:00:00.476108Z'", o=order_id) == 1


@pytest.mark.parametrize("decision_time, status", [
    ("2025-02-28T23:59:59Z", "declined"),  # 2025 is a common year: born 29 Feb 2004, 21 only on 1 March
    ("2025-03-01T00:00:00Z", "verified"),
])
def test_29_february_birthday(intake, db, order_id, decision_time, status):
    session_id = opened(intake, db, order_id)
    assert approve(intake, order_id, session_id, "2004-02-29", decision_time=decision_time).status_code == 200
    assert status_of(db, order_id) == status


@pytest.mark.parametrize("dob", [None, "not-a-date", "2005-13-01"])
def test_approval_without_a_readable_date_of_birth_goes_to_a_person(intake, db, order_id, dob):
    session_id = opened(intake, db, order_id)
    assert approve(intake, order_id, session_id, dob).json["status"] == "accepted"
    assert status_of(db, order_id) == "in_review"
    [review] = events(db, order_id, "verification.in_review")
    assert review["age_check"] == "missing"
    assert refund_requests(db, order_id) == []


def test_minimum_age_comes_from_the_environment(app_env, db, order_id):
    app_env(MINIMUM_AGE="18")
    intake = client_for("webhook_intake")
    session_id = opened(intake, db, order_id)
    approve(intake, order_id, session_id, "2008-11-29")
    assert status_of(db, order_id) == "verified"


def test_the_date_of_birth_is_nowhere(intake, db, order_id, capsys, caplog):
    """Grep every table (events and outbox rows, so every message), and every captured log line."""
    caplog.set_level(logging.DEBUG)
    dob = "2005-11-30"
    session_id = opened(intake, db, order_id)
    approve(intake, order_id, session_id, dob)
    other = f"{order_id}-b"
    approve(intake, other, opened(intake, db, other), "1961-07-13")
    assert status_of(db, order_id) == "declined" and status_of(db, other) == "verified"
    found = []
    with db.read() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(text(f"SELECT t::text FROM {table.name} t")):
                found += [table.name for needle in (dob, "1961-07-13", "20051130", "19610713") if needle in row[0]]
    captured = capsys.readouterr()
    logs = captured.out + captured.err + caplog.text
    assert logs.strip(), "the requests must have logged something for this check to mean anything"
    assert found == []
    assert dob not in logs and "1961-07-13" not in logs


# ---- binding -----------------------------------------------------------------------------


def test_an_approval_for_a_session_we_never_created_is_ignored(intake, db, order_id):
    opened(intake, db, order_id)
    forged = str(uuid.uuid4())  # e.g. a session opened with our public API key and our order id
    response = approve(intake, order_id, forged, "1980-01-01")
    assert response.status_code == 200 and response.json["status"] == "ignored"
    assert status_of(db, order_id) == "pending"
    [ignored] = events(db, order_id, "verification.decision_ignored")
    assert (ignored["reason"], ignored["verification_id"], ignored["status"]) == ("unknown_session", forged, "pending")
    assert events(db, order_id, "verification.approved") == []
    assert count(db, "SELECT count(*) FROM countdown_timers WHERE order_id = :o AND state = 'scheduled'",
                 o=order_id) == 2


def test_a_session_of_another_order_does_not_bind(intake, db, order_id):
    other = f"{order_id}-other"
    other_session = opened(intake, db, other)
    opened(intake, db, order_id)
    assert approve(intake, order_id, other_session, "1980-01-01").json["status"] == "ignored"
    assert status_of(db, order_id) == "pending"


def test_a_late_decline_for_a_superseded_session_is_recorded_not_applied(intake, db, order_id):
    first = opened(intake, db, order_id)
    resubmit = post_signed(intake, veriff_body(order_id, 9103, verification_id=first))
    assert resubmit.json["status"] == "accepted"  # the next email carries a fresh link...
    second = str(uuid.uuid4())
    bind_provider_session(db, order_id, second)  # ...from a new provider session
    late = post_signed(intake, veriff_body(order_id, 9102, verification_id=first,
                                           decision_time="2026-11-29T11:00:00Z"))
    assert late.status_code == 200 and late.json["status"] == "ignored"
    assert status_of(db, order_id) == "pending"
    assert [e["reason"] for e in events(db, order_id, "verification.decision_ignored")] == ["superseded_session"]
    assert refund_requests(db, order_id) == []
    assert approve(intake, order_id, second, "1980-01-01").json["status"] == "accepted"
    assert status_of(db, order_id) == "verified"


# ---- Veriff event webhooks -----------------------------------------------------------------


def test_started_and_submitted_events_are_answered_200_recorded_and_counted(intake, db, order_id):
    session_id = opened(intake, db, order_id)
    for code in (7001, 7002):
        response = post_signed(intake, veriff_event_body(order_id, code, verification_id=session_id))
        assert response.status_code == 200 and response.json["status"] == "accepted"
    [started] = events(db, order_id, "verification.started")
    [submitted] = events(db, order_id, "verification.submitted")
    assert started["verification_id"] == session_id and "decision_due_by" not in started
    assert submitted["decision_due_by"]  # deadline + DECISION_GRACE
    assert count(db, "SELECT count(*) FROM verification_sessions WHERE order_id = :o "
                     "AND decision_hold_until = deadline + interval '24 hours'", o=order_id) == 1
    # The published messages, delivered to analytics on a day of their own, count in the funnel.
    analytics = client_for("record_analytics", "cloudevent")
    with db.read() as conn:
        messages = [row[0] for row in conn.execute(text(
            "SELECT payload->'data' FROM outbox WHERE order_id = :o AND payload->>'topic' = 'verification-events' "
            "AND payload->'data'->>'type' IN ('verification.started', 'verification.submitted')"), {"o": order_id})]
    day = f"2033-0{1 + uuid.uuid4().int % 9}-{10 + uuid.uuid4().int % 18}"
    for message in messages:
        message = {**message, "occurred_at": f"{day}T12:00:00+00:00"}
        assert deliver(analytics, "verification-events", message, key=message["id"]).status_code == 200
    counts = funnel(db, date.fromisoformat(day), date.fromisoformat(day))["counts"]
    assert counts.get("opened", 0) >= 1 and counts.get("submitted", 0) >= 1


def test_an_event_for_a_session_we_never_created_is_ignored(intake, db, order_id):
    opened(intake, db, order_id)
    response = post_signed(intake, veriff_event_body(order_id, 7002))
    assert response.status_code == 200 and response.json["status"] == "ignored"
    assert events(db, order_id, "verification.submitted") == []
    assert count(db, "SELECT count(*) FROM verification_sessions WHERE order_id = :o "
                     "AND decision_hold_until IS NULL", o=order_id) == 1


@pytest.mark.parametrize("change, status, field", [
    ({"code": 7999}, 422, "code"), ({"vendorData": "A\n"}, 422, "vendorData"), ({"id": None}, 422, "id"),
])
def test_malformed_event_webhooks_are_4xx_naming_the_field(intake, db, order_id, change, status, field):
    body = {**json.loads(veriff_event_body(order_id, 7002)), **change}
    response = post_signed(intake, json.dumps(body).encode())
    assert response.status_code == status and response.json["field"] == field
    assert count(db, "SELECT count(*) FROM webhook_events WHERE order_id = :o", o=order_id) == 0


def test_a_decision_time_in_the_future_does_not_make_an_underage_customer_pass(intake, db, order_id):
    """The age is checked on the decision's date but never later than today (issue 24 item 12):
    a `decisionTime` a year ahead would make a customer who turns 21 next month pass today."""
    now = datetime.now(timezone.utc)
    turns_21 = (now + timedelta(days=30)).date()
    born = turns_21.replace(year=turns_21.year - 21, day=min(turns_21.day, 28))
    session_id = opened(intake, db, order_id)
    future = (now + timedelta(days=365)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert approve(intake, order_id, session_id, born.isoformat(), decision_time=future).status_code == 200
    assert status_of(db, order_id) == "declined"
    [declined] = events(db, order_id, "verification.declined")
    assert (declined["reason"], declined["age_check"]) == ("underage", "underage")
    assert events(db, order_id, "verification.approved") == []
