"""The generic store order webhook, signed per Standard Webhooks (DESIGN.md section 4)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from shared.config import InboundSettings
from shared.domain import fields as check
from shared.domain import keys
from shared.domain.messages import OrderPlaced
from shared.errors import BadSignature, InvalidField
from shared.inbound.source import json_object

TIMESTAMP_TOLERANCE_SECONDS = 5 * 60


@dataclass(frozen=True)
class OrdersSource:
    key: bytes = field(repr=False)
    path = "/webhooks/orders"
    content_type = "application/json"
    secret_variable = "ORDER_WEBHOOK_SECRET"

    @classmethod
    def from_settings(cls, settings: InboundSettings) -> OrdersSource:
        return cls(settings.order_webhook_secret)

    def verify(self, headers: Mapping[str, str], body: bytes, now: datetime) -> str:
        return verify_standard_webhook(self.key, headers, body, now)

    def parse(self, body: bytes, delivery_id: str | None,
              headers: Mapping[str, str] | None = None) -> OrderPlaced | None:
        return parse_order_webhook(delivery_id, body)


def verify_standard_webhook(key: bytes, headers, body: bytes, now: datetime) -> str:
    """Standard Webhooks: return the webhook id when a v1 signature matches."""
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not timestamp or not signatures:
        raise BadSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        skew = abs(now.timestamp() - int(timestamp))
    except (ValueError, OverflowError):  # OverflowError: an integer too large for a float
        raise BadSignature("webhook-timestamp is not Unix seconds") from None
    if skew > TIMESTAMP_TOLERANCE_SECONDS:
        raise BadSignature("webhook-timestamp outside the 5 minute tolerance")
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.digest(key, signed, hashlib.sha256))
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return msg_id
    raise BadSignature("no matching v1 signature")


def parse_order_webhook(event_id: str, body: bytes) -> OrderPlaced | None:
    """The generic order webhook; None for events other than `order.created`. The order id is
    the session key as it is (a reserved source prefix is refused: `shared.domain.keys`)."""
    data = json_object(body)
    if check.text(data.get("event"), "event") != "order.created":
        return None
    order_id = check.identifier(data.get("orderId"), "orderId")
    if keys.is_reserved(order_id):  # it would read as another source's order (shared.domain.keys)
        raise InvalidField("orderId may not begin with a lower-case word and ':' (the sources' key prefixes, "
                           "such as lightspeed:)", field="orderId")
    return OrderPlaced(
        provider=keys.GENERIC,
        event_id=check.identifier(event_id, "webhook-id"),
        order_id=keys.session_key(keys.GENERIC, order_id),
        customer_email=check.email(data.get("customerEmail"), "customerEmail"),
        customer_id=check.identifier(data.get("customerId"), "customerId", required=False),
        order_total=check.amount(data.get("orderTotal"), "orderTotal"),
        currency=check.currency(data.get("currency"), "currency"),
        ordered_at=check.timestamp(data.get("createdAt"), "createdAt"),
    )
