"""Lightspeed X-Series as it really sends, and validation at the edge, over HTTP
(issue 10 items 4 and 8, issue 8 item 3): a clear 4xx naming the field, no row written, and
the next valid request unaffected."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from devstack.signing import lightspeed_body, lightspeed_headers, lightspeed_sale
from tests.conftest import LIGHTSPEED_SECRET
from tests.functions.conftest import count, rows_for_order
from tests.functions.test_webhook_intake import NOTHING, order_request, post_order, status_of

PAID = ["CLOSED", "ONACCOUNT_CLOSED", "LAYBY_CLOSED", "DISPATCHED_CLOSED", "PICKED_UP_CLOSED",
        "SERVICE_CLOSED", "AWAITING_DISPATCH", "AWAITING_PICKUP"]


def post_lightspeed(intake, body: bytes):
    return intake.post("/webhooks/lightspeed", data=body, headers=lightspeed_headers(LIGHTSPEED_SECRET, body))


def sale_key(sale_id: str) -> str:
    """The session key of a Lightspeed sale (`shared.domain.keys`)."""
    return f"lightspeed:{sale_id}"


def event_types(db, order_id):
    from sqlalchemy import text
    with db.read() as conn:
        return [r[0] for r in conn.execute(text("SELECT type FROM event_log WHERE order_id = :o ORDER BY id"),
                                           {"o": order_id})]


@pytest.mark.parametrize("status", PAID)
def test_each_paid_status_opens_a_session_with_the_total(intake, db, order_id, status):
    response = post_lightspeed(intake, lightspeed_body(lightspeed_sale(order_id, status)))
    assert response.status_code == 200 and response.json["status"] == "accepted"
    assert count(db, "SELECT count(*) FROM verification_sessions WHERE order_id = :o AND source = 'lightspeed' "
                     "AND order_total = 877.40 AND status = 'pending'", o=sale_key(order_id)) == 1


@pytest.mark.parametrize("status", ["SAVED", "ONACCOUNT", "LAYBY"])
def test_unpaid_states_are_ignored(intake, db, order_id, status):
    response = post_lightspeed(intake, lightspeed_body(lightspeed_sale(order_id, status)))
    assert response.status_code == 200 and response.json["status"] == "ignored"
    assert rows_for_order(db, sale_key(order_id))["verification_sessions"] == 0


def test_voided_after_paid_cancels(intake, db, order_id):
    post_lightspeed(intake, lightspeed_body(lightspeed_sale(order_id, "CLOSED")))
    assert post_lightspeed(intake, lightspeed_body(lightspeed_sale(order_id, "VOIDED"))).json["status"] == "accepted"
    assert status_of(db, sale_key(order_id)) == "cancelled"


def test_a_paid_delivery_retried_after_the_void_opens_nothing(intake, db, order_id):
    """Lightspeed retries a failed delivery for 48 h: the CLOSED (version 1) may arrive after the
    VOIDED (version 2) of the same sale. A voided sale is not an order: no session, no link email."""
    voided = post_lightspeed(intake, lightspeed_body(lightspeed_sale(order_id, "VOIDED", version=2)))
    assert voided.status_code == 200
    closed = post_lightspeed(intake, lightspeed_body(lightspeed_sale(order_id, "CLOSED", version=1)))
    assert closed.status_code == 200 and closed.json["status"] == "ignored"
    assert status_of(db, sale_key(order_id)) is None
    assert count(db, "SELECT count(*) FROM outbox WHERE order_id = :o AND payload->>'topic' = 'customer-emails'",
                 o=sale_key(order_id)) == 0


@pytest.mark.parametrize("return_for, total", [("5687606e-dbc9-8897-11e9-af192251e676", "-139.80000"),
                                               (None, "-139.80000")])
def test_a_closed_return_opens_nothing_and_emails_no_link(intake, db, order_id, return_for, total):
    body = lightspeed_body(lightspeed_sale(order_id, "CLOSED", return_for=return_for, total=total))
    response = post_lightspeed(intake, body)
    assert response.status_code == 200 and response.json["status"] == "ignored"
    rows = rows_for_order(db, sale_key(order_id))
    assert (rows["verification_sessions"], rows["countdown_timers"]) == (0, 0)
    assert count(db, "SELECT count(*) FROM outbox WHERE order_id = :o AND payload->>'topic' = 'customer-emails'",
                 o=sale_key(order_id)) == 0
    assert event_types(db, sale_key(order_id)) == ["order.ignored"]


def test_a_walk_in_is_200_ignored_and_recorded_once(intake, db, order_id):
    body = lightspeed_body(lightspeed_sale(order_id, "CLOSED", email=None, version=5))
    first, again = post_lightspeed(intake, body), post_lightspeed(intake, body)
    assert (first.status_code, first.json["status"], first.json["detail"]) == (200, "ignored", "no_customer_email")
    assert again.status_code == 200 and again.json["status"] == "duplicate"
    assert rows_for_order(db, sale_key(order_id))["verification_sessions"] == 0
    assert count(db, "SELECT deliveries FROM webhook_events WHERE order_id = :o", o=sale_key(order_id)) == 2
    assert event_types(db, sale_key(order_id)) == ["order.ignored"]


def test_a_body_with_only_payload_is_accepted(intake, db, order_id):
    response = post_lightspeed(intake, lightspeed_body(lightspeed_sale(order_id), type_=None))
    assert response.status_code == 200 and response.json["status"] == "accepted"


@pytest.mark.parametrize("layout", ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%SZ"])
def test_both_lightspeed_date_formats(intake, db, order_id, layout):
    yesterday = datetime.now(timezone.utc) - timedelta(days=1)
    response = post_lightspeed(intake, lightspeed_body(lightspeed_sale(order_id, sale_date=yesterday.strftime(layout))))
    assert response.status_code == 200 and response.json["status"] == "accepted"
    assert count(db, "SELECT count(*) FROM verification_sessions WHERE order_id = :o", o=sale_key(order_id)) == 1
    old = (datetime.now(timezone.utc) - timedelta(days=8)).strftime(layout)  # read, and found stale
    stale = post_lightspeed(intake, lightspeed_body(lightspeed_sale(f"{order_id}-old", sale_date=old)))
    assert stale.status_code == 200 and event_types(db, sale_key(f"{order_id}-old")) == ["order.stale"]


# ---- validation at the edge ------------------------------------------------------------------


def signed_order(intake, raw: bytes):
    body, headers = order_request("unused", body=raw)
    return intake.post("/webhooks/orders", data=body, headers=headers, content_type="application/json")


def order_json(order_id, **fields) -> bytes:
    return json.dumps({"event": "order.created", "orderId": order_id, "customerEmail": "buyer@example.com",
                       **fields}).encode()


@pytest.mark.parametrize("fields, field", [
    ({"orderId": "{o}\n"}, "orderId"),
    ({"orderId": "{o}\u0000"}, "orderId"),
    ({"orderId": "{o}\ud800"}, "orderId"),
    ({"customerEmail": "x@example.com\n"}, "customerEmail"),
    ({"customerEmail": '"a,b"<x>@example.com'}, "customerEmail"),
    ({"customerEmail": "x\ud800@example.com"}, "customerEmail"),
    ({"customerId": "c\u0000"}, "customerId"),
    ({"orderTotal": "9999999999.995"}, "orderTotal"),
    ({"orderTotal": 1e300}, "orderTotal"),
    ({"createdAt": "0001-01-01T00:00:00+14:00"}, "createdAt"),
    ({"createdAt": "2150-01-01T00:00:00Z"}, "createdAt"),
])
def test_bad_fields_are_422_naming_the_field_and_store_nothing(intake, db, order_id, fields, field):
    values = {k: v.replace("{o}", order_id) if isinstance(v, str) else v for k, v in fields.items()}
    response = signed_order(intake, order_json(order_id, **values))
    assert response.status_code == 422 and response.json["field"] == field
    assert rows_for_order(db, order_id) == NOTHING
    assert post_order(intake, order_id).status_code == 200  # the connection and the order are unharmed


@pytest.mark.parametrize("raw", [
    b'{"event": "order.created", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"event": "order.created", "orderTotal": ' + b"9" * 5000 + b"}",
    b'{"event": "order.created", "orderTotal": NaN}',
])
def test_hostile_json_is_400_without_a_crash(intake, db, raw):
    response = signed_order(intake, raw)
    assert response.status_code == 400 and response.json["code"] == "unparseable"


def test_a_lone_surrogate_then_valid_requests_all_succeed(intake, db, order_id):
    bad = order_json(order_id, customerEmail="a\\ud800@example.com").replace(b"\\\\ud800", b"\\ud800")
    assert signed_order(intake, bad).status_code == 422
    for i in range(20):
        assert post_order(intake, f"{order_id}-{i}").status_code == 200
    assert count(db, "SELECT count(*) FROM verification_sessions WHERE order_id LIKE :p", p=f"{order_id}-%") == 20


def test_trailing_newline_does_not_make_a_second_order(intake, db, order_id):
    assert post_order(intake, order_id).status_code == 200
    assert signed_order(intake, order_json(order_id + "\n")).status_code == 422
    assert count(db, "SELECT count(*) FROM verification_sessions WHERE order_id LIKE :p", p=f"{order_id}%") == 1


def test_a_signed_order_from_2020_is_recorded_stale_not_opened(intake, db, order_id):
    response = post_order(intake, order_id, createdAt="2020-01-01T00:00:00Z")
    assert response.status_code == 200 and response.json["status"] == "ignored"
    assert rows_for_order(db, order_id)["verification_sessions"] == 0
    assert event_types(db, order_id) == ["order.stale"]
