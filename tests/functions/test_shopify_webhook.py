"""`POST /webhooks/shopify` through `webhook_intake` (functions-framework's app, a real
PostgreSQL): a signed paid order opens `shopify:<id>`, anything unsigned, from another shop or
unreadable is a 4xx that stores nothing, and Shopify's own retries are duplicates."""

from __future__ import annotations

import json
import uuid

import pytest

from devstack.signing import SHOPIFY_SHOP_DOMAIN, shopify_headers, shopify_order
from tests.functions.conftest import client_for, count, rows_for_order
from tests.functions.test_inbound_edges import event_types
from tests.functions.test_webhook_intake import NOTHING

SECRET, OLD_SECRET = "shpss_functions_test_secret", "shpss_functions_test_old"


@pytest.fixture
def shop_intake(app_env):
    app_env(SHOPIFY_SHOP_DOMAIN=SHOPIFY_SHOP_DOMAIN, SHOPIFY_CLIENT_SECRET=f"{SECRET},{OLD_SECRET}")
    return client_for("webhook_intake")


@pytest.fixture
def number() -> int:
    return 5_000_000_000_000 + uuid.uuid4().int % 10**12  # a 13-digit Shopify order id of its own


def post(intake, order: dict | bytes, topic: str = "orders/paid", secret: str = SECRET, **kw):
    body = order if isinstance(order, bytes) else json.dumps(order).encode()
    headers = shopify_headers(secret, body, topic, **kw)
    return intake.post("/webhooks/shopify", data=body, headers=headers, content_type="application/json")


def test_a_signed_paid_order_opens_its_shopify_session(shop_intake, db, number):
    response = post(shop_intake, shopify_order(number, "buyer@example.com"))
    key = f"shopify:{number}"
    assert (response.status_code, response.json["status"], response.json["orderId"]) == (200, "accepted", key)
    assert rows_for_order(db, key) == {"verification_sessions": 1, "webhook_events": 1, "countdown_timers": 2,
                                       "event_log": 2, "outbox": 6}  # 2 events, 2 tasks, the link, the hold
    assert count(db, "SELECT count(*) FROM store_actions WHERE order_id = :o AND action = 'hold' "
                     "AND connector = 'shopify' AND state = 'due'", o=key) == 1
    assert count(db, "SELECT count(*) FROM verification_sessions WHERE order_id = :o AND source = 'shopify' "
                     "AND customer_email = 'buyer@example.com' AND status = 'pending'", o=key) == 1


def test_the_old_secret_still_verifies_during_a_rotation(shop_intake, db, number):
    assert post(shop_intake, shopify_order(number), secret=OLD_SECRET).json["status"] == "accepted"


def test_shopifys_retry_of_one_delivery_is_a_duplicate_and_create_then_paid_opens_one_session(
        shop_intake, db, number):
    order = shopify_order(number)
    first = post(shop_intake, order, "orders/create", webhook_id="wh-same")
    retried = post(shop_intake, order, "orders/create", webhook_id="wh-same")
    paid = post(shop_intake, order, "orders/paid")
    assert [r.json["status"] for r in (first, retried, paid)] == ["accepted", "duplicate", "duplicate"]
    assert rows_for_order(db, f"shopify:{number}")["verification_sessions"] == 1


def test_a_pending_order_is_ignored_and_recorded_then_its_payment_opens_the_session(shop_intake, db, number):
    pending = post(shop_intake, shopify_order(number, financial_status="pending"), "orders/create")
    assert (pending.status_code, pending.json["status"], pending.json["detail"]) == (200, "ignored", "not_paid")
    key = f"shopify:{number}"
    assert event_types(db, key) == ["order.ignored"] and rows_for_order(db, key)["verification_sessions"] == 0
    assert post(shop_intake, shopify_order(number), "orders/paid").json["status"] == "accepted"


def test_the_store_cancelling_cancels_the_session(shop_intake, db, number):
    post(shop_intake, shopify_order(number))
    cancelled = post(shop_intake, shopify_order(number, cancelled=True), "orders/cancelled")
    assert cancelled.status_code == 200 and cancelled.json["status"] == "accepted"
    assert count(db, "SELECT count(*) FROM verification_sessions WHERE order_id = :o AND status = 'cancelled'",
                 o=f"shopify:{number}") == 1


def test_a_bad_signature_is_401_and_stores_nothing(shop_intake, db, number):
    response = post(shop_intake, shopify_order(number), secret="shpss_not_ours")
    assert response.status_code == 401 and response.json["code"] == "bad_signature"
    assert rows_for_order(db, f"shopify:{number}") == NOTHING


def test_another_shops_delivery_is_401_and_stores_nothing(shop_intake, db, number):
    response = post(shop_intake, shopify_order(number), shop_domain="someone-else.myshopify.com")
    assert response.status_code == 401
    assert rows_for_order(db, f"shopify:{number}") == NOTHING


@pytest.mark.parametrize("body, status", [
    (b"\x00\xffnot json", 400),
    (b"[]", 400),
    (b'{"financial_status": "paid"}', 422),
])
def test_a_signed_garbage_body_is_4xx_and_stores_nothing(shop_intake, db, body, status):
    before = count(db, "SELECT count(*) FROM webhook_events WHERE provider = 'shopify'")
    response = post(shop_intake, body)
    assert response.status_code == status
    assert count(db, "SELECT count(*) FROM webhook_events WHERE provider = 'shopify'") == before


def test_an_unhandled_topic_is_200_ignored_and_stores_nothing(shop_intake, db, number):
    response = post(shop_intake, shopify_order(number), "orders/updated")
    assert (response.status_code, response.json["status"]) == (200, "ignored")
    assert rows_for_order(db, f"shopify:{number}") == NOTHING


def test_the_route_is_404_while_shopify_is_not_configured(intake, db, number):
    response = post(intake, shopify_order(number))
    assert response.status_code == 404 and response.json["code"] == "route_disabled"
    assert rows_for_order(db, f"shopify:{number}") == NOTHING
