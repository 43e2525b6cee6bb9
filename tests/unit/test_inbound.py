"""Signature checks and parsing of the three webhook contracts (DESIGN.md section 4)."""

import base64
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from standardwebhooks.webhooks import Webhook

from devstack.signing import lightspeed_headers, veriff_body, veriff_headers
from shared import inbound
from shared.providers.veriff import inbound as veriff_inbound
from shared.domain.messages import IgnoredDelivery, OrderPlaced, StoreCancelled
from shared.domain.model import Decision
from shared.errors import BadSignature, InvalidField, Unparseable

KEY = b"0123456789abcdef0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(KEY).decode()
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
BODY = b'{"event":"order.created","orderId":"A-1","customerEmail":"a@example.com"}'


def signed_headers(body=BODY, msg_id="msg_1", at=NOW, secret=SECRET):
    signature = Webhook(secret).sign(msg_id, at, body.decode())
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signature}


def test_reference_signature_is_accepted():
    assert inbound.verify_standard_webhook(KEY, signed_headers(), BODY, NOW) == "msg_1"


def test_one_of_several_signatures_may_match():
    headers = signed_headers()
    headers["webhook-signature"] = "v1,AAAA " + headers["webhook-signature"]
    assert inbound.verify_standard_webhook(KEY, headers, BODY, NOW) == "msg_1"


@pytest.mark.parametrize("mutate", [
    lambda h: h.pop("webhook-signature"),
    lambda h: h.pop("webhook-id"),
    lambda h: h.pop("webhook-timestamp"),
    lambda h: h.update({"webhook-signature": "v1,not-base64!!"}),
    lambda h: h.update({"webhook-signature": "garbage"}),
    lambda h: h.update({"webhook-timestamp": "yesterday"}),
    lambda h: h.update({"webhook-timestamp": "9" * 400}),  # an int, but no float: not an OverflowError
    lambda h: h.update({"webhook-id": "msg_other"}),
    lambda h: h.update({"webhook-signature": h["webhook-signature"].replace("v1,", "v2,")}),
])
def test_bad_standard_webhook_headers(mutate):
    headers = signed_headers()
    mutate(headers)
    with pytest.raises(BadSignature):
        inbound.verify_standard_webhook(KEY, headers, BODY, NOW)


def test_tampered_body_and_wrong_secret_are_rejected():
    with pytest.raises(BadSignature):
        inbound.verify_standard_webhook(KEY, signed_headers(), BODY + b" ", NOW)
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    with pytest.raises(BadSignature):
        inbound.verify_standard_webhook(KEY, signed_headers(secret=other), BODY, NOW)


@pytest.mark.parametrize("skew, ok", [(299, True), (-299, True), (301, False), (-301, False)])
def test_timestamp_tolerance_is_five_minutes(skew, ok):
    headers = signed_headers(at=NOW + timedelta(seconds=skew))
    if ok:
        assert inbound.verify_standard_webhook(KEY, headers, BODY, NOW) == "msg_1"
    else:
        with pytest.raises(BadSignature):
            inbound.verify_standard_webhook(KEY, headers, BODY, NOW)


def test_veriff_signature():
    body = veriff_body("A-1", 9001)
    headers = veriff_headers("shh", "key", body)
    veriff_inbound.verify_veriff("shh", headers["X-HMAC-SIGNATURE"], body)
    veriff_inbound.verify_veriff("shh", headers["X-HMAC-SIGNATURE"].upper(), body)
    for bad in (None, "", "00" * 32, headers["X-HMAC-SIGNATURE"][:-1]):
        with pytest.raises(BadSignature):
            veriff_inbound.verify_veriff("shh", bad, body)
    with pytest.raises(BadSignature):
        veriff_inbound.verify_veriff("other", headers["X-HMAC-SIGNATURE"], body)


def test_lightspeed_signature_hex_and_base64():
    body = b"type=sale.update&payload=%7B%7D"
    hex_header = lightspeed_headers("cs", body)["X-Signature"]
    inbound.verify_lightspeed("cs", hex_header, body)
    import hashlib
    import hmac
    b64 = base64.b64encode(hmac.new(b"cs", body, hashlib.sha256).digest()).decode()
    inbound.verify_lightspeed("cs", f"signature={b64}, algorithm=HMAC-SHA256", body)
    for bad in (None, "signature=abc, algorithm=HMAC-SHA256", f"signature={b64}, algorithm=HMAC-SHA1",
                "algorithm=HMAC-SHA256"):
        with pytest.raises(BadSignature):
            inbound.verify_lightspeed("cs", bad, body)
    with pytest.raises(BadSignature):
        inbound.verify_lightspeed("other", hex_header, body)


@pytest.mark.parametrize("order_id", ["SHOP:A-1", "A-1:2", "1:a", "Shop:1"])
def test_a_generic_order_id_may_contain_a_colon(order_id):
    body = json.dumps({"event": "order.created", "orderId": order_id, "customerEmail": "a@example.com"})
    assert inbound.parse_order_webhook("m", body.encode()).order_id == order_id


@pytest.mark.parametrize("order_id", ["shop:A-1", "newstore:1", "lightspeed:1"])
def test_a_generic_order_id_may_not_begin_like_any_sources_key(order_id):
    # v16: every `<lower-case word>:` is reserved, a store's today or not (the key CHECK names no source).
    body = json.dumps({"event": "order.created", "orderId": order_id, "customerEmail": "a@example.com"})
    with pytest.raises(InvalidField) as refused:
        inbound.parse_order_webhook("m", body.encode())
    assert refused.value.field == "orderId"


def test_parse_order_webhook_fields():
    body = json.dumps({"event": "order.created", "orderId": "A-1", "customerEmail": "a@example.com",
                       "customerId": "c-9", "orderTotal": 42.5, "currency": "eur",
                       "createdAt": "2026-11-29T11:00:00Z"}).encode()
    cmd = inbound.parse_order_webhook("msg_1", body)
    assert cmd == OrderPlaced("orders", "msg_1", "A-1", "a@example.com", "c-9", Decimal("42.50"), "EUR",
                              datetime(2026, 11, 29, 11, 0, tzinfo=timezone.utc))


def test_other_order_events_are_ignored():
    assert inbound.parse_order_webhook("m", b'{"event": "order.updated"}') is None


@pytest.mark.parametrize("body, field", [
    ({"orderId": "A"}, "event"),
    ({"event": "order.created", "customerEmail": "a@example.com"}, "orderId"),
    ({"event": "order.created", "orderId": "A"}, "customerEmail"),
    ({"event": "order.created", "orderId": "A", "customerEmail": "nope"}, "customerEmail"),
    ({"event": "order.created", "orderId": {"x": 1}, "customerEmail": "a@example.com"}, "orderId"),
    ({"event": "order.created", "orderId": "A", "customerEmail": "a@example.com", "orderTotal": "x"}, "orderTotal"),
    ({"event": "order.created", "orderId": "A", "customerEmail": "a@example.com", "currency": "EURO"}, "currency"),
    ({"event": "order.created", "orderId": "A", "customerEmail": "a@example.com", "createdAt": "today"}, "createdAt"),
    ({"event": "order.created", "orderId": "A" * 201, "customerEmail": "a@example.com"}, "orderId"),
    # A reserved source prefix: it would read as that source's order (shared.domain.keys).
    ({"event": "order.created", "orderId": "lightspeed:A", "customerEmail": "a@example.com"}, "orderId"),
])
def test_invalid_order_fields_are_named(body, field):
    with pytest.raises(InvalidField) as error:
        inbound.parse_order_webhook("m", json.dumps(body).encode())
    assert error.value.field == field


@pytest.mark.parametrize("body", [b"", b"{", b"[1]", b"\xff\xfe", b'"text"'])
def test_unparseable_json(body):
    with pytest.raises(Unparseable):
        inbound.parse_order_webhook("m", body)


def lightspeed_form(sale: dict, kind: str = "sale.update") -> bytes:
    return urlencode({"type": kind, "payload": json.dumps(sale)}).encode()


def test_lightspeed_closed_sale_is_an_order():
    sale = {"id": "s-1", "status": "CLOSED", "version": 7, "customer": {"email": "a@example.com"},
            "customer_id": "c-1", "total_price": 10, "sale_date": "2026-11-29T10:00:00Z"}
    cmd = inbound.parse_lightspeed(lightspeed_form(sale))
    assert isinstance(cmd, OrderPlaced)
    assert (cmd.provider, cmd.order_id, cmd.event_id, cmd.customer_email) == (
        "lightspeed", "lightspeed:s-1", "s-1:CLOSED:7", "a@example.com")


def test_lightspeed_voided_sale_cancels_and_others_are_ignored():
    voided = inbound.parse_lightspeed(lightspeed_form({"id": "s-1", "status": "VOIDED", "version": 8}))
    assert voided == StoreCancelled("lightspeed", "s-1:VOIDED:8", "lightspeed:s-1")
    assert inbound.parse_lightspeed(lightspeed_form({"id": "s-1", "status": "SAVED"})) is None
    assert inbound.parse_lightspeed(lightspeed_form({"id": "p"}, kind="product.update")) is None


def test_lightspeed_errors():
    # A paid sale without a customer email is a walk-in: recorded and ignored, not a 422
    # (issue 10 item 4: a 4xx makes Lightspeed retry for 48 h).
    walk_in = inbound.parse_lightspeed(lightspeed_form({"id": "s-1", "status": "CLOSED"}))
    assert walk_in == IgnoredDelivery("lightspeed", "s-1:CLOSED:", "lightspeed:s-1", "no_customer_email")
    with pytest.raises(InvalidField) as error:
        inbound.parse_lightspeed(lightspeed_form({"id": "s-1", "status": "CLOSED",
                                                  "customer": {"email": "a@example.com\n"}}))
    assert error.value.field == "payload.customer.email"
    with pytest.raises(InvalidField) as error:
        inbound.parse_lightspeed(urlencode({"type": "sale.update"}).encode())
    assert error.value.field == "payload"
    with pytest.raises(Unparseable):
        inbound.parse_lightspeed(urlencode({"type": "sale.update", "payload": "{oops"}).encode())


@pytest.mark.parametrize("code, status, decision", [
    (9001, "approved", Decision.APPROVED),
    (9102, "declined", Decision.DECLINED),
    (9103, "resubmission_requested", Decision.RESUBMISSION_REQUESTED),
    (9104, "expired", Decision.EXPIRED),
    (9104, "abandoned", Decision.ABANDONED),
    (9121, "review", Decision.REVIEW),
])
def test_veriff_codes(code, status, decision):
    cmd = veriff_inbound.parse_veriff_decision(veriff_body("A-1", code, verification_id="v-1", status=status))
    assert (cmd.decision, cmd.order_id, cmd.verification_id, cmd.code) == (decision, "A-1", "v-1", code)


def test_veriff_unknown_code_and_missing_vendor_data():
    with pytest.raises(InvalidField) as error:
        veriff_inbound.parse_veriff_decision(veriff_body("A-1", 1234))
    assert error.value.field == "verification.code"
    body = json.loads(veriff_body("A-1", 9001))
    del body["verification"]["vendorData"]
    with pytest.raises(InvalidField) as error:
        veriff_inbound.parse_veriff_decision(json.dumps(body).encode())
    assert error.value.field == "verification.vendorData"


# ---- the source registry ------------------------------------------------------------


def test_each_path_finds_its_source_bound_to_its_secret():
    from shared.config import InboundSettings, ProviderSettings, StoreSettings, VeriffSettings, WooCommerceSettings
    from shared.errors import RouteDisabled
    settings = InboundSettings(order_webhook_secret=b"k" * 32, lightspeed_client_secret="cs",
                               providers=ProviderSettings(veriff=VeriffSettings(shared_secret="vs", api_key="ak")),
                               stores=StoreSettings(woocommerce=WooCommerceSettings(
                                   url="https://shop.example.com", webhook_secret="ws")))
    found = {path: inbound.source_for(path, settings) for path in inbound.sources() if path != "/webhooks/shopify"}
    assert {path: (s.path, s.content_type, s.secret_variable) for path, s in found.items()} == {
        "/webhooks/orders": ("/webhooks/orders", "application/json", "ORDER_WEBHOOK_SECRET"),
        "/webhooks/lightspeed": ("/webhooks/lightspeed", "application/x-www-form-urlencoded",
                                 "LIGHTSPEED_CLIENT_SECRET"),
        "/webhooks/veriff": ("/webhooks/veriff", "application/json", "VERIFF_SHARED_SECRET"),
        "/webhooks/woocommerce": ("/webhooks/woocommerce", ("application/json", "application/x-www-form-urlencoded"),
                                  "WOOCOMMERCE_WEBHOOK_SECRET"),
    }
    with pytest.raises(RouteDisabled):  # until the shop and its client secret are configured
        inbound.source_for("/webhooks/shopify", settings)
    assert all(secret not in repr(s) for s in found.values() for secret in ("vs", "ak", "cs", "kkkk", "ws"))
    with pytest.raises(RouteDisabled):
        inbound.source_for("/webhooks/lightspeed", InboundSettings())


def test_sources_verify_then_parse():
    from shared.config import InboundSettings, ProviderSettings, VeriffSettings
    settings = InboundSettings(lightspeed_client_secret="cs",
                               providers=ProviderSettings(veriff=VeriffSettings(shared_secret="vs", api_key="ak")))
    veriff = inbound.source_for("/webhooks/veriff", settings)
    body = veriff_body("A-1", 9102, verification_id="v-1")
    assert veriff.verify(veriff_headers("vs", "ak", body), body, datetime.now(timezone.utc)) is None
    assert veriff.parse(body, None).order_id == "A-1"
    with pytest.raises(BadSignature):
        veriff.verify(veriff_headers("vs", "not-the-key", body), body, datetime.now(timezone.utc))
    lightspeed = inbound.source_for("/webhooks/lightspeed", settings)
    form = lightspeed_form({"id": "s-1", "status": "VOIDED", "version": 1})
    lightspeed.verify(lightspeed_headers("cs", form), form, datetime.now(timezone.utc))
    assert lightspeed.parse(form, None) == StoreCancelled("lightspeed", "s-1:VOIDED:1", "lightspeed:s-1")
    with pytest.raises(BadSignature):
        lightspeed.verify(lightspeed_headers("other", form), form, datetime.now(timezone.utc))
