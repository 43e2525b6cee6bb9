"""An order's whole life at each store, through the real entry points and the real connectors,
against the strict stand-ins over HTTP (issue 21): the store's webhook opens the session
(`webhook_intake`), a Veriff decision, the deadline timer (`timer_expiry`), the sweeper and the
console move it, and `request_refund` (the `order-actions` subscriber, driven by `Pump`) performs
each store action through `shared.stores.shopify` / `shared.stores.woocommerce` on
`devstack.stores.shopify` (Admin GraphQL, checked against Shopify's schema) and
`devstack.stores.woocommerce` (REST v3). Every assertion counts what the stand-in received, so a
store action that is not wired fails the test.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from devstack.signing import (SHOPIFY_SHOP_DOMAIN, shopify_headers, shopify_order, woocommerce_body,
                              woocommerce_headers, woocommerce_order)
from devstack.stores.shopify import ShopifyStandIn
from devstack.stores.woocommerce import WooCommerceStandIn
from shared.console import actions as console_actions
from shared.db import sessions
from tests.functions.conftest import client_for
from tests.functions.test_age_rule_and_binding import approve
from tests.functions.test_store_actions import ADULT, MINOR, Pump, action_states, events, expire, refund_requests
from tests.functions.test_subscribers import smtp  # noqa: F401  (the SMTP inbox fixture)
from tests.sessions import bind_provider_session

SHOPIFY_CLIENT_SECRET = "shpss_lifecycle_test_secret"
SHOPIFY_TOKEN = "shpat_lifecycle_test_token"
WC_WEBHOOK_SECRET = "woocommerce-lifecycle-secret"
WC_KEY, WC_SECRET = "ck_lifecycle_key", "cs_lifecycle_secret"


class Shopify:
    """The Shopify stand-in, and how the store's webhooks reach the intake."""

    name = "shopify"

    def __init__(self, app_env) -> None:
        self.standin = ShopifyStandIn(token=SHOPIFY_TOKEN, auto_create=True).start()
        app_env(SHOPIFY_SHOP_DOMAIN=SHOPIFY_SHOP_DOMAIN, SHOPIFY_CLIENT_SECRET=SHOPIFY_CLIENT_SECRET,
                SHOPIFY_ADMIN_TOKEN=SHOPIFY_TOKEN, SHOPIFY_ADMIN_URL=self.standin.url)

    def gid(self, number: int) -> str:
        return f"gid://shopify/Order/{number}"

    def place(self, intake, number: int) -> None:
        self._post(intake, shopify_order(number, "buyer@example.com"), "orders/paid")

    def cancel_at_store(self, intake, number: int) -> None:
        self.standin.orders[self.gid(number)].cancelled_at = "2026-12-06T18:00:00Z"  # the store's own state first
        self._post(intake, shopify_order(number, cancelled=True), "orders/cancelled")

    def _post(self, intake, order: dict, topic: str) -> None:
        import json

        body = json.dumps(order).encode()
        response = intake.post("/webhooks/shopify", data=body, headers=shopify_headers(SHOPIFY_CLIENT_SECRET, body, topic),
                               content_type="application/json")
        assert response.status_code == 200, response.json

    def holds_placed(self, number: int) -> int:
        return self.standin.mutation_count("fulfillmentOrderHold", self.gid(number))

    def releases(self, number: int) -> int:
        return self.standin.mutation_count("fulfillmentOrderReleaseHold", self.gid(number))

    def cancels(self, number: int) -> int:
        return self.standin.mutation_count("orderCancel", self.gid(number))

    def refunds(self, number: int) -> int:
        """orderCancel refunds to the original payment methods: one refund per cancel received."""
        return self.cancels(number)

    def stop(self) -> None:
        self.standin.stop()


class WooCommerce:
    name = "woocommerce"

    def __init__(self, app_env) -> None:
        self.standin = WooCommerceStandIn(WC_KEY, WC_SECRET, autocreate=True).start()
        app_env(WOOCOMMERCE_URL=self.standin.url, WOOCOMMERCE_WEBHOOK_SECRET=WC_WEBHOOK_SECRET,
                WOOCOMMERCE_CONSUMER_KEY=WC_KEY, WOOCOMMERCE_CONSUMER_SECRET=WC_SECRET)

    def place(self, intake, number: int) -> None:
        self._post(intake, woocommerce_order(number, "processing"), "order.created")

    def cancel_at_store(self, intake, number: int) -> None:
        self.standin.set_status(number, "cancelled")
        self._post(intake, woocommerce_order(number, "cancelled"), "order.updated")

    def _post(self, intake, order: dict, topic: str) -> None:
        body = woocommerce_body(order)
        headers = woocommerce_headers(WC_WEBHOOK_SECRET, body, topic)
        response = intake.post("/webhooks/woocommerce", data=body, headers=headers,
                               content_type=headers.pop("Content-Type"))
        assert response.status_code == 200, response.json

    def holds_placed(self, number: int) -> int:
        return self.standin.statuses(number).count("on-hold")

    def releases(self, number: int) -> int:
        return self.standin.statuses(number).count("processing")

    def cancels(self, number: int) -> int:
        return self.standin.statuses(number).count("cancelled")

    def refunds(self, number: int) -> int:
        return self.standin.count(number, "create_refund")

    def stop(self) -> None:
        self.standin.stop()


@pytest.fixture(params=[Shopify, WooCommerce], ids=["shopify", "woocommerce"])
def shop(request, app_env):
    store_ = request.param(app_env)
    yield store_
    store_.stop()


@pytest.fixture
def intake(shop):
    return client_for("webhook_intake")


@pytest.fixture
def pump(db, shop):
    return Pump(db, client_for("request_refund", "cloudevent"))


@pytest.fixture
def number() -> int:
    return 5_000_000_000_000 + uuid.uuid4().int % 10**12


def placed(shop, intake, pump, db, number) -> tuple[str, str]:
    """The store's paid order opened its session, the link's provider session is bound, and the
    hold went to the store. Returns the session key and the provider session id."""
    shop.place(intake, number)
    key = f"{shop.name}:{number}"
    session_id = str(uuid.uuid4())
    bind_provider_session(db, key, session_id)
    assert pump(key) == [200]
    assert action_states(db, key) == {("hold", shop.name): "done"}
    return key, session_id


def test_a_placed_order_is_held_at_the_store(shop, intake, pump, db, number):
    if shop.name == "shopify":  # two open fulfillment orders: one hold on each
        shop.standin.add_order(number, fulfillment_orders=2)
    key, _ = placed(shop, intake, pump, db, number)

    assert shop.holds_placed(number) == (2 if shop.name == "shopify" else 1)
    assert pump(key, again=True) == [200]  # delivered again: nothing more at the store
    assert shop.holds_placed(number) == (2 if shop.name == "shopify" else 1)
    assert len(events(db, key, "store.held")) == 1
    if shop.name == "shopify":
        assert len(shop.standin.holds(shop.gid(number))) == 2
        assert events(db, key, "store.held")[0]["connector"] == "shopify"
    else:
        assert shop.standin.order(number)["status"] == "on-hold"


def test_verified_releases_only_our_holds(shop, intake, pump, db, number):
    key, session = placed(shop, intake, pump, db, number)
    foreign = None
    if shop.name == "shopify":  # a fraud app holds the order too: its hold must stay
        foreign = shop.standin.add_foreign_hold(shop.gid(number))

    assert approve(intake, key, session, ADULT).json["status"] == "accepted"
    assert pump(key) == [200]
    pump(key, again=True)

    assert shop.releases(number) == 1 and shop.cancels(number) == 0 and shop.refunds(number) == 0
    assert action_states(db, key)[("release", shop.name)] == "done"
    assert len(events(db, key, "store.released")) == 1
    if shop.name == "shopify":
        [released] = [m for m in shop.standin.mutations if m.name == "fulfillmentOrderReleaseHold"]
        assert released.variables["holdIds"] and foreign not in released.variables["holdIds"]
        assert [h.id for h in shop.standin.holds(shop.gid(number))] == [foreign]
    else:
        assert shop.standin.order(number)["status"] == "processing"


def test_expired_is_cancelled_and_refunded_once_even_delivered_twice_and_re_driven(shop, intake, pump, db, number):
    key, _ = placed(shop, intake, pump, db, number)
    expire(db, key)

    assert pump(key) == [200]
    assert pump(key, again=True) == [200, 200]  # every message delivered a second time
    assert shop.cancels(number) == 1 and shop.refunds(number) == 1

    # An attempt that reached the store and died before recording it: the sweeper re-drives it
    # once its lease passed, and the connector reads the store's state before acting again.
    with db.transaction() as conn:
        conn.execute(text("UPDATE store_actions SET state = 'leased', finished_at = NULL, "
                          "lease_until = now() - interval '1 second' "
                          "WHERE order_id = :o AND action = 'cancel_and_refund'"), {"o": key})
    assert client_for("sweep").post("/", json={}).json["redriven"] >= 1
    pump(key)
    pump(key, again=True)

    assert shop.cancels(number) == 1 and shop.refunds(number) == 1 and shop.releases(number) == 0
    assert action_states(db, key)[("cancel_and_refund", shop.name)] == "done"
    assert refund_requests(db, key) == 0  # the store refunded: REFUND_BACKEND is not asked
    with db.read() as conn:
        session = sessions.load_session(conn, key)
    assert (session["status"], session["refund_status"]) == ("expired", "refunded")
    if shop.name == "woocommerce":
        assert shop.standin.refund_count(number) == 1 and shop.standin.order(number)["status"] == "cancelled"
    else:
        assert shop.standin.orders[shop.gid(number)].cancelled_at is not None


def test_declined_as_underage_is_cancelled_and_refunded(shop, intake, pump, db, number):
    key, session = placed(shop, intake, pump, db, number)

    assert approve(intake, key, session, MINOR).json["status"] == "accepted"
    pump(key)
    pump(key, again=True)

    assert shop.cancels(number) == 1 and shop.refunds(number) == 1 and shop.releases(number) == 0
    assert len(events(db, key, "store.cancelled")) == 1
    with db.read() as conn:
        assert sessions.session_status(conn, key) == "declined"


def test_the_store_cancels_first_and_is_asked_for_no_cancel_or_refund(shop, intake, pump, db, number):
    key, _ = placed(shop, intake, pump, db, number)

    shop.cancel_at_store(intake, number)
    pump(key)
    client_for("sweep").post("/", json={})
    pump(key)

    with db.read() as conn:
        assert sessions.session_status(conn, key) == "cancelled"
    assert shop.holds_placed(number) >= 1  # the hold went; then nothing more
    assert shop.cancels(number) == 0 and shop.refunds(number) == 0 and shop.releases(number) == 0
    if shop.name == "woocommerce":
        assert shop.standin.count(number, "update_order") == 1  # our on-hold; the cancel was the store's
        assert shop.standin.refund_count(number) == 0
    assert events(db, key, "store.cancelled") == [] and events(db, key, "refund.completed") == []
    assert refund_requests(db, key) == 0


def test_an_operator_verify_after_the_hold_releases_it(shop, intake, pump, db, number):
    key, _ = placed(shop, intake, pump, db, number)

    result = console_actions.run("verify", console_actions.Request(key, "staff@example.com",
                                                                   reason="id_checked_in_store"))
    assert result.accepted
    pump(key)

    assert shop.releases(number) == 1 and shop.cancels(number) == 0 and shop.refunds(number) == 0
    assert len(events(db, key, "store.released")) == 1


def test_the_verified_email_promises_shipping_once_the_store_was_told(shop, app_env, smtp, intake, pump, db,
                                                                      number):
    from tests.functions.test_subscribers import deliver, email_job

    inbox, port = smtp
    app_env(EMAIL_BACKEND="smtp", SMTP_PORT=str(port), SMTP_STARTTLS="false")  # the store's settings stay
    key, session = placed(shop, intake, pump, db, number)
    assert approve(intake, key, session, ADULT).json["status"] == "accepted"
    pump(key)
    assert shop.releases(number) == 1

    email = client_for("send_customer_email", "cloudevent")
    assert deliver(email, "customer-emails", email_job(key, "verified"), key="v", order_id=key).status_code == 200
    body = inbox.messages[-1].get_body(("plain",)).get_content()
    assert "prepared for shipping" in body
    assert str(number) in body and key not in body  # the store's own order number, never our key
