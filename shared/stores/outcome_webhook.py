"""Signed outcome webhooks for any store (DESIGN.md 4b, issue 21 section 5): the outbound part
every source shares, the generic one's included.

`POST OUTCOME_WEBHOOK_URL` with `{"type", "orderId", "source", "occurredAt"}` (the store's own
id and source, never our key; no customer email, no date of birth), signed per Standard
Webhooks: `webhook-id` is stable per event (derived from the order and the type), so a
receiver de-duplicates a retry; `webhook-timestamp` is the send time, and `webhook-signature`
`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed with the `whsec_` secret's bytes.

Answers: 2xx (409 too: the receiver already has it) is done; 401/403 (our secret rotated
there), 404, 408, 429 (with its `Retry-After`), 5xx and no answer are StoreUnavailable (retried
with backoff as long as it takes: the claim keeps it due, the sweeper re-drives it); any other
4xx is a refusal, recorded with the status as its code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from shared.config import StoreSettings
from shared.domain import keys
from shared.errors import ConfigError
from shared.stores.base import ActionResult, StoreActionKind, StoreOrder, StoreRefused, StoreUnavailable

TIMEOUT_SECONDS = 10.0
_TRANSIENT = frozenset({401, 403, 404, 408, 425, 429})


def notification_type(kind: StoreActionKind, reason: str | None) -> str:
    """The webhook's `type` for a store action: `order.held`, `order.verified`, `order.expired`,
    `order.declined` (an underage decline included), `order.in_review`, `order.cancelled`."""
    if kind is StoreActionKind.CANCEL_AND_REFUND:
        return "order.expired" if reason == "expired" else "order.declined"
    return _TYPES[kind]


_TYPES = {
    StoreActionKind.HOLD: "order.held",
    StoreActionKind.RELEASE: "order.verified",
    StoreActionKind.FLAG_FOR_REVIEW: "order.in_review",
    StoreActionKind.NOTE_CANCELLED: "order.cancelled",
}


def webhook_id(key: str, type_: str) -> str:
    """Stable per event: the same order and type always carry the same id."""
    return "msg_" + hashlib.sha256(f"{key}\x1f{type_}".encode()).hexdigest()[:32]


def sign(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode()


@dataclass(frozen=True)
class OutcomeWebhookConnector:
    url: str
    secret: bytes | None = field(repr=False)
    timeout: float = TIMEOUT_SECONDS
    clock: Callable[[], float] = time.time
    session: Any = field(default=None, repr=False, compare=False)  # a requests.Session; made on first send
    source = "outcome_webhook"  # serves every source
    actions = frozenset(StoreActionKind)

    @classmethod
    def from_settings(cls, stores: StoreSettings) -> OutcomeWebhookConnector | None:
        """None without OUTCOME_WEBHOOK_URL. The secret is needed only to send (`perform`): the
        functions that only decide which actions to write never read it."""
        hook = stores.outcome_webhook
        if not hook.enabled:
            return None
        return cls(hook.url, hook.secret)

    def perform(self, kind: StoreActionKind, order: StoreOrder) -> ActionResult:
        if not self.secret:  # the message waits for the fix (the subscriber retries a ConfigError)
            raise ConfigError("OUTCOME_WEBHOOK_SECRET", "required to sign outcome webhooks")
        type_ = notification_type(kind, order.reason)
        ref = keys.ref(order.key)
        occurred = (order.occurred_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
        body = json.dumps({"type": type_, "orderId": ref.order_id, "source": ref.source,
                           "occurredAt": occurred.isoformat().replace("+00:00", "Z")},
                          separators=(",", ":")).encode()
        msg_id = webhook_id(order.key, type_)
        timestamp = int(self.clock())
        headers = {"content-type": "application/json", "webhook-id": msg_id,
                   "webhook-timestamp": str(timestamp), "webhook-signature": sign(self.secret, msg_id, timestamp, body)}
        import requests  # here, not at import: the intake's cold start never sends (it only decides)

        if self.session is None:
            object.__setattr__(self, "session", requests.Session())
        try:
            response = self.session.post(self.url, data=body, headers=headers, timeout=self.timeout,
                                         allow_redirects=False)
        except requests.RequestException as exc:
            raise StoreUnavailable(f"outcome webhook unreachable: {type(exc).__name__}") from exc
        status = response.status_code
        if 200 <= status < 300 or status == 409:
            return ActionResult(already=status == 409, detail={"webhook_id": msg_id, "type": type_})
        if status in _TRANSIENT or status >= 500 or 300 <= status < 400:
            raise StoreUnavailable(f"outcome webhook answered {status}",
                                   retry_after=_retry_after(response.headers.get("Retry-After")))
        raise StoreRefused(f"http_{status}")


def _retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds (its date form is not used by webhook receivers we know of)."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds <= 86_400 else None
