"""One order namespace per source (issue 10 item 5), through the entry points: a Lightspeed sale
whose id equals a generic store order's id is another order, with its own session, link email,
cancellation and decision."""

from __future__ import annotations

import json

from sqlalchemy import text

from devstack.signing import lightspeed_body, lightspeed_sale, local_session_id
from tests.fakes.http_server import FakeHttpServer, Reply
from tests.functions.conftest import client_for, count, rows_for_order
from tests.functions.test_inbound_edges import post_lightspeed
from tests.functions.test_subscribers import deliver, email_job, smtp  # noqa: F401 (a fixture)
from tests.functions.test_webhook_intake import NOTHING, post_order, post_veriff
from tests.sessions import bind_provider_session


def sessions_of(db, order_id: str) -> dict[str, tuple[str, str, str]]:
    """{key: (source, status, customer email)} of every session for one store order id."""
    with db.read() as conn:
        rows = conn.execute(text("SELECT order_id, source, status, customer_email FROM verification_sessions "
                                 "WHERE order_id IN (:o, 'lightspeed:' || :o)"), {"o": order_id}).all()
    return {key: (source, status, email) for key, source, status, email in rows}


def both(intake, order_id: str) -> str:
    """Generic order `order_id` and Lightspeed sale `order_id`, from two customers; the sale's key."""
    assert post_order(intake, order_id, customerEmail="web@example.com").json["status"] == "accepted"
    placed = post_lightspeed(intake, lightspeed_body(lightspeed_sale(order_id, "CLOSED", email="till@example.com")))
    assert (placed.status_code, placed.json["status"], placed.json["orderId"]) == (
        200, "accepted", f"lightspeed:{order_id}")
    return f"lightspeed:{order_id}"


def test_a_sale_id_equal_to_an_order_id_opens_two_sessions_and_sends_two_link_emails(
        app_env, intake, db, smtp, order_id):  # noqa: F811
    inbox, port = smtp
    sale = both(intake, order_id)
    assert sessions_of(db, order_id) == {order_id: ("orders", "pending", "web@example.com"),
                                         sale: ("lightspeed", "pending", "till@example.com")}
    for key in (order_id, sale):
        assert rows_for_order(db, key)["countdown_timers"] == 2
        assert count(db, "SELECT count(*) FROM event_log WHERE order_id = :o AND type = 'order.duplicate'",
                     o=key) == 0

    app_env(EMAIL_BACKEND="smtp", SMTP_PORT=str(port), SMTP_STARTTLS="false")
    emails = client_for("send_customer_email", "cloudevent")
    for key in (order_id, sale):
        assert deliver(emails, "customer-emails", email_job(key), key=f"{key}:link:0", order_id=key).status_code == 200
    assert sorted(m["To"] for m in inbox.messages) == ["till@example.com", "web@example.com"]
    # Each customer is told the store's own order id, never our key.
    assert all(m["Subject"].endswith(f"order {order_id}") and "lightspeed:" not in m.get_body(("plain",)).get_content()
               for m in inbox.messages)
    assert count(db, "SELECT count(*) FROM email_sends WHERE order_id IN (:o, :s) AND state = 'sent'",
                 o=order_id, s=sale) == 2


def test_a_voided_sale_cancels_only_the_lightspeed_session(intake, db, order_id):
    sale = both(intake, order_id)
    voided = post_lightspeed(intake, lightspeed_body(lightspeed_sale(order_id, "VOIDED")))
    assert voided.json["status"] == "accepted"
    assert {key: status for key, (_, status, _) in sessions_of(db, order_id).items()} == {
        order_id: "pending", sale: "cancelled"}
    assert count(db, "SELECT count(*) FROM countdown_timers WHERE order_id = :o AND state = 'scheduled'",
                 o=order_id) == 2
    assert count(db, "SELECT count(*) FROM event_log WHERE order_id = :o AND type = 'order.cancelled'",
                 o=order_id) == 0


def test_an_approval_verifies_only_the_session_it_was_made_for(intake, db, order_id):
    sale = both(intake, order_id)
    for key in (order_id, sale):  # the link emails' provider sessions (vendorData = the key)
        bind_provider_session(db, key, local_session_id(key))

    assert post_veriff(intake, sale, 9001).json["status"] == "accepted"
    assert {key: status for key, (_, status, _) in sessions_of(db, order_id).items()} == {
        order_id: "pending", sale: "verified"}
    assert post_veriff(intake, order_id, 9102).json["status"] == "accepted"
    assert {key: status for key, (_, status, _) in sessions_of(db, order_id).items()} == {
        order_id: "declined", sale: "verified"}
    # A provider session the service never created, named with the shared id: nothing moves.
    crossed = post_veriff(intake, order_id, 9001, verification_id=local_session_id(f"{sale}-other"))
    assert crossed.json["status"] == "ignored"
    assert sessions_of(db, order_id)[order_id][1] == "declined"


def test_a_generic_order_id_with_the_reserved_prefix_is_422_and_stores_nothing(intake, db, order_id):
    response = post_order(intake, f"lightspeed:{order_id}")
    assert response.status_code == 422 and response.json["field"] == "orderId"
    assert "lightspeed:" in response.json["error"]
    assert rows_for_order(db, f"lightspeed:{order_id}") == NOTHING
    assert rows_for_order(db, order_id) == NOTHING


def test_a_declined_sale_asks_the_store_to_refund_its_own_sale_id_only(app_env, intake, db, order_id):
    sale = both(intake, order_id)
    bind_provider_session(db, sale, local_session_id(sale))
    assert post_veriff(intake, sale, 9102).json["status"] == "accepted"
    with db.read() as conn:  # the refund request the decline queued, as the relay publishes it
        [action] = conn.execute(text("SELECT payload->'data' FROM outbox WHERE order_id IN (:o, :s) "
                                     "AND payload->>'topic' = 'order-actions'"), {"o": order_id, "s": sale}).scalars()
    assert action["order_id"] == sale
    with FakeHttpServer(Reply(200, {"status": "refunded"})) as api:
        app_env(REFUND_BACKEND="http", REFUND_API_URL=api.url + "/refunds", REFUND_API_TOKEN="tok")
        refunds = client_for("request_refund", "cloudevent")
        assert deliver(refunds, "order-actions", action, key=f"{sale}:refund", order_id=sale).status_code == 200
    [call] = api.requests
    assert json.loads(call.body) == {"orderId": order_id, "source": "lightspeed", "reason": "declined"}
    assert call.headers["idempotency-key"] == f"refund-{sale}"
    with db.read() as conn:
        refunds_by_key = dict(conn.execute(text("SELECT order_id, refund_status FROM verification_sessions "
                                                "WHERE order_id IN (:o, :s)"), {"o": order_id, "s": sale}).all())
    assert refunds_by_key == {order_id: None, sale: "refunded"}
