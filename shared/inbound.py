"""Inbound webhooks (DESIGN.md section 4): signature checks on raw bytes, then parsing.

Every check runs on the exact bytes received, before anything is parsed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs

from shared.domain.messages import OrderPlaced, ProviderDecision, StoreCancelled
from shared.domain.model import VERIFF_CODES, Decision
from shared.errors import BadSignature, InvalidField, Unparseable

TIMESTAMP_TOLERANCE_SECONDS = 5 * 60
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")  # printable, bounded


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


def _json_object(body: bytes, where: str = "body") -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Unparseable(f"{where} is not valid JSON") from None
    if not isinstance(data, dict):
        raise Unparseable(f"{where} must be a JSON object")
    return data


def _text(data: dict, name: str, *, field: str | None = None, required: bool = True,
          pattern: re.Pattern | None = _ID) -> str | None:
    value = data.get(name)
    label = field or name
    if value is None or value == "":
        if required:
            raise InvalidField(f"{label} is required", field=label)
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidField(f"{label} must be a string", field=label)
    if pattern is not None and not pattern.match(value):
        raise InvalidField(f"{label} has an invalid format", field=label)
    return value


def _email(data: dict, name: str, field: str | None = None) -> str:
    value = _text(data, name, field=field, pattern=None)
    if len(value) > 254 or not _EMAIL.match(value):
        raise InvalidField(f"{field or name} is not an email address", field=field or name)
    return value


def _timestamp(value: Any, field: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, timezone.utc)
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise InvalidField(f"{field} is not an ISO 8601 time", field=field) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _amount(value: Any, field: str) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise InvalidField(f"{field} is not a number", field=field) from None
    if not amount.is_finite() or amount < 0 or amount >= Decimal("1e10"):
        raise InvalidField(f"{field} is out of range", field=field)
    return amount.quantize(Decimal("0.01"))


def _currency(data: dict, name: str, field: str | None = None) -> str | None:
    value = _text(data, name, field=field, required=False, pattern=re.compile(r"^[A-Za-z]{3}$"))
    return value.upper() if value else None


def parse_order_webhook(event_id: str, body: bytes) -> OrderPlaced | None:
    """The generic order webhook; None for events other than `order.created`."""
    data = _json_object(body)
    event = data.get("event")
    if not isinstance(event, str) or not event:
        raise InvalidField("event is required", field="event")
    if event != "order.created":
        return None
    return OrderPlaced(
        provider="orders",
        event_id=event_id,
        order_id=_text(data, "orderId"),
        customer_email=_email(data, "customerEmail"),
        customer_id=_text(data, "customerId", required=False),
        order_total=_amount(data.get("orderTotal"), "orderTotal"),
        currency=_currency(data, "currency"),
        ordered_at=_timestamp(data.get("createdAt"), "createdAt"),
    )


LIGHTSPEED_PAID = {"CLOSED", "ONACCOUNT_CLOSED", "LAYBY_CLOSED"}
LIGHTSPEED_VOIDED = {"VOIDED"}


def parse_lightspeed(body: bytes) -> OrderPlaced | StoreCancelled | None:
    """X-Series form body: `type` and a JSON `payload` (the sale)."""
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise Unparseable("body is not form-encoded") from None
    kind = (form.get("type") or [""])[0]
    if not kind:
        raise InvalidField("type is required", field="type")
    raw_payload = (form.get("payload") or [""])[0]
    if not raw_payload:
        raise InvalidField("payload is required", field="payload")
    sale = _json_object(raw_payload.encode(), "payload")
    if not kind.startswith("sale."):
        return None
    status = str(sale.get("status", "")).upper()
    sale_id = _text(sale, "id", field="payload.id")
    # A sale changes many times; its version (or update time) tells the deliveries apart.
    revision = sale.get("version") or sale.get("updated_at") or ""
    event_id = f"{sale_id}:{status}:{revision}"
    if status in LIGHTSPEED_VOIDED:
        return StoreCancelled(provider="lightspeed", event_id=event_id, order_id=sale_id)
    if status not in LIGHTSPEED_PAID:
        return None
    customer = sale.get("customer") if isinstance(sale.get("customer"), dict) else {}
    return OrderPlaced(
        provider="lightspeed",
        event_id=event_id,
        order_id=sale_id,
        customer_email=_email(customer, "email", field="payload.customer.email"),
        customer_id=_text(sale, "customer_id", field="payload.customer_id", required=False),
        order_total=_amount(sale.get("total_price"), "payload.total_price"),
        currency=_currency(sale, "currency", field="payload.currency"),
        ordered_at=_timestamp(sale.get("sale_date") or sale.get("created_at"), "payload.sale_date"),
    )


def parse_veriff_decision(body: bytes) -> ProviderDecision:
    data = _json_object(body)
    verification = data.get("verification")
    if not isinstance(verification, dict):
        raise InvalidField("verification is required", field="verification")
    verification_id = _text(verification, "id", field="verification.id")
    order_id = _text(verification, "vendorData", field="verification.vendorData")
    code = verification.get("code")
    if not isinstance(code, int) or isinstance(code, bool):
        raise InvalidField("verification.code must be an integer", field="verification.code")
    decision = VERIFF_CODES.get(code)
    if decision is None:
        raise InvalidField(f"unknown decision code {code}", field="verification.code")
    status = verification.get("status")
    if decision is Decision.EXPIRED and status == "abandoned":
        decision = Decision.ABANDONED
    decided_at = _timestamp(verification.get("decisionTime"), "verification.decisionTime")
    reason_code = verification.get("reasonCode")
    return ProviderDecision(
        provider="veriff",
        event_id=f"{verification_id}:{code}:{verification.get('decisionTime') or ''}",
        order_id=order_id,
        decision=decision,
        verification_id=verification_id,
        code=code,
        reason_code=reason_code if isinstance(reason_code, int) else None,
        decided_at=decided_at,
    )
