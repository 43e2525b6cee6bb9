"""Sign webhook bodies the way each sender does (for the local stack's examples and the bench)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import urlencode

from shared.adapters.veriff import LocalVerificationProvider


def standard_webhook_headers(secret: str, body: bytes, msg_id: str | None = None,
                             timestamp: int | None = None) -> dict[str, str]:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{msg_id}.{timestamp}.".encode() + body
    signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": f"v1,{signature}",
        "Content-Type": "application/json",
    }


def veriff_headers(shared_secret: str, api_key: str, body: bytes) -> dict[str, str]:
    return {
        "X-HMAC-SIGNATURE": hmac.new(shared_secret.encode(), body, hashlib.sha256).hexdigest(),
        "X-AUTH-CLIENT": api_key,
        "Content-Type": "application/json",
    }


def lightspeed_headers(client_secret: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(client_secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-Signature": f"signature={digest}, algorithm=HMAC-SHA256",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def order_body(order_id: str, email: str = "customer@example.com", **extra) -> bytes:
    return json.dumps({"event": "order.created", "orderId": order_id, "customerEmail": email,
                       **extra}).encode()


ADULT_BIRTH_DATE = "1990-01-01"
_STATUSES = {9001: "approved", 9102: "declined", 9103: "resubmission_requested",
             9104: "expired", 9121: "review"}
_EVENT_ACTIONS = {7001: "started", 7002: "submitted"}


def local_session_id(order_id: str) -> str:
    """The provider session id the local stack creates for an order (the local Veriff stand-in)."""
    return LocalVerificationProvider("http://127.0.0.1").create_session(order_id).session_id


def veriff_body(order_id: str, code: int, *, verification_id: str | None = None,
                decision_time: str | None = "2026-11-29T10:00:00.000Z", status: str | None = None,
                date_of_birth: str | None = ADULT_BIRTH_DATE) -> bytes:
    """A decision webhook shaped like Veriff's; an approval carries `person.dateOfBirth`."""
    verification = {
        "id": verification_id or local_session_id(order_id), "code": code,
        "status": status or _STATUSES.get(code, "unknown"), "vendorData": order_id,
        "reason": None, "reasonCode": None, "decisionTime": decision_time,
        "acceptanceTime": "2026-11-29T09:55:00.000Z", "endUserId": None,
        "document": {"type": "DRIVERS_LICENSE", "country": "US"}, "comments": [],
    }
    if code == 9001:
        verification["person"] = {"firstName": "SARAH", "lastName": "MORGAN", "gender": None,
                                  "dateOfBirth": date_of_birth, "yearOfBirth": str(date_of_birth)[:4] if date_of_birth else None}
    return json.dumps({"status": "success", "verification": verification,
                       "technicalData": {"ip": "192.0.2.1"}}).encode()


def veriff_event_body(order_id: str, code: int, *, verification_id: str | None = None,
                      attempt_id: str | None = None) -> bytes:
    """An event webhook shaped like Veriff's (7001 started, 7002 submitted)."""
    return json.dumps({
        "id": verification_id or local_session_id(order_id),
        "attemptId": attempt_id or str(uuid.uuid4()), "feature": "selfid", "code": code,
        "action": _EVENT_ACTIONS.get(code, "unknown"), "vendorData": order_id, "endUserId": None,
    }).encode()


def lightspeed_sale(sale_id: str, status: str = "CLOSED", *, email: str | None = "buyer@example.com",
                    total: str = "877.40000", return_for: str | None = None,
                    sale_date: str | None = None, version: int | None = None,
                    customer_id: str | None = None) -> dict:
    """A `sale.update` payload shaped like X-Series sends it (prices as 5-decimal strings,
    dates as `2019-07-26 17:31:40`; the sale date is now unless given). Each sale is a new
    customer account unless `customer_id` names one (verify once matches account and email)."""
    sale_date = sale_date or f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S}"
    customer_id = customer_id or str(uuid.uuid4())
    return {
        "id": sale_id, "status": status, "return_for": return_for, "sale_date": sale_date,
        "created_at": sale_date, "updated_at": sale_date.replace(" ", "T") + "+00:00",
        "version": version if version is not None else uuid.uuid4().int % 10**9,
        "customer_id": customer_id, "invoice_number": "12",
        "customer": {"id": customer_id, "email": email,
                     "customer_code": "WALKIN" if email is None else "Buyer-1", "date_of_birth": None},
        "register_sale_products": [{"price": "69.90000", "quantity": 1, "is_return": return_for is not None}],
        "totals": {"total_price": total, "total_tax": "0.00000", "total_payment": total,
                   "total_to_pay": "0.00000", "total_loyalty": "0.00000"},
    }


def lightspeed_body(sale: dict, *, type_: str | None = "sale.update") -> bytes:
    """The form body: `payload` (the sale as JSON) and, when given, `type`."""
    fields = {"domain_prefix": "teststore", "environment": "prod", "payload": json.dumps(sale)}
    if type_ is not None:
        fields["type"] = type_
    return urlencode(fields).encode()
