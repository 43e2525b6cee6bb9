"""WooCommerce order webhooks (issue 21 section 4): the signature, the ping, the real payload's
shape, and what each status means.

Fixtures are built by devstack.signing in the shape of WooCommerce's REST API v3 order object,
which is what its order webhooks carry (WooCommerce REST API docs, "Create an order" response;
`WC_Webhook::deliver()`), sent as `wp_json_encode` output."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from devstack.signing import woocommerce_body, woocommerce_headers, woocommerce_order, woocommerce_ping
from shared import inbound
from shared.config import InboundSettings, StoreSettings, WooCommerceSettings
from shared.domain.messages import IgnoredDelivery, OrderPlaced, StoreCancelled
from shared.errors import BadSignature, InvalidField, RouteDisabled, Unparseable
from shared.stores.woocommerce import WooCommerceSource, is_ping, parse_woocommerce, verify_woocommerce

SECRET = "a-webhook-secret"
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)

# A published vector: a public gist's Lambda test event for a WooCommerce "order updated to
# completed" webhook, signed with the secret "woocommerce" (the gist's title):
# https://gist.github.com/teer823/58d24c62595d02b67c80e7e90f6fdab8 (revision c7c8a0d8…,
# woocommerce-order-update-event-sample-labmda.json). The body holds one non-ASCII character
# (U+0E48 before "Item-1"): the HMAC is over its UTF-8 bytes.
VECTOR_SECRET = "woocommerce"
VECTOR_BODY = (
    '{"status":"completed","billing":{"first_name":"Jamy","last_name":"","company":"","address_1":"",'
    '"address_2":"","city":"","state":"","postcode":"","country":"","email":"jamy@example.com",'
    '"phone":"0888889999"},"customer_note":"","line_items":[{"id":90,"name":"\u0e48Item-1 Sample Produc",'
    '"product_id":23,"variation_id":0,"quantity":1,"tax_class":"","subtotal":"200.00","subtotal_tax":"0.00",'
    '"total":"200.00","total_tax":"0.00","taxes":[],"meta_data":[],"sku":"","price":200,"parent_name":null}]}'
).encode("utf-8")
VECTOR_SIGNATURE = "errtu1XQr0dm48Yz3ufiVvCgrcu2kin+H7WYQQ8Y0fE="


def source(secret: str = SECRET) -> WooCommerceSource:
    settings = InboundSettings(stores=StoreSettings(woocommerce=WooCommerceSettings(
        url="https://shop.example.com", webhook_secret=secret)))
    return inbound.source_for("/webhooks/woocommerce", settings)


def delivery(order: dict, topic: str = "order.created", secret: str = SECRET) -> tuple[bytes, dict]:
    body = woocommerce_body(order)
    return body, woocommerce_headers(secret, body, topic)


# ---- the signature --------------------------------------------------------------------------


def test_the_published_vector_verifies():
    verify_woocommerce(VECTOR_SECRET, VECTOR_SIGNATURE, VECTOR_BODY)
    with pytest.raises(BadSignature):
        verify_woocommerce("not-the-secret", VECTOR_SIGNATURE, VECTOR_BODY)
    with pytest.raises(BadSignature):  # one byte of the body changed
        verify_woocommerce(VECTOR_SECRET, VECTOR_SIGNATURE, VECTOR_BODY.replace(b"200.00", b"100.00", 1))


def test_the_vector_body_verifies_through_the_source_and_is_a_placed_order_without_an_id():
    wc = source(VECTOR_SECRET)
    headers = {"X-WC-Webhook-Signature": VECTOR_SIGNATURE, "X-WC-Webhook-Topic": "order.updated",
               "X-WC-Webhook-Delivery-ID": "d-1"}
    assert wc.verify(headers, VECTOR_BODY, NOW) == "d-1"
    with pytest.raises(InvalidField) as error:  # the gist trimmed the order: no id
        wc.parse(VECTOR_BODY, "d-1", headers)
    assert error.value.field == "id"


@pytest.mark.parametrize("case", ["missing", "wrong", "other_secret", "hex", "reserialised"])
def test_bad_signatures_are_refused(case):
    order = woocommerce_order(727)
    body, headers = delivery(order, secret="other" if case == "other_secret" else SECRET)
    if case == "missing":
        del headers["X-WC-Webhook-Signature"]
    elif case == "wrong":
        headers["X-WC-Webhook-Signature"] = "errtu1XQr0dm48Yz3ufiVvCgrcu2kin+H7WYQQ8Y0fE="
    elif case == "hex":
        import hashlib
        import hmac
        headers["X-WC-Webhook-Signature"] = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    elif case == "reserialised":  # the same JSON, spaced differently: not the bytes signed
        body = json.dumps(order).encode()
    with pytest.raises(BadSignature):
        source().verify(headers, body, NOW)


def test_headers_are_found_in_any_case():
    body, headers = delivery(woocommerce_order(727))
    lower = {name.lower(): value for name, value in headers.items()}
    assert source().verify(lower, body, NOW) == headers["X-WC-Webhook-Delivery-ID"]
    assert isinstance(source().parse(body, "d", lower), OrderPlaced)


def test_the_route_needs_the_store_url_and_the_webhook_secret():
    for woo in (WooCommerceSettings(), WooCommerceSettings(url="https://shop.example.com"),
                WooCommerceSettings(webhook_secret="s")):
        with pytest.raises(RouteDisabled):
            inbound.source_for("/webhooks/woocommerce", InboundSettings(stores=StoreSettings(woocommerce=woo)))
    wc = source()
    assert (wc.path, wc.secret_variable) == ("/webhooks/woocommerce", "WOOCOMMERCE_WEBHOOK_SECRET")
    assert SECRET not in repr(wc)


# ---- the ping -------------------------------------------------------------------------------


def test_the_ping_is_answered_and_parses_to_nothing():
    body, headers = woocommerce_ping(12)
    wc = source()
    assert "application/x-www-form-urlencoded" in wc.content_type
    assert wc.verify(headers, body, NOW) is None
    assert wc.parse(body, None, headers) is None


@pytest.mark.parametrize("body", [b"webhook_id=", b"webhook_id=3&x=1", b"webhook_id=3\n", b"{}", b"id=3"])
def test_only_the_exact_ping_body_goes_unsigned(body):
    assert not is_ping(body)
    with pytest.raises(BadSignature):
        source().verify({"Content-Type": "application/x-www-form-urlencoded"}, body, NOW)


def test_a_signed_ping_shaped_body_is_still_checked():
    body, _ = woocommerce_ping(3)
    with pytest.raises(BadSignature):
        source().verify({"X-WC-Webhook-Signature": "AAAA"}, body, NOW)


# ---- the real payload's shape ---------------------------------------------------------------


def test_a_paid_order_is_placed_with_the_stores_facts():
    order = woocommerce_order(727, "processing", email="john.doe@example.com", total="29.35",
                              created_gmt="2017-03-22T19:28:02")
    cmd = parse_woocommerce(woocommerce_body(order), "order.created")
    assert cmd == OrderPlaced(
        provider="woocommerce", event_id="727:processing", order_id="woocommerce:727",
        customer_email="john.doe@example.com", customer_id=None, order_total=Decimal("29.35"), currency="USD",
        ordered_at=datetime(2017, 3, 22, 19, 28, 2, tzinfo=timezone.utc), store_ref="727")


def test_a_guest_has_no_customer_id_and_a_customer_has_one():
    guest = parse_woocommerce(woocommerce_body(woocommerce_order(8, customer_id=0)), "order.created")
    member = parse_woocommerce(woocommerce_body(woocommerce_order(9, customer_id=42)), "order.created")
    assert (guest.customer_id, member.customer_id) == (None, "42")


@pytest.mark.parametrize("status", ["processing", "completed"])
@pytest.mark.parametrize("topic", ["order.created", "order.updated"])
def test_paid_statuses_place_the_order(status, topic):
    cmd = parse_woocommerce(woocommerce_body(woocommerce_order(727, status)), topic)
    assert isinstance(cmd, OrderPlaced) and cmd.event_id == f"727:{status}"


@pytest.mark.parametrize("status", ["cancelled", "refunded"])
def test_cancelled_or_refunded_by_the_store_cancels(status):
    cmd = parse_woocommerce(woocommerce_body(woocommerce_order(727, status)), "order.updated")
    assert cmd == StoreCancelled("woocommerce", f"727:{status}", "woocommerce:727")


@pytest.mark.parametrize("status", ["pending", "on-hold", "failed", "checkout-draft", "trash"])
def test_unpaid_statuses_are_ignored(status):
    assert parse_woocommerce(woocommerce_body(woocommerce_order(727, status)), "order.updated") is None


@pytest.mark.parametrize("topic", ["order.deleted", "order.restored", "product.updated", "action.woocommerce_x"])
def test_other_topics_are_ignored(topic):
    assert parse_woocommerce(b'{"id":727}', topic) is None


def test_a_repeated_status_is_one_event_and_a_new_status_another():
    created = parse_woocommerce(woocommerce_body(woocommerce_order(727, "processing")), "order.created")
    edited = parse_woocommerce(woocommerce_body(woocommerce_order(727, "processing")), "order.updated")
    cancelled = parse_woocommerce(woocommerce_body(woocommerce_order(727, "cancelled")), "order.updated")
    assert created.event_id == edited.event_id != cancelled.event_id


@pytest.mark.parametrize("email", [None, ""])
def test_an_order_without_an_email_is_recorded_not_refused(email):
    cmd = parse_woocommerce(woocommerce_body(woocommerce_order(727, email=email)), "order.created")
    assert cmd == IgnoredDelivery("woocommerce", "727:processing", "woocommerce:727", reason="no_customer_email")


@pytest.mark.parametrize("change, field", [
    ({"id": None}, "id"),
    ({"id": "7\n"}, "id"),
    ({"id": "727"}, "id"),  # the REST API writes ids as integers
    ({"id": 0}, "id"),
    ({"id": True}, "id"),
    ({"status": None}, "status"),
    ({"total": "lots"}, "total"),
    ({"currency": "dollars"}, "currency"),
    ({"date_created_gmt": "22/03/2017"}, "date_created_gmt"),
    ({"billing": "john@example.com"}, "billing"),
    ({"billing": {"email": "not an email"}}, "billing.email"),
])
def test_malformed_orders_name_the_field(change, field):
    order = {**woocommerce_order(727), **change}
    with pytest.raises(InvalidField) as error:
        parse_woocommerce(woocommerce_body(order), "order.created")
    assert error.value.field == field


def test_garbage_and_a_missing_topic_are_refused():
    with pytest.raises(Unparseable):
        parse_woocommerce(b"not json", "order.created")
    with pytest.raises(Unparseable):
        parse_woocommerce(b"[1, 2]", "order.created")
    with pytest.raises(InvalidField) as error:
        parse_woocommerce(woocommerce_body(woocommerce_order(727)), None)
    assert error.value.field == "X-WC-Webhook-Topic"


def test_the_escaped_slashes_of_wp_json_encode_are_read():
    body = woocommerce_body(woocommerce_order(727))
    assert b"https:\\/\\/" in body
    assert parse_woocommerce(body, "order.created").order_id == "woocommerce:727"
