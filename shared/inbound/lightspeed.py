"""Lightspeed Retail X-Series `sale.update` webhooks, as X-Series really sends them."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qs

from shared.config import InboundSettings
from shared.domain import fields as check
from shared.domain import keys
from shared.domain.messages import IgnoredDelivery, OrderPlaced, StoreCancelled
from shared.errors import BadSignature, InvalidField, RouteDisabled, Unparseable
from shared.inbound.source import json_object, nested


@dataclass(frozen=True)
class LightspeedSource:
    client_secret: str = field(repr=False)
    path = "/webhooks/lightspeed"
    content_type = "application/x-www-form-urlencoded"
    secret_variable = "LIGHTSPEED_CLIENT_SECRET"

    @classmethod
    def from_settings(cls, settings: InboundSettings) -> LightspeedSource:
        if not settings.lightspeed_client_secret:
            raise RouteDisabled("Lightspeed route disabled: LIGHTSPEED_CLIENT_SECRET is not set")
        return cls(settings.lightspeed_client_secret)

    def verify(self, headers: Mapping[str, str], body: bytes, now: datetime) -> None:
        verify_lightspeed(self.client_secret, headers.get("X-Signature"), body)

    def parse(self, body: bytes, delivery_id: str | None,
              headers: Mapping[str, str] | None = None) -> LightspeedCommand | None:
        return parse_lightspeed(body)


def verify_lightspeed(secret: str, header: str | None, body: bytes) -> None:
    """`X-Signature: signature=<hmac>, algorithm=HMAC-SHA256`, hex or base64."""
    if not header:
        raise BadSignature("missing X-Signature")
    fields = dict(
        part.strip().split("=", 1) for part in header.split(",") if "=" in part
    )
    given = fields.get("signature", "")
    if fields.get("algorithm", "HMAC-SHA256").upper() != "HMAC-SHA256" or not given:
        raise BadSignature("X-Signature must carry an HMAC-SHA256 signature")
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    if not (hmac.compare_digest(given.lower().encode(), digest.hex().encode())
            or hmac.compare_digest(given.encode(), base64.b64encode(digest))):
        raise BadSignature("X-Signature does not match")


# X-Series sale statuses: paid ones place the order (the e-commerce ones too), VOIDED cancels it;
# anything else (SAVED, ONACCOUNT, LAYBY: unpaid) is ignored.
LIGHTSPEED_PAID = frozenset({
    "CLOSED", "ONACCOUNT_CLOSED", "LAYBY_CLOSED", "DISPATCHED_CLOSED", "PICKED_UP_CLOSED",
    "SERVICE_CLOSED", "AWAITING_DISPATCH", "AWAITING_PICKUP",
})
LIGHTSPEED_VOIDED = "VOIDED"
LightspeedCommand = OrderPlaced | StoreCancelled | IgnoredDelivery


def parse_lightspeed(body: bytes) -> LightspeedCommand | None:
    """X-Series form body: a JSON `payload` (the sale) and, usually, `type`; None when ignored.

    Every command names the sale by its session key, `lightspeed:<sale id>` (`shared.domain.keys`),
    so a sale never touches a generic store order with the same id."""
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True,
                        max_num_fields=64)
    except (UnicodeDecodeError, ValueError):
        raise Unparseable("body is not form-encoded") from None
    kind = check.text((form.get("type") or [None])[0], "type", required=False)
    raw_payload = (form.get("payload") or [""])[0]
    if not raw_payload:
        raise InvalidField("payload is required", field="payload")
    sale = json_object(raw_payload, "payload")
    if kind is not None and not kind.startswith("sale."):
        return None
    status = check.text(sale.get("status"), "payload.status").upper()
    sale_id = check.identifier(sale.get("id"), "payload.id")
    key = keys.session_key(keys.LIGHTSPEED, sale_id)
    # A sale changes many times; its version (or update time) tells the deliveries apart.
    revision = check.identifier(sale.get("version") or sale.get("updated_at"), "payload.version",
                                required=False)
    event_id = f"{sale_id}:{status}:{revision or ''}"
    if status == LIGHTSPEED_VOIDED:
        return StoreCancelled(provider=keys.LIGHTSPEED, event_id=event_id, order_id=key)
    if status not in LIGHTSPEED_PAID:
        return None
    total = check.amount(nested(sale, "totals", "payload.totals").get("total_price"),
                         "payload.totals.total_price", allow_negative=True)
    if sale.get("return_for") or (total is not None and total < 0):
        return IgnoredDelivery(keys.LIGHTSPEED, event_id, key, reason="return")
    customer = nested(sale, "customer", "payload.customer")
    if customer.get("email") in (None, ""):
        return IgnoredDelivery(keys.LIGHTSPEED, event_id, key, reason="no_customer_email")
    date_field = "payload.sale_date" if sale.get("sale_date") else "payload.created_at"
    return OrderPlaced(
        provider=keys.LIGHTSPEED,
        event_id=event_id,
        order_id=key,
        customer_email=check.email(customer.get("email"), "payload.customer.email"),
        customer_id=check.identifier(sale.get("customer_id"), "payload.customer_id", required=False),
        order_total=total,
        currency=check.currency(sale.get("currency"), "payload.currency"),
        ordered_at=check.timestamp(sale.get("sale_date") or sale.get("created_at"), date_field),
    )
