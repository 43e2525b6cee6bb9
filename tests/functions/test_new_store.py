"""A new store is one line in the stores table (issue 21): a test-only store (`tests/acme_store.py`:
its settings section, webhook source and connector) registered from the test with its one line
in `shared.stores.registry.STORES`, and no other file edited, takes orders through the real
intake entry point into real PostgreSQL under its own key namespace (`acme:<id>`: no migration,
the key CHECK names no source), and its connector is asked to hold them by the real
`order-actions` subscriber."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import text

from shared.domain import keys
from shared.stores import registry
from shared.stores.registry import Store
from tests import acme_store
from tests.functions.conftest import client_for, count
from tests.functions.test_store_actions import Pump
from tests.functions.test_webhook_intake import post_order

SECRET = "acme-webhook-secret"


@pytest.fixture
def acme(app_env, monkeypatch):
    monkeypatch.setitem(registry.STORES, acme_store.NAME,
                        Store(acme_store.AcmeSource, acme_store.AcmeConnector.from_settings))  # the one line
    app_env(ACME_WEBHOOK_SECRET=SECRET, ACME_API_URL="https://acme.example")
    acme_store.RECEIVED.clear()
    yield
    acme_store.RECEIVED.clear()


def post_acme(intake, store_id: str, delivery: str | None = None):
    body = json.dumps({"id": store_id, "email": "buyer@example.com", "total": "19.90", "currency": "EUR"}).encode()
    return intake.post("/webhooks/acme", data=body, content_type="application/json", headers={
        "X-Acme-Signature": acme_store.sign(SECRET, body), "X-Acme-Delivery": delivery or uuid.uuid4().hex})


def session(db, key: str):
    with db.read() as conn:
        return conn.execute(text("SELECT source, status, order_total FROM verification_sessions WHERE order_id = :o"),
                            {"o": key}).one_or_none()


def test_a_new_store_takes_orders_under_its_own_key_and_its_connector_holds_them(acme, db):
    intake = client_for("webhook_intake")
    store_id = f"A-{uuid.uuid4().hex[:8]}"
    key = f"acme:{store_id}"

    answer = post_acme(intake, store_id)
    assert (answer.status_code, answer.json["status"], answer.json["orderId"]) == (200, "accepted", key)
    assert tuple(session(db, key)) == ("acme", "pending", Decimal("19.90"))
    assert count(db, "SELECT count(*) FROM verification_sessions WHERE order_id = :o", o=store_id) == 0
    with db.read() as conn:
        actions = conn.execute(text("SELECT action, connector, state FROM store_actions WHERE order_id = :o"),
                               {"o": key}).all()
    assert [tuple(a) for a in actions] == [("hold", "acme", "due")]

    # The real `order-actions` subscriber performs the hold through the store's connector.
    assert Pump(db, client_for("request_refund", "cloudevent"))(key) == [200]
    assert acme_store.RECEIVED == [("hold", key, store_id)]
    with db.read() as conn:
        assert conn.execute(text("SELECT state FROM store_actions WHERE order_id = :o"), {"o": key}).scalar_one() == "done"

    # A generic order with the same id is another session; one that looks like the store's key is refused.
    assert post_order(intake, store_id).status_code == 200
    assert session(db, store_id)[0] == "orders" and session(db, key)[0] == "acme"
    refused = post_order(intake, key)
    assert refused.status_code == 422 and refused.json["field"] == "orderId"
    assert keys.ref(key) == keys.OrderRef("acme", store_id)


def test_the_store_is_a_route_only_while_its_line_is_in_the_table(app_env):
    app_env(ACME_WEBHOOK_SECRET=SECRET)
    assert post_acme(client_for("webhook_intake"), "A-1").status_code == 404
