"""Sign webhook bodies the way each sender does (for the local stack's examples and the bench)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid


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


def veriff_body(order_id: str, code: int, *, verification_id: str | None = None,
                decision_time: str = "2026-11-29T10:00:00.000Z", status: str | None = None) -> bytes:
    statuses = {9001: "approved", 9102: "declined", 9103: "resubmission_requested",
                9104: "expired", 9121: "review"}
    return json.dumps({"status": "success", "verification": {
        "id": verification_id or str(uuid.uuid4()), "code": code,
        "status": status or statuses.get(code, "unknown"), "vendorData": order_id,
        "reason": None, "reasonCode": None, "decisionTime": decision_time,
    }}).encode()
