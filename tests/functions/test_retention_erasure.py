"""Retention through the sweep (issue 24 items 3 and 12): after it, a customer's email and the
provider link (a bearer link to their provider session) are in no table, outbox row, event or
log line — for a session closed RETENTION ago and for one still `in_review` RETENTION after its
deadline, which is closed (`cancelled`, reason `retention`) with its refund left to a person."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import text

from tests.functions.conftest import client_for, count
from tests.functions.test_forget import everywhere
from tests.functions.test_subscribers import smtp  # noqa: F401 (a fixture)
from tests.functions.test_verify_once import approve, send_emails
from tests.functions.test_webhook_intake import post_order, post_veriff, status_of


def our_logs(captured_logs) -> str:
    """Every line the service logged (the stand-in SMTP server's own `mail.log` is the mailbox's side)."""
    lines = [json.loads(line) for line in captured_logs.getvalue().splitlines() if line.strip()]
    assert lines
    return "\n".join(json.dumps(line) for line in lines if line.get("logger") != "mail.log").lower()


def link_of(db, key: str) -> tuple[str, str]:
    with db.read() as conn:
        return tuple(conn.execute(text("SELECT provider_session_id, provider_url FROM verification_sessions "
                                       "WHERE order_id = :o"), {"o": key}).one())


def test_after_retention_the_email_and_the_provider_link_are_nowhere(app_env, db, smtp, captured_logs):  # noqa: F811
    inbox, port = smtp
    app_env(EMAIL_BACKEND="smtp", SMTP_PORT=str(port), SMTP_STARTTLS="false")
    intake = client_for("webhook_intake")
    emails = client_for("send_customer_email", "cloudevent")
    email = f"Retain-{uuid.uuid4().hex[:8]}@Example.com"
    review, closed = (f"order-{uuid.uuid4().hex[:10]}" for _ in range(2))
    for key in (review, closed):
        assert post_order(intake, key, customerEmail=email, customerId="c-retain").json["status"] == "accepted"
        send_emails(db, emails, key)  # the link email, for real: the provider link is stored
    (review_session, review_link), (_, closed_link) = link_of(db, review), link_of(db, closed)
    assert review_link and closed_link and len(inbox.messages) == 2
    assert post_veriff(intake, review, 9121, verification_id=review_session).json["status"] == "accepted"
    assert status_of(db, review) == "in_review"  # Veriff's review, which nobody ever finished
    approve(intake, db, closed)
    assert status_of(db, closed) == "verified"
    # RETENTION (90d) and a day pass: since the review's deadline, and since the approval closed.
    with db.transaction() as conn:
        conn.execute(text("UPDATE verification_sessions SET deadline = now() - interval '91 days' "
                          "WHERE order_id = :o"), {"o": review})
        conn.execute(text("UPDATE verification_sessions SET closed_at = now() - interval '91 days' "
                          "WHERE order_id = :o"), {"o": closed})
    for needle in (email, review_link, closed_link):
        assert everywhere(db, needle) == ["verification_sessions"]  # where they live until then

    response = client_for("sweep").post("/", json={})

    assert response.status_code == 200
    assert response.json["purgedByKind"]["open sessions closed and erased"] >= 1
    assert response.json["purgedByKind"]["customers erased"] >= 1
    for needle in (email, review_link, closed_link):
        assert everywhere(db, needle) == []
        assert needle.lower() not in our_logs(captured_logs)
    assert count(db, "SELECT count(*) FROM verification_sessions WHERE order_id IN (:a, :b) AND erased_at IS NOT NULL "
                     "AND customer_id IS NULL AND provider_url IS NULL", a=review, b=closed) == 2
    # The review is closed, never shipped nor refunded by itself: a person settles the refund.
    assert (status_of(db, review), status_of(db, closed)) == ("cancelled", "verified")
    with db.read() as conn:
        story = conn.execute(text("SELECT type, data->>'reason', actor FROM event_log WHERE order_id = :o "
                                  "AND type IN ('order.cancelled', 'refund.manual', 'refund.requested') ORDER BY id"),
                             {"o": review}).all()
        refund = conn.execute(text("SELECT refund_status FROM verification_sessions WHERE order_id = :o"),
                              {"o": review}).scalar_one()
    assert [tuple(r) for r in story] == [("order.cancelled", "retention", "retention"),
                                         ("refund.manual", "retention", "retention")]
    assert refund == "manual"
    assert count(db, "SELECT count(*) FROM outbox WHERE order_id = :o AND payload->'data'->>'kind' = 'refund'",
                 o=review) == 0

    # An email still queued for the review goes nowhere, and no new provider link is stored.
    send_emails(db, emails, review)
    assert len(inbox.messages) == 2
    assert link_of(db, review)[1] is None and everywhere(db, email) == []


def test_forget_erases_the_provider_link_with_the_email(app_env, db, smtp, captured_logs):  # noqa: F811
    from shared.operator import main as cli

    inbox, port = smtp
    app_env(EMAIL_BACKEND="smtp", SMTP_PORT=str(port), SMTP_STARTTLS="false")
    intake = client_for("webhook_intake")
    emails = client_for("send_customer_email", "cloudevent")
    email, key = f"forget-link-{uuid.uuid4().hex[:8]}@example.com", f"order-{uuid.uuid4().hex[:10]}"
    assert post_order(intake, key, customerEmail=email).json["status"] == "accepted"
    send_emails(db, emails, key)
    _, link = link_of(db, key)
    assert link and everywhere(db, link) == ["verification_sessions"]

    assert cli(["--by", "bob", "forget", email]) == 0

    assert everywhere(db, email) == [] and everywhere(db, link) == []
    assert link.lower() not in our_logs(captured_logs) and email not in our_logs(captured_logs)
