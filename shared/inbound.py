"""Inbound webhooks (DESIGN.md section 4): signature checks on raw bytes, then parsing.

Every check runs on the exact bytes received, before anything is parsed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from shared.domain import fields as check
from shared.domain.jsonsafe import loads_guarded
from shared.domain.messages import IgnoredDelivery, OrderPlaced, ProviderDecision, ProviderEvent, StoreCancelled
from shared.domain.model import VERIFF_CODES, VERIFF_EVENT_CODES, Decision
from shared.errors import BadSignature, InvalidField, Unparseable

TIMESTAMP_TOLERANCE_SECONDS = 5 * 60


# ---- signatures -------------------------------------------------------------


def verify_standard_webhook(key: bytes, headers, body: bytes, now: datetime) -> str:
    """Standard Webhooks: return the webhook id when a v1 signature matches."""
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not timestamp or not signatures:
        raise BadSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise BadSignature("webhook-timestamp is not Unix seconds") from None
    if abs(now.timestamp() - sent_at) > TIMESTAMP_TOLERANCE_SECONDS:
        raise BadSignature("webhook-timestamp outside the 5 minute tolerance")
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return msg_id
    raise BadSignature("no matching v1 signature")


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


def verify_veriff(secret: str, header: str | None, body: bytes) -> None:
    """`X-HMAC-SIGNATURE`: lowercase hex HMAC-SHA256 of the body."""
    if not header:
        raise BadSignature("missing X-HMAC-SIGNATURE")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(header.strip().lower().encode(), expected.encode()):
        raise BadSignature("X-HMAC-SIGNATURE does not match")


# ---- parsing ----------------------------------------------------------------


def _json_object(raw: bytes | str, where: str = "body") -> dict[str, Any]:
    data = loads_guarded(raw, where=where)
    if not isinstance(data, dict):
        raise Unparseable(f"{where} must be a JSON object", field=where)
    return data


def _nested(data: dict, name: str, field: str) -> dict[str, Any]:
    value = data.get(name)
    return {} if value is None else check.obj(value, field)


def parse_order_webhook(event_id: str, body: bytes) -> OrderPlaced | None:
    """The generic order webhook; None for events other than `order.created`."""
    data = _json_object(body)
    if check.text(data.get("event"), "event") != "order.created":
        return None
    return OrderPlaced(
        provider="orders",
        event_id=check.identifier(event_id, "webhook-id"),
        order_id=check.identifier(data.get("orderId"), "orderId"),
        customer_email=check.email(data.get("customerEmail"), "customerEmail"),
        customer_id=check.identifier(data.get("customerId"), "customerId", required=False),
        order_total=check.amount(data.get("orderTotal"), "orderTotal"),
        currency=check.currency(data.get("currency"), "currency"),
        ordered_at=check.timestamp(data.get("createdAt"), "createdAt"),
    )


# X-Series sale statuses: paid ones place the order (the e-commerce ones too), VOIDED cancels it;
# anything else (SAVED, ONACCOUNT, LAYBY: unpaid) is ignored.
LIGHTSPEED_PAID = frozenset({
    "CLOSED", "ONACCOUNT_CLOSED", "LAYBY_CLOSED", "DISPATCHED_CLOSED", "PICKED_UP_CLOSED",
    "SERVICE_CLOSED", "AWAITING_DISPATCH", "AWAITING_PICKUP",
})
LIGHTSPEED_VOIDED = "VOIDED"
LightspeedCommand = OrderPlaced | StoreCancelled | IgnoredDelivery


def parse_lightspeed(body: bytes) -> LightspeedCommand | None:
    """X-Series form body: a JSON `payload` (the sale) and, usually, `type`; None when ignored."""
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True,
                        max_num_fields=64)
    except (UnicodeDecodeError, ValueError):
        raise Unparseable("body is not form-encoded") from None
    kind = check.text((form.get("type") or [None])[0], "type", required=False)
    raw_payload = (form.get("payload") or [""])[0]
    if not raw_payload:
        raise InvalidField("payload is required", field="payload")
    sale = _json_object(raw_payload, "payload")
    if kind is not None and not kind.startswith("sale."):
        return None
    status = check.text(sale.get("status"), "payload.status").upper()
    sale_id = check.identifier(sale.get("id"), "payload.id")
    # A sale changes many times; its version (or update time) tells the deliveries apart.
    revision = check.identifier(sale.get("version") or sale.get("updated_at"), "payload.version",
                                required=False)
    event_id = f"{sale_id}:{status}:{revision or ''}"
    if status == LIGHTSPEED_VOIDED:
        return StoreCancelled(provider="lightspeed", event_id=event_id, order_id=sale_id)
    if status not in LIGHTSPEED_PAID:
        return None
    total = check.amount(_nested(sale, "totals", "payload.totals").get("total_price"),
                         "payload.totals.total_price", allow_negative=True)
    if sale.get("return_for") or (total is not None and total < 0):
        return IgnoredDelivery("lightspeed", event_id, sale_id, reason="return")
    customer = _nested(sale, "customer", "payload.customer")
    if customer.get("email") in (None, ""):
        return IgnoredDelivery("lightspeed", event_id, sale_id, reason="no_customer_email")
    date_field = "payload.sale_date" if sale.get("sale_date") else "payload.created_at"
    return OrderPlaced(
        provider="lightspeed",
        event_id=event_id,
        order_id=sale_id,
        customer_email=check.email(customer.get("email"), "payload.customer.email"),
        customer_id=check.identifier(sale.get("customer_id"), "payload.customer_id", required=False),
        order_total=total,
        currency=check.currency(sale.get("currency"), "payload.currency"),
        ordered_at=check.timestamp(sale.get("sale_date") or sale.get("created_at"), date_field),
    )


def parse_veriff(body: bytes) -> ProviderDecision | ProviderEvent:
    """A decision webhook (it has `verification`) or an event webhook (`code` 7001/7002)."""
    data = _json_object(body)
    if "verification" in data:
        return _veriff_decision(data)
    return _veriff_event(data)


def parse_veriff_decision(body: bytes) -> ProviderDecision:
    return _veriff_decision(_json_object(body))


def _veriff_decision(data: dict[str, Any]) -> ProviderDecision:
    verification = check.obj(data.get("verification"), "verification")
    verification_id = check.identifier(verification.get("id"), "verification.id")
    order_id = check.identifier(verification.get("vendorData"), "verification.vendorData")
    code = check.integer(verification.get("code"), "verification.code", maximum=99999)
    decision = VERIFF_CODES.get(code)
    if decision is None:
        raise InvalidField(f"unknown decision code {code}", field="verification.code")
    status = check.text(verification.get("status"), "verification.status", required=False)
    if decision is Decision.EXPIRED and status == "abandoned":
        decision = Decision.ABANDONED
    decision_time = check.text(verification.get("decisionTime"), "verification.decisionTime",
                               required=False, max_length=40)
    reason_code = verification.get("reasonCode")
    person = _nested(verification, "person", "verification.person")
    return ProviderDecision(
        provider="veriff",
        event_id=f"{verification_id}:{code}:{decision_time or ''}",
        order_id=order_id,
        decision=decision,
        verification_id=verification_id,
        code=code,
        reason_code=check.integer(reason_code, "verification.reasonCode", maximum=99999)
        if reason_code is not None else None,
        decided_at=check.timestamp(decision_time, "verification.decisionTime"),
        birth_date=check.calendar_date(person.get("dateOfBirth")),
    )


def _veriff_event(data: dict[str, Any]) -> ProviderEvent:
    verification_id = check.identifier(data.get("id"), "id")
    code = check.integer(data.get("code"), "code", maximum=99999)
    kind = VERIFF_EVENT_CODES.get(code)
    if kind is None:
        raise InvalidField(f"unknown event code {code}", field="code")
    attempt_id = check.identifier(data.get("attemptId"), "attemptId", required=False)
    check.text(data.get("action"), "action", required=False)
    return ProviderEvent(
        provider="veriff",
        event_id=f"{verification_id}:{code}:{attempt_id or ''}",
        order_id=check.identifier(data.get("vendorData"), "vendorData"),
        kind=kind,
        verification_id=verification_id,
    )
