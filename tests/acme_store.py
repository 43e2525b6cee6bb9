"""A test-only store, "acme" (issue 21): what a new store brings, in its own module, and nothing
else in the code base: its settings section, its webhook source and its connector. The test
registers it with one line in the stores table (`shared.stores.registry.STORES`).

Its webhook posts JSON `{"id", "email", "total", "currency"}` to `/webhooks/acme`, signed in
`X-Acme-Signature` (hex HMAC-SHA256 of the body with ACME_WEBHOOK_SECRET), its delivery id in
`X-Acme-Delivery`. Its connector holds and releases; `RECEIVED` stands in for the store's API
(what it was asked, in order).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from shared.config import InboundSettings, StoreSettings, _env, _Section
from shared.domain import fields as check
from shared.domain import keys
from shared.domain.messages import OrderPlaced
from shared.errors import BadSignature, RouteDisabled
from shared.inbound.source import json_object
from shared.stores.base import ActionResult, StoreActionKind, StoreOrder

NAME = "acme"
RECEIVED: list[tuple[str, str, str]] = []  # (action, session key, the store's own id)


@dataclass(frozen=True)
class AcmeSettings(_Section):
    """Its settings section. A real store hangs it on `StoreSettings` (`acme: AcmeSettings =
    _section(AcmeSettings)` in shared/config.py) and reads it from there; this one reads itself."""

    webhook_secret: str | None = _env("ACME_WEBHOOK_SECRET", secret=True)
    api_url: str | None = _env("ACME_API_URL")


@dataclass(frozen=True)
class AcmeSource:
    secret: str = field(repr=False)
    path = "/webhooks/acme"
    content_type = "application/json"
    secret_variable = "ACME_WEBHOOK_SECRET"

    @classmethod
    def from_settings(cls, settings: InboundSettings) -> AcmeSource:
        acme = AcmeSettings.from_env()
        if not acme.webhook_secret:
            raise RouteDisabled("Acme route disabled: ACME_WEBHOOK_SECRET is not set")
        return cls(acme.webhook_secret)

    def verify(self, headers: Mapping[str, str], body: bytes, now: datetime) -> str | None:
        expected = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest((headers.get("X-Acme-Signature") or "").encode(), expected.encode()):
            raise BadSignature("X-Acme-Signature does not match")
        return headers.get("X-Acme-Delivery")

    def parse(self, body: bytes, delivery_id: str | None, headers: Mapping[str, str]) -> OrderPlaced:
        data = json_object(body)
        order_id = check.identifier(data.get("id"), "id")
        return OrderPlaced(
            provider=NAME,
            event_id=check.identifier(delivery_id, "X-Acme-Delivery"),
            order_id=keys.session_key(NAME, order_id),
            customer_email=check.email(data.get("email"), "email"),
            order_total=check.amount(data.get("total"), "total"),
            currency=check.currency(data.get("currency"), "currency"),
        )


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class AcmeConnector:
    source = NAME
    actions = frozenset({StoreActionKind.HOLD, StoreActionKind.RELEASE})

    def __init__(self, url: str) -> None:
        self.url = url

    @classmethod
    def from_settings(cls, stores: StoreSettings) -> AcmeConnector | None:
        acme = AcmeSettings.from_env()
        return cls(acme.api_url) if acme.api_url else None

    def perform(self, kind: StoreActionKind, order: StoreOrder) -> ActionResult:
        RECEIVED.append((str(kind), order.key, keys.ref(order.key).order_id))
        return ActionResult(detail={"acme_hold": f"h-{keys.ref(order.key).order_id}"}
                            if kind == StoreActionKind.HOLD else {})
