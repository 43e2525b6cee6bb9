"""`POST /webhooks/woocommerce` through `webhook_intake`, with a real PostgreSQL behind it (issue 21
section 4): a signed paid order opens `woocommerce:<id>`, a bad signature or garbage stores
nothing, the creation ping is answered 200 and stores nothing, the store's cancellation closes
the session."""

from __future__ import annotations

import uuid

import pytest

from devstack.signing import woocommerce_body, woocommerce_headers, woocommerce_order, woocommerce_ping
from tests.functions.conftest import client_for, count, rows_for_order
from tests.functions.test_webhook_intake import NOTHING

SECRET = "woocommerce-webhook-secret"
PATH = "/webhooks/woocommerce"


@pytest.fixture
def woo(app_env):
    app_env(WOOCOMMERCE_URL="https://shop.example.com", WOOCOMMERCE_WEBHOOK_SECRET=SECRET)
    return client_for("webhook_intake")


@pytest.fixture
def wc_id() -> int:
    return uuid.uuid4().int % 10**12


def post(client, order: dict, topic: str = "order.created", *, secret: str = SECRET, body: bytes | None = None):
    body = woocommerce_body(order) if body is None else body
    headers = woocommerce_headers(secret, body, topic)
    return client.post(PATH, data=body, headers=headers, content_type=headers.pop("Content-Type"))


def everything(db) -> dict[str, int]:
    return {table: count(db, f"SELECT count(*) FROM {table}")
            for table in ("verification_sessions", "webhook_events", "event_log", "outbox")}


def test_a_signed_paid_order_opens_its_session(woo, db, wc_id):
    key = f"woocommerce:{wc_id}"
    response = post(woo, woocommerce_order(wc_id, "processing", email="buyer@example.com", customer_id=0))
    assert response.status_code == 200, response.json
    assert (response.json["status"], response.json["orderId"]) == ("accepted", key)
    assert count(db, "SELECT count(*) FROM verification_sessions WHERE order_id = :o AND source = 'woocommerce' "
                     "AND status = 'pending' AND customer_email = 'buyer@example.com' AND customer_id IS NULL",
                 o=key) == 1
    assert count(db, "SELECT count(*) FROM webhook_events WHERE order_id = :o AND provider = 'woocommerce' "
                     "AND event_id = :e", o=key, e=f"{wc_id}:processing") == 1
    assert rows_for_order(db, key)["countdown_timers"] == 2


def test_the_same_status_again_is_a_duplicate_and_a_cancel_closes_the_session(woo, db, wc_id):
    key = f"woocommerce:{wc_id}"
    assert post(woo, woocommerce_order(wc_id)).json["status"] == "accepted"
    again = post(woo, woocommerce_order(wc_id), "order.updated")  # a fresh delivery id, the same status
    assert (again.status_code, again.json["status"]) == (200, "duplicate")
    assert count(db, "SELECT deliveries FROM webhook_events WHERE order_id = :o", o=key) == 2
    cancelled = post(woo, woocommerce_order(wc_id, "cancelled"), "order.updated")
    assert cancelled.status_code == 200 and cancelled.json["status"] == "accepted"
    assert count(db, "SELECT count(*) FROM verification_sessions WHERE order_id = :o AND status = 'cancelled'",
                 o=key) == 1


@pytest.mark.parametrize("case", ["wrong_secret", "missing", "tampered"])
def test_a_bad_signature_is_401_and_stores_nothing(woo, db, wc_id, case):
    order = woocommerce_order(wc_id)
    body = woocommerce_body(order)
    headers = woocommerce_headers("not-the-secret" if case == "wrong_secret" else SECRET, body)
    if case == "missing":
        del headers["X-WC-Webhook-Signature"]
    if case == "tampered":
        body = body.replace(b'"29.35"', b'"0.01"')
    response = woo.post(PATH, data=body, headers=headers, content_type=headers.pop("Content-Type"))
    assert response.status_code == 401 and response.json["code"] == "bad_signature"
    assert rows_for_order(db, f"woocommerce:{wc_id}") == NOTHING


def test_the_creation_ping_is_200_and_stores_nothing(woo, db):
    before = everything(db)
    body, headers = woocommerce_ping(7)
    response = woo.post(PATH, data=body, headers=headers, content_type=headers.pop("Content-Type"))
    assert (response.status_code, response.json["status"]) == (200, "ignored")
    assert everything(db) == before


@pytest.mark.parametrize("body, topic, status", [
    (b"not json", "order.created", 400),
    (b'{"id": 5, "status": "processing", "billing": {"email": "x"}}', "order.created", 422),
    (b"webhook_id=7&more=1", "order.created", 400),
])
def test_signed_garbage_is_a_4xx_and_stores_nothing(woo, db, body, topic, status):
    before = everything(db)
    response = post(woo, {}, topic, body=body)
    assert response.status_code == status, response.json
    assert everything(db) == before


def test_the_wrong_body_type_is_415(woo, db, wc_id):
    body = woocommerce_body(woocommerce_order(wc_id))
    headers = woocommerce_headers(SECRET, body)
    headers.pop("Content-Type")
    assert woo.post(PATH, data=body, headers=headers, content_type="text/plain").status_code == 415


@pytest.mark.parametrize("status", ["pending", "on-hold", "failed"])
def test_an_unpaid_order_is_ignored_and_stores_nothing(woo, db, wc_id, status):
    response = post(woo, woocommerce_order(wc_id, status), "order.updated")
    assert (response.status_code, response.json["status"]) == (200, "ignored")
    assert rows_for_order(db, f"woocommerce:{wc_id}") == NOTHING


def test_without_the_stores_settings_the_route_is_disabled(intake, db, wc_id):
    response = post(intake, woocommerce_order(wc_id))
    assert response.status_code == 404 and response.json["code"] == "route_disabled"
    assert rows_for_order(db, f"woocommerce:{wc_id}") == NOTHING
