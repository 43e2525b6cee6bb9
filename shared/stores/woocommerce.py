"""WooCommerce (DESIGN.md sections 4, 4b): its order webhooks in, its REST API v3 out.

(`shared.inbound` registers the source; this module imports nothing of `shared.inbound`, whose
package imports it.)

Inbound, `POST /webhooks/woocommerce` (`WooCommerceSource`): WooCommerce posts the REST API's
own order object (`/wp-json/wc/v3/orders/<id>`) as compact JSON, signed in
`X-WC-Webhook-Signature` (base64 HMAC-SHA256 of the raw body, keyed with the webhook's secret),
the topic in `X-WC-Webhook-Topic`. When a webhook is created it first POSTs a ping, the form
body `webhook_id=<id>` with no `X-WC-Webhook-*` header at all, and saves the webhook only if
that ping is answered 200: the ping is answered 200 (`ignored`) and stores nothing.

Outbound (`WooCommerceConnector`): `{WOOCOMMERCE_URL}/wp-json/wc/v3`, the consumer key and
secret as HTTP Basic auth (what WooCommerce documents over https). Its API has no idempotency
key, so every action reads the order (and its notes or refunds) first, under the caller's
lease: a retry after a crash finds its own note, status or refund and does only what is left.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from shared.config import InboundSettings, StoreSettings
from shared.domain import fields as check
from shared.domain import keys
from shared.domain.messages import IgnoredDelivery, OrderPlaced, StoreCancelled
from shared.errors import BadSignature, ConfigError, InvalidField, RouteDisabled, Unparseable
from shared.domain.jsonsafe import loads_guarded
from shared.stores.base import (
    ORDER_ACTIONS,
    ActionResult,
    StoreActionKind,
    StoreOrder,
    StoreRefused,
    StoreUnavailable,
)

if TYPE_CHECKING:  # `requests` is imported when a connector is made: the intake's cold start never needs it
    import requests

log = logging.getLogger(__name__)

# ---- inbound ------------------------------------------------------------------------------

SIGNATURE_HEADER = "X-WC-Webhook-Signature"
DELIVERY_HEADER = "X-WC-Webhook-Delivery-ID"
TOPIC_HEADER = "X-WC-Webhook-Topic"
ORDER_TOPICS = frozenset({"order.created", "order.updated"})
PLACED = frozenset({"processing", "completed"})  # paid: the order is placed
CANCELLED = frozenset({"cancelled", "refunded"})  # the store cancelled it
FORM = "application/x-www-form-urlencoded"  # the ping's body type (WordPress's default for a string body)
_PING = re.compile(rb"webhook_id=[0-9]{1,20}")
MAX_ORDER_ID = 2**63 - 1  # WordPress ids are BIGINT UNSIGNED; the REST API writes them as JSON integers

WooCommerceCommand = OrderPlaced | StoreCancelled | IgnoredDelivery


@dataclass(frozen=True)
class WooCommerceSource:
    secret: str = field(repr=False)
    path = "/webhooks/woocommerce"
    content_type = ("application/json", FORM)  # deliveries are JSON; the creation ping is a form
    secret_variable = "WOOCOMMERCE_WEBHOOK_SECRET"

    @classmethod
    def from_settings(cls, settings: InboundSettings) -> WooCommerceSource:
        woo = settings.stores.woocommerce
        if not woo.enabled or not woo.webhook_secret:
            raise RouteDisabled("WooCommerce route disabled: WOOCOMMERCE_URL or WOOCOMMERCE_WEBHOOK_SECRET is not set")
        return cls(woo.webhook_secret)

    def verify(self, headers: Mapping[str, str], body: bytes, now: datetime) -> str | None:
        """The delivery id when the signature matches; None for the creation ping (unsigned,
        and nothing is ever stored for it: `parse` answers it with None)."""
        signature = _header(headers, SIGNATURE_HEADER)
        if signature is None and is_ping(body):
            return None
        verify_woocommerce(self.secret, signature, body)
        return _header(headers, DELIVERY_HEADER)

    def parse(self, body: bytes, delivery_id: str | None,
              headers: Mapping[str, str] | None = None) -> WooCommerceCommand | None:
        if is_ping(body):
            return None
        return parse_woocommerce(body, _header(headers or {}, TOPIC_HEADER))


def is_ping(body: bytes) -> bool:
    """The body WooCommerce's `WC_Webhook::deliver_ping()` posts: `webhook_id=<id>`, nothing else."""
    return _PING.fullmatch(body) is not None


def verify_woocommerce(secret: str, header: str | None, body: bytes) -> None:
    """`X-WC-Webhook-Signature`: base64 HMAC-SHA256 of the exact body, compared in constant time."""
    if not header:
        raise BadSignature(f"missing {SIGNATURE_HEADER}")
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    if not hmac.compare_digest(header.strip().encode(), expected):
        raise BadSignature(f"{SIGNATURE_HEADER} does not match")


def parse_woocommerce(body: bytes, topic: str | None) -> WooCommerceCommand | None:
    """An `order.created` / `order.updated` delivery; None for other topics and for statuses that
    are neither paid nor cancelled (pending, on-hold, failed, checkout-draft: nothing to do).

    The event id is `<order id>:<status>`, not the delivery id: WooCommerce sends `order.updated`
    for every edit, each with a fresh delivery id, so the same status again (created then
    updated, a note added, our own hold released) is one event, while a later status change
    (processing, then cancelled) is a new one."""
    if topic is None:
        raise InvalidField(f"{TOPIC_HEADER} is required", field=TOPIC_HEADER)
    if topic not in ORDER_TOPICS:
        return None
    order = loads_guarded(body, where="body")
    if not isinstance(order, dict):
        raise Unparseable("body must be a JSON object", field="body")
    order_id = str(check.integer(order.get("id"), "id", minimum=1, maximum=MAX_ORDER_ID))  # a post/order id
    status = check.text(order.get("status"), "status", max_length=40)
    key = keys.session_key(keys.WOOCOMMERCE, order_id)
    event_id = f"{order_id}:{status}"
    if status in CANCELLED:
        return StoreCancelled(provider=keys.WOOCOMMERCE, event_id=event_id, order_id=key)
    if status not in PLACED:
        return None
    billing = {} if order.get("billing") is None else check.obj(order.get("billing"), "billing")
    if billing.get("email") in (None, ""):
        return IgnoredDelivery(keys.WOOCOMMERCE, event_id, key, reason="no_customer_email")
    customer = order.get("customer_id")
    return OrderPlaced(
        provider=keys.WOOCOMMERCE,
        event_id=event_id,
        order_id=key,
        customer_email=check.email(billing.get("email"), "billing.email"),
        customer_id=None if customer in (0, "0", None) else check.identifier(customer, "customer_id"),
        order_total=check.amount(order.get("total"), "total"),
        currency=check.currency(order.get("currency"), "currency"),
        ordered_at=check.timestamp(order.get("date_created_gmt"), "date_created_gmt"),  # UTC, no offset written
        store_ref=order_id,
    )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name in any case (flask's headers are case-insensitive; a plain dict is not)."""
    value = headers.get(name)
    if value is None:
        lower = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lower), None)
    return value or None


# ---- outbound -----------------------------------------------------------------------------

DEFAULT_TIMEOUT = 5.0
API_PATH = "/wp-json/wc/v3"
HOLD_NOTE = "Awaiting age verification"
RELEASE_NOTE = "Age verified: the order may be fulfilled"
REVIEW_NOTE = "Age verification in review: hold the order until it is decided"
REFUND_MARK = "[age-verification]"  # in the reason of every refund we make: a retry recognises ours
# The reason is kept with the refund and can be shown to the customer: no outcome (declined, underage) in it.
REFUND_REASON = f"Age verification not completed: order cancelled {REFUND_MARK}"
HOLDABLE = frozenset({"processing", "on-hold"})
RELEASABLE = frozenset({"on-hold", "processing", "completed"})
CANCELLABLE = frozenset({"pending", "processing", "on-hold", "cancelled", "refunded", "failed"})
# A 500 that is WooCommerce wrapping a refusal of `wc_create_refund()` (the gateway cannot refund
# through its API, an amount over what is left): the same refund fails again; a person looks.
REFUSED_500 = frozenset({"woocommerce_rest_cannot_create_order_refund"})
_CODE = re.compile(r"[a-z0-9_]{1,80}")


class WooCommerceConnector:
    """Hold, release, cancel-and-refund and flag an order through the REST API v3.

    - hold: status `on-hold` and the note "Awaiting age verification" (already on hold with our
      note: nothing sent);
    - release: status `processing` and a note, only from `on-hold` (an order the store
      cancelled or refunded is never brought back: StoreRefused);
    - cancel_and_refund: refund what is still refundable (the order's total less every refund
      already made) through the gateway and restock, then status `cancelled`; a refund of ours
      (`REFUND_MARK` in its reason) already there is never made again;
    - flag_for_review: a note.

    Errors: a WooCommerce error body's `code` with a 4xx is StoreRefused(code), its message is
    never read; 401/403 (our keys), 408, 409, 429 (`Retry-After`), 5xx, a redirect or a 404 without
    a WooCommerce code (our URL), timeouts and no answer are StoreUnavailable."""

    source = keys.WOOCOMMERCE
    actions = ORDER_ACTIONS

    def __init__(self, url: str, consumer_key: str, consumer_secret: str, *, timeout: float = DEFAULT_TIMEOUT,
                 session: requests.Session | None = None) -> None:
        self._base = url.rstrip("/") + API_PATH
        self._auth = (consumer_key, consumer_secret)
        self._timeout = timeout
        self._given_session = session  # made on first use (see ShopifyConnector)

    @property
    def _session(self):
        if self._given_session is None:
            import requests
            self._given_session = requests.Session()
        return self._given_session

    @classmethod
    def from_settings(cls, stores: StoreSettings) -> WooCommerceConnector | None:
        """The connector, or None when WOOCOMMERCE_URL is unset (WooCommerce is not used). Built
        without the API keys too: every function that moves a session builds it to decide which
        store actions to write; only `request_refund` holds the keys, and a missing one is a
        ConfigError when an action is performed (the message is retried)."""
        woo = stores.woocommerce
        if not woo.enabled:
            return None
        return cls(woo.url, woo.consumer_key or "", woo.consumer_secret or "")

    def __repr__(self) -> str:
        return f"WooCommerceConnector(url={self._base!r})"

    def perform(self, kind: StoreActionKind, order: StoreOrder) -> ActionResult:
        for variable, value in (("WOOCOMMERCE_CONSUMER_KEY", self._auth[0]),
                                ("WOOCOMMERCE_CONSUMER_SECRET", self._auth[1])):
            if not value:
                raise ConfigError(variable, "required to act on WooCommerce orders")
        order_id = order.store_ref or keys.ref(order.key).order_id
        if not order_id.isdigit():
            raise StoreRefused("invalid_order_id")
        action = {
            StoreActionKind.HOLD: self._hold,
            StoreActionKind.RELEASE: self._release,
            StoreActionKind.CANCEL_AND_REFUND: self._cancel_and_refund,
            StoreActionKind.FLAG_FOR_REVIEW: self._flag,
        }[StoreActionKind(kind)]
        result = action(order_id, order)
        log.info("woocommerce %s%s", kind, " (already done)" if result.already else "",
                 extra={"labels": {"order_id": order.key, "store_action": str(kind)}})
        return result

    # ---- the actions ----

    def _hold(self, order_id: str, order: StoreOrder) -> ActionResult:
        status = self._status(order_id)
        if status not in HOLDABLE:
            raise StoreRefused(f"order_status_{status}")
        noted = self._has_note(order_id, HOLD_NOTE)
        if status == "on-hold" and noted:
            return ActionResult(already=True)
        if status != "on-hold":
            self._set_status(order_id, "on-hold")
        if not noted:
            self._add_note(order_id, HOLD_NOTE)
        return ActionResult()

    def _release(self, order_id: str, order: StoreOrder) -> ActionResult:
        status = self._status(order_id)
        if status not in RELEASABLE:  # cancelled or refunded by the store: never resurrected
            raise StoreRefused(f"order_status_{status}")
        noted = self._has_note(order_id, RELEASE_NOTE)
        if status != "on-hold" and noted:
            return ActionResult(already=True)
        if status == "on-hold":
            self._set_status(order_id, "processing")
        if not noted:
            self._add_note(order_id, RELEASE_NOTE)
        return ActionResult()

    def _cancel_and_refund(self, order_id: str, order: StoreOrder) -> ActionResult:
        found = self._request("GET", f"/orders/{order_id}")
        status = _status_of(found)
        if status not in CANCELLABLE:  # completed: the goods left; a person decides
            raise StoreRefused(f"order_status_{status}")
        total = _money(found.get("total"))
        refunds = self._request("GET", f"/orders/{order_id}/refunds", params={"per_page": 100})
        if not isinstance(refunds, list) or not all(isinstance(r, dict) for r in refunds):
            raise StoreUnavailable("WooCommerce answered an unreadable refund list")
        ours = [r for r in refunds if REFUND_MARK in str(r.get("reason") or "")]
        refunded = sum((_money(r.get("amount")) for r in refunds), Decimal(0))
        detail: dict[str, Any] = {}
        done_before = True
        if ours:  # a retry after a crash: the refund is made, never again
            detail = {"refund_id": ours[0].get("id"), "amount": str(_money(ours[0].get("amount")))}
        elif total - refunded > 0:
            remaining = total - refunded
            refund = self._request("POST", f"/orders/{order_id}/refunds", json={
                "amount": str(remaining),
                "reason": REFUND_REASON,
                "api_refund": True,
                "api_restock": True,
            })
            detail = {"refund_id": refund.get("id") if isinstance(refund, dict) else None, "amount": str(remaining)}
            done_before = False
            status = self._status(order_id)  # a full refund makes WooCommerce set `refunded` itself
        else:
            detail = {"refund_id": None, "refunded_by_store": True}
        if status != "cancelled":
            self._set_status(order_id, "cancelled")
            done_before = False
        return ActionResult(already=done_before, detail=detail)

    def _flag(self, order_id: str, order: StoreOrder) -> ActionResult:
        self._status(order_id)  # the order exists (a 404 is the store's refusal)
        if self._has_note(order_id, REVIEW_NOTE):
            return ActionResult(already=True)
        self._add_note(order_id, REVIEW_NOTE)
        return ActionResult()

    # ---- the calls ----

    def _status(self, order_id: str) -> str:
        return _status_of(self._request("GET", f"/orders/{order_id}"))

    def _set_status(self, order_id: str, status: str) -> None:
        self._request("PUT", f"/orders/{order_id}", json={"status": status})

    def _has_note(self, order_id: str, text: str) -> bool:
        notes = self._request("GET", f"/orders/{order_id}/notes", params={"type": "internal"})
        if not isinstance(notes, list):
            raise StoreUnavailable("WooCommerce answered an unreadable note list")
        return any(isinstance(n, dict) and n.get("note") == text for n in notes)

    def _add_note(self, order_id: str, text: str) -> None:
        self._request("POST", f"/orders/{order_id}/notes", json={"note": text, "customer_note": False})

    def _request(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        """The decoded answer of one call, or StoreRefused / StoreUnavailable (module docstring)."""
        import requests

        try:
            response = self._session.request(method, self._base + path, json=json, params=params, auth=self._auth,
                                             timeout=self._timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise StoreUnavailable(f"WooCommerce unreachable: {type(exc).__name__}") from exc
        status = response.status_code
        if 200 <= status < 300:
            try:
                return response.json()
            except ValueError:
                raise StoreUnavailable(f"WooCommerce answered {status} without JSON") from None
        code = _error_code(response)
        log.warning("woocommerce answered %s", status,
                    extra={"labels": {"http_status": str(status), "store_code": code or "", "method": method}})
        if status == 429:
            raise StoreUnavailable("WooCommerce answered 429", retry_after=_retry_after(response))
        if status in (401, 403):  # our keys (revoked, rotated), not this order
            raise StoreUnavailable(f"WooCommerce refused our credentials ({status})")
        if status >= 500 and code in REFUSED_500:
            raise StoreRefused(code)
        if status in (408, 409) or status >= 500 or status < 400:
            raise StoreUnavailable(f"WooCommerce answered {status}", retry_after=_retry_after(response))
        if code is None or code == "rest_no_route":  # not WooCommerce speaking: our URL (permalinks, a proxy)
            raise StoreUnavailable(f"WooCommerce answered {status} without an error code: check WOOCOMMERCE_URL")
        raise StoreRefused(code)


def _status_of(order: Any) -> str:
    status = order.get("status") if isinstance(order, dict) else None
    if not isinstance(status, str) or not _CODE.fullmatch(status.replace("-", "_")):
        raise StoreUnavailable("WooCommerce answered an order without a status")
    return status


def _money(value: Any) -> Decimal:
    """A WooCommerce amount ("29.35"; a number in older answers)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise StoreUnavailable("WooCommerce answered an unreadable amount")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise StoreUnavailable("WooCommerce answered an unreadable amount") from None
    if not number.is_finite():
        raise StoreUnavailable("WooCommerce answered an unreadable amount")
    return abs(number)  # refunds inside an order object are negative; the refunds route says positive


def _error_code(response: requests.Response) -> str | None:
    """The WooCommerce/WordPress error `code`, when it is one (never the message)."""
    try:
        body = response.json()
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, str) and _CODE.fullmatch(code) else None


def _retry_after(response: requests.Response) -> float | None:
    """`Retry-After` in seconds (a number, or an HTTP date)."""
    value = (response.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
