"""The three Pub/Sub subscribers through functions-framework, fed Eventarc-shaped CloudEvents.

Email goes to a real SMTP server (aiosmtpd on 127.0.0.1), refunds to a local
HTTP server; the database is the session's PostgreSQL.
"""

from __future__ import annotations

import email
import email.policy
import json
import uuid
from datetime import date, datetime, timedelta, timezone

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import text

from devstack.postgres import free_port
from shared.adapters.events import LocalPublisher
from shared.ports import OutgoingMessage
from shared.domain.messages import OrderPlaced
from shared.handlers import intake, transitions
from shared.ports import KIND_HEADER
from tests.fakes.http_server import FakeHttpServer, Reply
from tests.functions.conftest import client_for

NOW = datetime.now(timezone.utc)


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield inbox, controller.port
    controller.stop()


def cloudevent(topic: str, data: dict, *, key: str, published: datetime | None = None, order_id: str = "o"):
    """Headers and body as Eventarc delivers a Pub/Sub message (built by the local publisher)."""
    message = OutgoingMessage(topic=topic, data=json.dumps(data).encode(), ordering_key=order_id,
                              attributes={"type": "t", "order_id": order_id, "request_id": "r", "message_key": key})
    return LocalPublisher(None, {}).build_event(message, uuid.uuid4().hex, published or datetime.now(timezone.utc))


def deliver(client, topic, data, **kwargs):
    headers, body = cloudevent(topic, data, **kwargs)
    return client.post("/", data=body, headers=headers)


def place(db, settings, order_id):
    intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "buyer@example.com"), now=NOW)


def email_job(order_id, kind="link", index=0):
    return {"v": 1, "order_id": order_id, "kind": kind, "reminder_index": index}


def html_part(message):
    return message.get_body(("html",)).get_content()


# ---- send_customer_email ------------------------------------------------------------


def test_duplicate_delivery_sends_one_email_with_a_reused_link(app_env, db, settings, smtp):
    inbox, port = smtp
    app_env(EMAIL_BACKEND="smtp", SMTP_PORT=str(port), SMTP_STARTTLS="false", STORE_TIMEZONE="Europe/Berlin")
    order_id = f"<script>alert(1)</script>-{uuid.uuid4().hex[:6]}"
    place(db, settings, order_id)
    client = client_for("send_customer_email", "cloudevent")
    for _ in range(2):
        assert deliver(client, "customer-emails", email_job(order_id), key="k1", order_id=order_id).status_code == 200
    assert len(inbox.messages) == 1
    sent = inbox.messages[0]
    assert sent["To"] == "buyer@example.com"
    assert "<script>" not in html_part(sent) and "&lt;script&gt;" in html_part(sent)
    with db.read() as conn:
        url = conn.execute(text("SELECT provider_url FROM verification_sessions WHERE order_id = :o"),
                           {"o": order_id}).scalar()
    assert url and url in sent.get_body(("plain",)).get_content()

    deliver(client, "customer-emails", email_job(order_id, "reminder", 0), key="k2", order_id=order_id)
    assert len(inbox.messages) == 2
    assert url in inbox.messages[1].get_body(("plain",)).get_content()  # same provider session reused
    with db.read() as conn:
        sent_events = conn.execute(text("SELECT count(*) FROM event_log WHERE order_id = :o "
                                        "AND type = 'customer.email_sent'"), {"o": order_id}).scalar()
    assert sent_events == 2


def test_send_failure_is_retried_and_sends_exactly_one(app_env, db, settings, order_id):
    down_port = free_port()
    app_env(EMAIL_BACKEND="smtp", SMTP_PORT=str(down_port), SMTP_STARTTLS="false")
    place(db, settings, order_id)
    client = client_for("send_customer_email", "cloudevent")
    failed = deliver(client, "customer-emails", email_job(order_id), key="k", order_id=order_id)
    assert failed.status_code >= 500  # raised: Pub/Sub will redeliver
    with db.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM email_sends WHERE order_id = :o"),
                            {"o": order_id}).scalar() == 0  # the claim was released

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=down_port)
    controller.start()
    try:
        for _ in range(2):
            assert deliver(client, "customer-emails", email_job(order_id), key="k",
                           order_id=order_id).status_code == 200
    finally:
        controller.stop()
    assert len(inbox.messages) == 1


def test_an_email_sent_again_after_its_record_was_lost_keeps_its_message_id(app_env, db, settings, smtp, order_id):
    """The send went out, then the instance died before recording it: once the claim's lease
    passes the email is sent again (at least once), with the first send's Message-ID, so that
    mail clients can show it once. Another email, or a new link, has its own."""
    inbox, port = smtp
    app_env(EMAIL_BACKEND="smtp", SMTP_PORT=str(port), SMTP_STARTTLS="false")
    place(db, settings, order_id)
    client = client_for("send_customer_email", "cloudevent")
    assert deliver(client, "customer-emails", email_job(order_id), key="k1", order_id=order_id).status_code == 200
    with db.transaction() as conn:  # as if the record had never been written, and the lease had passed
        conn.execute(text("UPDATE email_sends SET state = 'sending', claimed_at = now() - interval '1 hour' "
                          "WHERE order_id = :o"), {"o": order_id})
    assert deliver(client, "customer-emails", email_job(order_id), key="k2", order_id=order_id).status_code == 200
    assert deliver(client, "customer-emails", email_job(order_id, "reminder"), key="k3",
                   order_id=order_id).status_code == 200
    transitions.resend_link(db, order_id, operator="ops@example.com", now=NOW)
    with db.read() as conn:
        resent = conn.execute(text("SELECT payload->'data' FROM outbox WHERE order_id = :o AND kind = 'publish' "
                                   "AND payload->>'topic' = 'customer-emails' ORDER BY id DESC LIMIT 1"),
                              {"o": order_id}).scalar_one()
    assert resent["kind"] == "link" and resent["reminder_index"] == 1
    assert deliver(client, "customer-emails", resent, key="k4", order_id=order_id).status_code == 200

    ids = [m["Message-ID"] for m in inbox.messages]
    assert [m[KIND_HEADER] for m in inbox.messages] == ["link", "link", "reminder", "link"]
    assert ids[0] == ids[1]
    assert len({ids[0], ids[2], ids[3]}) == 3
    assert all(order_id not in i for i in ids)


def test_an_email_its_sender_is_misconfigured_for_is_redelivered_not_acknowledged(
        app_env, db, settings, smtp, order_id, monkeypatch):
    inbox, port = smtp
    # A user without a password: the sender refuses to be built (ConfigError), at the first email.
    app_env(EMAIL_BACKEND="smtp", SMTP_PORT=str(port), SMTP_USER="mailer", SMTP_STARTTLS="true")
    place(db, settings, order_id)
    client = client_for("send_customer_email", "cloudevent")
    reminder = email_job(order_id, kind="reminder")
    assert deliver(client, "customer-emails", reminder, key="k", order_id=order_id).status_code >= 500

    monkeypatch.delenv("SMTP_USER")  # the setting fixed
    app_env(EMAIL_BACKEND="smtp", SMTP_PORT=str(port), SMTP_STARTTLS="false")
    client = client_for("send_customer_email", "cloudevent")
    assert deliver(client, "customer-emails", reminder, key="k", order_id=order_id).status_code == 200
    assert len(inbox.messages) == 1


def test_link_email_for_a_closed_session_is_skipped(app_env, db, settings, smtp, order_id):
    inbox, port = smtp
    app_env(EMAIL_BACKEND="smtp", SMTP_PORT=str(port), SMTP_STARTTLS="false")
    place(db, settings, order_id)
    with db.transaction() as conn:
        conn.execute(text("UPDATE verification_sessions SET status = 'verified' WHERE order_id = :o"),
                     {"o": order_id})
    client = client_for("send_customer_email", "cloudevent")
    assert deliver(client, "customer-emails", email_job(order_id, "reminder"), key="k").status_code == 200
    assert deliver(client, "customer-emails", email_job(order_id, "verified"), key="k2").status_code == 200
    assert [m["Subject"] for m in inbox.messages] and len(inbox.messages) == 1  # only the outcome email


@pytest.mark.parametrize("target, topic", [("send_customer_email", "customer-emails"),
                                           ("record_analytics", "verification-events"),
                                           ("request_refund", "order-actions")])
def test_poison_messages_are_acknowledged(app_env, target, topic):
    client = client_for(target, "cloudevent")
    headers, body = cloudevent(topic, {"v": 1}, key="poison")
    assert client.post("/", data=body, headers=headers).status_code == 200
    garbage = dict(headers)
    assert client.post("/", data=b'{"message": {"data": "!!!"}}', headers=garbage).status_code == 200


def test_stale_reminder_is_dropped_but_a_stale_link_is_sent(app_env, db, settings, smtp, order_id):
    """MAX_MESSAGE_AGE may skip a late reminder, never the link (issue 10 item 7)."""
    inbox, port = smtp
    app_env(EMAIL_BACKEND="smtp", SMTP_PORT=str(port), SMTP_STARTTLS="false", MAX_MESSAGE_AGE="1h")
    place(db, settings, order_id)
    client = client_for("send_customer_email", "cloudevent")
    old = datetime.now(timezone.utc) - timedelta(hours=2)
    reminder = email_job(order_id, kind="reminder")
    assert deliver(client, "customer-emails", reminder, key="k", published=old).status_code == 200
    assert inbox.messages == []
    assert deliver(client, "customer-emails", email_job(order_id), key="k2", published=old).status_code == 200
    assert len(inbox.messages) == 1


# ---- record_analytics ------------------------------------------------------------------


def event(type_, order_id, occurred_at, **data):
    return {"v": 1, "id": str(uuid.uuid4()), "type": type_, "order_id": order_id,
            "occurred_at": occurred_at.isoformat(), "data": data}


def test_analytics_counts_each_event_once_and_reports_the_funnel(app_env, db):
    from shared.handlers.analytics import funnel
    day = datetime(2031, 5, 4, 10, 0, tzinfo=timezone.utc)  # a day no other test writes
    client = client_for("record_analytics", "cloudevent")
    events = [event("order.received", f"f-{i}", day) for i in range(4)]
    events += [event("customer.email_sent", f"f-{i}", day, kind="link", reminder_index=0) for i in range(4)]
    events += [event("verification.approved", "f-0", day, seconds_to_verify=1800),
               event("verification.approved", "f-1", day, seconds_to_verify=7200),
               event("verification.expired", "f-2", day),
               event("refund.requested", "f-2", day)]
    for e in events:
        for _ in range(2):  # every message delivered twice
            assert deliver(client, "verification-events", e, key=e["id"]).status_code == 200
    report = funnel(db, date(2031, 5, 4), date(2031, 5, 4))
    assert report["counts"] == {"orders_received": 4, "links_sent": 4, "verified": 2, "expired": 1,
                                "refunds_requested": 1}
    assert report["conversion_percent"] == 50.0
    assert report["buckets"] == {"<1h": 1, "1-6h": 1}
    assert report["median_seconds_to_verify"] == 4500.0


# ---- request_refund ---------------------------------------------------------------------


def expire_for_refund(db, settings, order_id):
    place(db, settings, order_id)
    with db.transaction() as conn:
        conn.execute(text("UPDATE verification_sessions SET status = 'expired' WHERE order_id = :o"),
                     {"o": order_id})


def test_refund_called_once_under_duplicates(app_env, db, settings, order_id):
    with FakeHttpServer(Reply(200, {"status": "refunded"})) as api:
        app_env(REFUND_BACKEND="http", REFUND_API_URL=api.url + "/refunds", REFUND_API_TOKEN="tok")
        expire_for_refund(db, settings, order_id)
        client = client_for("request_refund", "cloudevent")
        action = {"v": 1, "order_id": order_id, "action": "refund", "reason": "expired"}
        for _ in range(3):
            assert deliver(client, "order-actions", action, key="r").status_code == 200
        assert len(api.requests) == 1
        call = api.requests[0]
        assert call.method == "POST" and call.headers["idempotency-key"] == f"refund-{order_id}"
        assert call.headers["authorization"] == "Bearer tok"
    with db.read() as conn:
        assert conn.execute(text("SELECT refund_status FROM verification_sessions WHERE order_id = :o"),
                            {"o": order_id}).scalar() == "refunded"
        assert conn.execute(text("SELECT count(*) FROM event_log WHERE order_id = :o AND type = 'refund.completed'"),
                            {"o": order_id}).scalar() == 1


def test_refund_api_error_is_retried_with_the_same_idempotency_key(app_env, db, settings, order_id):
    with FakeHttpServer(Reply(503), Reply(200, {})) as api:
        app_env(REFUND_BACKEND="http", REFUND_API_URL=api.url + "/refunds", REFUND_API_TOKEN="tok")
        expire_for_refund(db, settings, order_id)
        client = client_for("request_refund", "cloudevent")
        action = {"v": 1, "order_id": order_id, "action": "refund", "reason": "expired"}
        assert deliver(client, "order-actions", action, key="r").status_code >= 500
        assert deliver(client, "order-actions", action, key="r").status_code == 200
        assert deliver(client, "order-actions", action, key="r").status_code == 200
        keys = [r.headers["idempotency-key"] for r in api.requests]
    assert keys == [f"refund-{order_id}"] * 2


def test_manual_refund_is_recorded_for_an_operator(app_env, db, settings, order_id):
    expire_for_refund(db, settings, order_id)
    client = client_for("request_refund", "cloudevent")
    action = {"v": 1, "order_id": order_id, "action": "refund", "reason": "declined"}
    assert deliver(client, "order-actions", action, key="r").status_code == 200
    with db.read() as conn:
        assert conn.execute(text("SELECT refund_status FROM verification_sessions WHERE order_id = :o"),
                            {"o": order_id}).scalar() == "manual"


@pytest.mark.parametrize("body", [b"[" * 5000 + b"]" * 5000, b'{"n": ' + b"9" * 5000 + b"}", b"", b"\xff\xfe"])
@pytest.mark.parametrize("target", ["send_customer_email", "record_analytics", "request_refund"])
def test_a_body_the_framework_cannot_parse_is_acknowledged_not_a_500(app_env, target, body):
    headers = {"ce-id": "x", "ce-source": "//pubsub", "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
               "ce-specversion": "1.0", "Content-Type": "application/json"}
    response = client_for(target, "cloudevent").post("/", data=body, headers=headers)
    assert response.status_code == 204
