"""Shopify's webhook source: the signature (a published vector, two secrets during a rotation,
the shop domain), the topic mapping, and real payload shapes."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from devstack.signing import SHOPIFY_SHOP_DOMAIN, shopify_headers, shopify_order
from shared.config import InboundSettings
from shared.domain.messages import IgnoredDelivery, OrderPlaced, StoreCancelled
from shared.errors import BadSignature, InvalidField, RouteDisabled, Unparseable
from shared.stores.shopify import ShopifySource, parse_shopify, verify_shopify

NOW = datetime(2026, 12, 6, tzinfo=timezone.utc)
NEW, OLD = "shpss_new_client_secret", "shpss_old_client_secret"

# A published vector: bold-commerce/go-shopify, oauth_test.go at commit 02fd1baf
# (TestVerifyWebhookRequest and its negative case), secret "hush" from goshopify_test.go's setup().
# The body is json.Marshal("my secret message"): the signed bytes include the double quotes.
GO_SHOPIFY_SECRET = "hush"
GO_SHOPIFY_BODY = b'"my secret message"'
GO_SHOPIFY_HMAC = "hMTq0K2x7oyOjoBwGYeTj5oxfnaVYXzbanUG9aajpKI="
GO_SHOPIFY_TAMPERED_BODY = b'"my invalid message"'

# The shape of Shopify's orders/create sample (the Admin REST order resource, as trigger.dev ships
# it for orders/create, orders/paid and orders/cancelled): a test order, voided and cancelled, with
# prices as strings, times with the shop's offset and the GraphQL id beside the numeric one.
# Values are ours; the numeric ids are exact 64-bit integers, as Shopify sends them.
SAMPLE_TEST_ORDER = {
    "id": 820982911946154508, "admin_graphql_api_id": "gid://shopify/Order/820982911946154508",
    "app_id": None, "buyer_accepts_marketing": True, "cancel_reason": "customer",
    "cancelled_at": "2021-12-31T19:00:00-05:00", "contact_email": "jon@example.com",
    "created_at": "2021-12-31T19:00:00-05:00", "currency": "USD", "current_total_price": "398.00",
    "email": "jon@example.com", "financial_status": "voided", "fulfillment_status": "pending",
    "name": "#9999", "order_number": 1234, "tags": "", "test": True, "total_price": "388.00",
    "total_price_set": {"shop_money": {"amount": "388.00", "currency_code": "USD"},
                        "presentment_money": {"amount": "388.00", "currency_code": "USD"}},
    "customer": {"id": 115310627314723954, "email": "john@example.com", "first_name": "John",
                 "last_name": "Smith", "admin_graphql_api_id": "gid://shopify/Customer/115310627314723954"},
    "line_items": [{"id": 866550311766439020, "price": "199.00", "quantity": 1}],
}


def source(*secrets: str, accept_test_orders: bool = False) -> ShopifySource:
    return ShopifySource(SHOPIFY_SHOP_DOMAIN, secrets or (NEW,), accept_test_orders)


def deliver(src: ShopifySource, order: dict, topic: str = "orders/paid", secret: str = NEW, **kw):
    body = json.dumps(order).encode()
    headers = shopify_headers(secret, body, topic, **kw)
    return src.parse(body, src.verify(headers, body, NOW), headers)


# ---- signature --------------------------------------------------------------------------------


def test_the_published_vector_verifies_and_its_tampered_body_does_not():
    verify_shopify([GO_SHOPIFY_SECRET], GO_SHOPIFY_HMAC, GO_SHOPIFY_BODY)
    with pytest.raises(BadSignature):
        verify_shopify([GO_SHOPIFY_SECRET], GO_SHOPIFY_HMAC, GO_SHOPIFY_TAMPERED_BODY)
    with pytest.raises(BadSignature):
        verify_shopify(["hush2"], GO_SHOPIFY_HMAC, GO_SHOPIFY_BODY)


def test_either_secret_of_a_rotation_verifies_and_a_third_does_not():
    src = source(NEW, OLD)
    assert deliver(src, shopify_order(5001), secret=NEW).order_id == "shopify:5001"
    assert deliver(src, shopify_order(5002), secret=OLD).order_id == "shopify:5002"
    with pytest.raises(BadSignature):
        deliver(src, shopify_order(5003), secret="shpss_someone_else")


def test_a_missing_or_garbled_signature_is_refused():
    body = json.dumps(shopify_order(5004)).encode()
    headers = shopify_headers(NEW, body)
    for value in (None, "", "not base64 at all", headers["X-Shopify-Hmac-Sha256"].lower()):
        changed = {k: v for k, v in headers.items() if k != "X-Shopify-Hmac-Sha256"}
        if value is not None:
            changed["X-Shopify-Hmac-Sha256"] = value
        with pytest.raises(BadSignature):
            source().verify(changed, body, NOW)


def test_a_signed_delivery_from_another_shop_is_refused():
    with pytest.raises(BadSignature, match="Shop-Domain"):
        deliver(source(), shopify_order(5005), shop_domain="another-shop.myshopify.com")
    body = json.dumps(shopify_order(5005)).encode()
    headers = {k: v for k, v in shopify_headers(NEW, body).items() if k != "X-Shopify-Shop-Domain"}
    with pytest.raises(BadSignature):
        source().verify(headers, body, NOW)


def test_the_shop_domain_and_header_names_are_compared_without_case():
    body = json.dumps(shopify_order(5006)).encode()
    headers = {k.lower(): v for k, v in shopify_headers(NEW, body, shop_domain=SHOPIFY_SHOP_DOMAIN.upper()).items()}
    assert source().verify(headers, body, NOW) == headers["x-shopify-webhook-id"]
    assert source().parse(body, headers["x-shopify-webhook-id"], headers).order_id == "shopify:5006"


def test_verify_returns_the_webhook_id_not_the_event_id():
    body = json.dumps(shopify_order(5007)).encode()
    headers = shopify_headers(NEW, body, webhook_id="b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")
    assert source().verify(headers, body, NOW) == "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"


def test_the_route_is_disabled_until_the_shop_and_a_secret_are_set():
    with pytest.raises(RouteDisabled):
        ShopifySource.from_settings(InboundSettings.from_env({}))
    with pytest.raises(RouteDisabled):
        ShopifySource.from_settings(InboundSettings.from_env({"SHOPIFY_SHOP_DOMAIN": SHOPIFY_SHOP_DOMAIN}))
    src = ShopifySource.from_settings(InboundSettings.from_env({
        "SHOPIFY_SHOP_DOMAIN": SHOPIFY_SHOP_DOMAIN, "SHOPIFY_CLIENT_SECRET": f"{NEW},{OLD}"}))
    assert src.client_secrets == (NEW, OLD) and NEW not in repr(src)


# ---- topics -----------------------------------------------------------------------------------


@pytest.mark.parametrize("topic", ["orders/create", "orders/paid"])
@pytest.mark.parametrize("status", ["paid", "partially_paid", "authorized"])
def test_a_paid_or_authorized_order_is_placed(topic, status):
    command = deliver(source(), shopify_order(6001, "buyer@example.com", financial_status=status,
                                              created_at="2026-12-05T09:30:00-05:00"), topic,
                      webhook_id="wh-1")
    assert command == OrderPlaced(
        provider="shopify", event_id="wh-1", order_id="shopify:6001", customer_email="buyer@example.com",
        customer_id=str(7_009_001_000_000 + 6001), order_total=Decimal("64.90"), currency="USD",
        ordered_at=datetime(2026, 12, 5, 14, 30, tzinfo=timezone.utc), store_ref="gid://shopify/Order/6001")


@pytest.mark.parametrize("status", ["pending", "voided", "refunded", "partially_refunded"])
def test_an_unpaid_order_is_recorded_as_ignored(status):
    command = deliver(source(), shopify_order(6002, financial_status=status), "orders/create", webhook_id="wh-2")
    assert command == IgnoredDelivery("shopify", "wh-2", "shopify:6002", reason="not_paid")


def test_a_test_order_is_ignored_unless_test_orders_are_accepted():
    order = shopify_order(6003, test=True)
    assert deliver(source(), order, webhook_id="wh-3") == IgnoredDelivery("shopify", "wh-3", "shopify:6003",
                                                                          reason="test_order")
    assert isinstance(deliver(source(accept_test_orders=True), order), OrderPlaced)


def test_a_cancelled_order_is_the_store_cancelling():
    command = deliver(source(), shopify_order(6004, cancelled=True), "orders/cancelled", webhook_id="wh-4")
    assert command == StoreCancelled(provider="shopify", event_id="wh-4", order_id="shopify:6004")


@pytest.mark.parametrize("topic", ["orders/updated", "orders/fulfilled", "customers/create", "app/uninstalled"])
def test_other_topics_are_ignored_without_a_record(topic):
    assert deliver(source(), shopify_order(6005), topic) is None


def test_no_topic_is_an_invalid_delivery():
    with pytest.raises(InvalidField) as caught:
        parse_shopify(None, json.dumps(shopify_order(6006)).encode(), "wh-6")
    assert caught.value.field == "X-Shopify-Topic" and caught.value.status == 422


def test_the_email_comes_from_contact_email_when_email_is_empty_and_none_is_ignored():
    order = {**shopify_order(6007, "first@example.com"), "email": None, "contact_email": "contact@example.com"}
    assert deliver(source(), order).customer_email == "contact@example.com"
    without = {**shopify_order(6008), "email": None, "contact_email": None, "customer": None}
    assert deliver(source(), without, webhook_id="wh-8") == IgnoredDelivery(
        "shopify", "wh-8", "shopify:6008", reason="no_customer_email")


def test_a_guest_order_has_no_customer_id():
    order = {**shopify_order(6009), "customer": None}
    assert deliver(source(), order).customer_id is None


# ---- bad deliveries are 4xx, never 5xx ---------------------------------------------------------


@pytest.mark.parametrize("body, error", [
    (b"not json", Unparseable),
    (b"[1, 2]", Unparseable),
    (b"{" * 100 + b"}" * 100, Unparseable),
    (json.dumps({"financial_status": "paid"}).encode(), InvalidField),  # no id
    (json.dumps({**shopify_order(6010), "id": "12ab"}).encode(), InvalidField),
    (json.dumps({**shopify_order(6011), "admin_graphql_api_id": "gid://shopify/Order/999"}).encode(), InvalidField),
    (json.dumps({**shopify_order(6012), "email": "not an email"}).encode(), InvalidField),
    (json.dumps({**shopify_order(6013), "total_price": "lots"}).encode(), InvalidField),
    (json.dumps({**shopify_order(6014), "created_at": "yesterday"}).encode(), InvalidField),
])
def test_a_signed_but_bad_body_is_a_client_error(body, error):
    with pytest.raises(error) as caught:
        parse_shopify("orders/paid", body, "wh-bad")
    assert 400 <= caught.value.status < 500


def test_a_missing_webhook_id_is_an_invalid_delivery():
    with pytest.raises(InvalidField) as caught:
        parse_shopify("orders/paid", json.dumps(shopify_order(6015)).encode(), None)
    assert caught.value.field == "X-Shopify-Webhook-Id"


# ---- real payload shapes -----------------------------------------------------------------------


def test_the_sample_orders_create_payload_is_a_test_order_and_ignored():
    command = deliver(source(), SAMPLE_TEST_ORDER, "orders/create", webhook_id="wh-s")
    assert command == IgnoredDelivery("shopify", "wh-s", "shopify:820982911946154508", reason="test_order")


def test_the_sample_shape_paid_and_live_is_placed_with_its_exact_ids():
    order = {**SAMPLE_TEST_ORDER, "test": False, "financial_status": "paid", "cancelled_at": None}
    command = deliver(source(), order, "orders/paid")
    assert (command.order_id, command.store_ref, command.customer_id, command.customer_email,
            command.order_total, command.ordered_at) == (
        "shopify:820982911946154508", "gid://shopify/Order/820982911946154508", "115310627314723954",
        "jon@example.com", Decimal("388.00"), datetime(2022, 1, 1, 0, 0, tzinfo=timezone.utc))


def test_the_sample_shape_cancelled_is_the_store_cancelling_even_for_a_test_order():
    command = deliver(source(), SAMPLE_TEST_ORDER, "orders/cancelled", webhook_id="wh-c")
    assert command == StoreCancelled("shopify", "wh-c", "shopify:820982911946154508")
