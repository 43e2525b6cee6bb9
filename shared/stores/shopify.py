"""Shopify (DESIGN.md sections 4 and 4b): the webhook source and the Admin GraphQL connector.

Inbound, `POST /webhooks/shopify`: `X-Shopify-Hmac-Sha256` is the base64 HMAC-SHA256 of the raw
body keyed with the app's client secret (two during a rotation), `X-Shopify-Shop-Domain` must be
the configured shop, `X-Shopify-Topic` says what happened and `X-Shopify-Webhook-Id` tells the
deliveries apart (`X-Shopify-Event-Id` repeats across deliveries of one event). Shopify drops a
subscription that keeps failing, so a bad delivery is a 4xx, never a 5xx.

Outbound: the four store actions as Admin GraphQL calls, with the custom app's access token
(`X-Shopify-Access-Token`), paced by Shopify's cost bucket (`CostBucket`). A store's refusal is
`StoreRefused(code)`, never its message text, which can quote the order.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from shared.config import InboundSettings, ShopifySettings, StoreSettings
from shared.domain import fields as check
from shared.domain import keys
from shared.domain.jsonsafe import loads_guarded
from shared.domain.messages import IgnoredDelivery, OrderPlaced, StoreCancelled
from shared.errors import BadSignature, ConfigError, InvalidField, RouteDisabled, Unparseable
from shared.stores.base import ORDER_ACTIONS, ActionResult, StoreActionKind, StoreOrder, StoreRefused, StoreUnavailable

if TYPE_CHECKING:  # the intake imports this module for its source: `requests` only when a connector is built
    import requests

log = logging.getLogger(__name__)

# ---- inbound ---------------------------------------------------------------------------------

TOPIC_CREATED = "orders/create"
TOPIC_PAID = "orders/paid"
TOPIC_CANCELLED = "orders/cancelled"
PLACED_TOPICS = frozenset({TOPIC_CREATED, TOPIC_PAID})
# `financial_status` values that mean the customer paid (or the payment is authorized);
# anything else (pending, voided, refunded, ...) opens no session and is recorded as ignored.
SHOPIFY_PLACED = frozenset({"paid", "partially_paid", "authorized"})
ORDER_GID = re.compile(r"gid://shopify/Order/([0-9]{1,20})", re.ASCII)
ShopifyCommand = OrderPlaced | StoreCancelled | IgnoredDelivery


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name in any case (HTTP/2 lower-cases them; a plain dict does not fold case)."""
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return value


@dataclass(frozen=True)
class ShopifySource:
    """`POST /webhooks/shopify`, bound to the shop and its client secret(s)."""

    shop_domain: str
    client_secrets: tuple[str, ...] = field(repr=False)
    accept_test_orders: bool = False
    path = "/webhooks/shopify"
    content_type = "application/json"
    secret_variable = "SHOPIFY_CLIENT_SECRET"

    @classmethod
    def from_settings(cls, settings: InboundSettings) -> ShopifySource:
        shopify = settings.stores.shopify
        if not shopify.enabled or not shopify.client_secrets:
            raise RouteDisabled("Shopify route disabled: SHOPIFY_SHOP_DOMAIN or SHOPIFY_CLIENT_SECRET is not set")
        return cls(shopify.shop_domain, shopify.client_secrets, shopify.accept_test_orders)

    def verify(self, headers: Mapping[str, str], body: bytes, now: datetime) -> str | None:
        """The delivery id (`X-Shopify-Webhook-Id`) once the signature and the shop match."""
        verify_shopify(self.client_secrets, _header(headers, "X-Shopify-Hmac-Sha256"), body)
        domain = (_header(headers, "X-Shopify-Shop-Domain") or "").strip().lower()
        if not hmac.compare_digest(domain.encode(), self.shop_domain.strip().lower().encode()):
            raise BadSignature("X-Shopify-Shop-Domain is not the configured shop")
        return _header(headers, "X-Shopify-Webhook-Id")

    def parse(self, body: bytes, delivery_id: str | None,
              headers: Mapping[str, str] | None = None) -> ShopifyCommand | None:
        return parse_shopify(_header(headers or {}, "X-Shopify-Topic"), body, delivery_id,
                             accept_test_orders=self.accept_test_orders)


def verify_shopify(secrets: Iterable[str], header: str | None, body: bytes) -> None:
    """`X-Shopify-Hmac-Sha256`: base64 HMAC-SHA256 of the raw body under any of `secrets`,
    compared in constant time (every secret is tried, so the time says nothing either)."""
    if not header:
        raise BadSignature("missing X-Shopify-Hmac-Sha256")
    given = header.strip().encode()
    matched = False
    for secret in secrets:
        expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
        matched |= hmac.compare_digest(given, expected)
    if not matched:
        raise BadSignature("X-Shopify-Hmac-Sha256 does not match")


def parse_shopify(topic: str | None, body: bytes, delivery_id: str | None, *,
                  accept_test_orders: bool = False) -> ShopifyCommand | None:
    """An order webhook (the Admin REST order shape) as a command; None for a topic the service
    does not act on (answered 200 `ignored`, not recorded).

    The session key is `shopify:<order id>` (`shared.domain.keys`); the order's GID
    (`admin_graphql_api_id`) is kept as `store_ref` for the Admin GraphQL calls."""
    topic = check.text(topic, "X-Shopify-Topic")
    if topic not in PLACED_TOPICS and topic != TOPIC_CANCELLED:
        return None
    order = loads_guarded(body)
    if not isinstance(order, dict):
        raise Unparseable("body must be a JSON object", field="body")
    event_id = check.identifier(delivery_id, "X-Shopify-Webhook-Id")
    order_id = check.identifier(order.get("id"), "id")
    if not order_id.isascii() or not order_id.isdigit():
        raise InvalidField("id must be Shopify's numeric order id", field="id")
    gid = check.text(order.get("admin_graphql_api_id"), "admin_graphql_api_id", required=False)
    if gid is None:
        gid = f"gid://shopify/Order/{order_id}"
    match = ORDER_GID.fullmatch(gid)
    if not match or match.group(1) != order_id:
        raise InvalidField("admin_graphql_api_id must be the order's GID", field="admin_graphql_api_id")
    key = keys.session_key(keys.SHOPIFY, order_id)
    if topic == TOPIC_CANCELLED:
        return StoreCancelled(provider=keys.SHOPIFY, event_id=event_id, order_id=key)
    if order.get("test") is True and not accept_test_orders:
        return IgnoredDelivery(keys.SHOPIFY, event_id, key, reason="test_order")
    status = check.text(order.get("financial_status"), "financial_status")
    if status not in SHOPIFY_PLACED:
        return IgnoredDelivery(keys.SHOPIFY, event_id, key, reason="not_paid")
    email = order.get("email") or order.get("contact_email")
    if email in (None, ""):
        return IgnoredDelivery(keys.SHOPIFY, event_id, key, reason="no_customer_email")
    customer = order.get("customer")
    customer = {} if customer is None else check.obj(customer, "customer")
    return OrderPlaced(
        provider=keys.SHOPIFY,
        event_id=event_id,
        order_id=key,
        customer_email=check.email(email, "email" if order.get("email") else "contact_email"),
        customer_id=check.identifier(customer.get("id"), "customer.id", required=False),
        order_total=check.amount(order.get("total_price"), "total_price"),
        currency=check.currency(order.get("currency"), "currency"),
        ordered_at=check.timestamp(order.get("created_at"), "created_at"),
        store_ref=gid,
    )


# ---- outbound: Admin GraphQL -----------------------------------------------------------------

DEFAULT_TIMEOUT = 5.0
HOLD_HANDLE = "age-verification"  # unique per app and fulfillment order: Shopify refuses a second
HOLD_NOTE = "Awaiting age verification"
TAG_PENDING = "age-verification-pending"
TAG_VERIFIED = "age-verified"
TAG_REVIEW = "age-verification-review"
HOLDABLE = frozenset({"OPEN", "ON_HOLD"})  # ON_HOLD: another app's hold; ours must stay when it lifts
MAX_WAIT_SECONDS = 2.0  # a bucket that refills within this is waited for; longer is a retry later

ORDER_QUERY = """
query OrderForAgeVerification($id: ID!) {
  order(id: $id) {
    id
    cancelledAt
    fulfillmentOrders(first: 10) {
      pageInfo {
        hasNextPage
      }
      nodes {
        id
        status
        fulfillmentHolds {
          id
          handle
          heldByRequestingApp
        }
      }
    }
  }
}
"""

ORDER_CANCELLED_QUERY = """
query OrderCancelledAt($id: ID!) {
  order(id: $id) {
    id
    cancelledAt
  }
}
"""

# What both fulfillment-order mutations read back, and `_codes` reads the same way for both:
# the fulfillment order's state and the mutation's coded user errors.
_FULFILLMENT_ORDER_RESULT = """    fulfillmentOrder {
      id
      status
    }
    userErrors {
      field
      message
      code
    }
  }
}
"""

HOLD_MUTATION = """
mutation HoldForAgeVerification($id: ID!, $fulfillmentHold: FulfillmentOrderHoldInput!) {
  fulfillmentOrderHold(id: $id, fulfillmentHold: $fulfillmentHold) {
    fulfillmentHold {
      id
      handle
    }
""" + _FULFILLMENT_ORDER_RESULT

# `$holdIds` is declared non-null: without holdIds Shopify releases every hold on the
# fulfillment order, other apps' (fraud, inventory) included.
RELEASE_MUTATION = """
mutation ReleaseAgeVerificationHold($id: ID!, $holdIds: [ID!]!) {
  fulfillmentOrderReleaseHold(id: $id, holdIds: $holdIds) {
""" + _FULFILLMENT_ORDER_RESULT

CANCEL_MUTATION = """
mutation CancelUnverifiedOrder($orderId: ID!, $notifyCustomer: Boolean, $refundMethod: OrderCancelRefundMethodInput!, $restock: Boolean!, $reason: OrderCancelReason!, $staffNote: String) {
  orderCancel(orderId: $orderId, notifyCustomer: $notifyCustomer, refundMethod: $refundMethod, restock: $restock, reason: $reason, staffNote: $staffNote) {
    job {
      id
      done
    }
    orderCancelUserErrors {
      field
      message
      code
    }
    userErrors {
      field
      message
    }
  }
}
"""

TAGS_ADD_MUTATION = """
mutation TagOrder($id: ID!, $tags: [String!]!) {
  tagsAdd(id: $id, tags: $tags) {
    node {
      id
    }
    userErrors {
      field
      message
    }
  }
}
"""

# What each document is expected to cost before Shopify has told us (`requestedQueryCost`
# replaces it after the first answer). Shopify charges 10 points per mutation.
MUTATION_COST = 10.0
QUERY_COST_GUESS = 50.0

_STAFF_NOTES = {
    "expired": "Age verification was not completed in time: cancelled and refunded",
    "declined": "Age verification was declined: cancelled and refunded",
    "underage": "The customer is under the minimum age: cancelled and refunded",
}


class CostBucket:
    """Shopify's leaky bucket of query cost points, as this process last saw it.

    Each answer's `extensions.cost.throttleStatus` (maximumAvailable, currentlyAvailable,
    restoreRate) sets it; between answers it refills at the restore rate. A request reserves its
    cost before it is sent; when the bucket cannot pay, the caller waits for the refill if that
    is short, else gives up with the wait as `retry_after`. Until the first answer, requests go
    one at a time (the bucket's size is unknown). Thread-safe.

    What Shopify holds is what we hold plus what we reserved and it has not charged yet
    (`in_flight`); it never holds more than its maximum, so neither do we plus `in_flight`: a
    refill while requests are on their way is not counted twice."""

    def __init__(self, *, max_wait: float = MAX_WAIT_SECONDS, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._lock = threading.Condition()
        self._clock = clock
        self._sleep = sleep
        self._max_wait = max_wait
        self._known = False
        self._probing = False
        self.maximum = 0.0
        self.available = 0.0
        self.restore_rate = 0.0
        self.in_flight = 0.0
        self._at = clock()

    def reserve(self, cost: float) -> float:
        """Take `cost` points, waiting up to `max_wait` for them; StoreUnavailable otherwise.
        Returns what was reserved, for `settle` or `cancel` (0 for the request that learns the
        bucket)."""
        with self._lock:
            while not self._known and self._probing:
                if not self._lock.wait(timeout=DEFAULT_TIMEOUT * 2):
                    raise StoreUnavailable("Shopify cost bucket unknown", retry_after=1.0)
            if not self._known:
                self._probing = True  # this request learns the bucket; the others wait for it
                return 0.0
            self._refill()
            self.available -= cost
            if self.available >= 0:
                wait = 0.0
            elif self.restore_rate > 0:
                wait = -self.available / self.restore_rate
            else:
                wait = float("inf")
            if wait > self._max_wait:
                self.available += cost
                raise StoreUnavailable("Shopify cost bucket is empty",
                                       retry_after=round(min(wait, 60.0), 2) + 0.05)
            self.in_flight += cost
        if wait > 0:
            self._sleep(wait + 0.02)  # the store's clock starts the refill a little after ours
        return cost

    def settle(self, cost: Mapping[str, Any] | None, reserved: float) -> None:
        """Take Shopify's word for the bucket after an answer: what was reserved beyond the
        actual cost comes back, and the lower of its count and ours stands (ours still counts
        the requests in flight)."""
        status = cost.get("throttleStatus") if isinstance(cost, Mapping) else None
        with self._lock:
            try:
                maximum = float(status["maximumAvailable"])
                available = float(status["currentlyAvailable"])
                rate = float(status["restoreRate"])
            except (TypeError, KeyError, ValueError):
                self._done(reserved)
                return
            if not self._known:
                self._known, self.maximum, self.available, self.restore_rate = True, maximum, available, rate
                self._at = self._clock()
                self._done(reserved)
                return
            self._refill()
            self._done(reserved)
            self.maximum, self.restore_rate = maximum, rate
            # Shopify charges the actual cost (none for a THROTTLED answer): the rest comes back
            actual = cost.get("actualQueryCost")
            charged = float(actual) if isinstance(actual, (int, float)) else 0.0
            self.available = min(self.available + max(reserved - charged, 0.0), available,
                                 self.maximum - self.in_flight)

    def cancel(self, reserved: float) -> None:
        """A reserved request that was never answered with a cost: count it as charged (the
        store may have taken it) and let the next request learn the bucket if this one was to."""
        with self._lock:
            self._done(reserved)

    def _done(self, reserved: float) -> None:
        self.in_flight = max(self.in_flight - reserved, 0.0)
        if self._probing:
            self._probing = False
            self._lock.notify_all()

    def _refill(self) -> None:
        now = self._clock()
        ceiling = self.maximum - self.in_flight
        if self.available < ceiling:
            self.available = min(ceiling, self.available + (now - self._at) * self.restore_rate)
        self._at = now


class ShopifyConnector:
    """Shopify's outbound part (`shared.stores.base.StoreConnector`) over Admin GraphQL.

    - hold: `fulfillmentOrderHold` (reason OTHER, our handle) on each open or held fulfillment
      order that carries no hold of ours yet, then tag `age-verification-pending`; the hold ids
      per fulfillment order are the result's `detail["holds"]`.
    - release: `fulfillmentOrderReleaseHold` naming only our hold ids (recorded by the hold, or
      found by our handle), never without holdIds; then tag `age-verified`.
    - cancel_and_refund: reads `cancelledAt` first (set: `already`), else `orderCancel` (reason
      OTHER, refund to the original payment methods, restock, staff note); the job id is kept.
    - flag_for_review: tag `age-verification-review`.
    """

    source = keys.SHOPIFY
    actions = ORDER_ACTIONS

    def __init__(self, admin_url: str, access_token: str, *, notify_customer: bool = False,
                 timeout: float = DEFAULT_TIMEOUT, session: requests.Session | None = None,
                 bucket: CostBucket | None = None) -> None:
        self._url = admin_url
        self._token = access_token
        self._notify_customer = notify_customer
        self._timeout = timeout
        self._given_session = session  # made on first use: the functions that only decide
        # which actions to write (intake, timers, console) build the connector and never call out
        self.bucket = bucket or CostBucket()
        self._costs: dict[str, float] = {}
        self._costs_lock = threading.Lock()

    @property
    def _session(self) -> requests.Session:
        if self._given_session is None:
            import requests

            self._given_session = requests.Session()
        return self._given_session

    @classmethod
    def from_settings(cls, stores: StoreSettings) -> ShopifyConnector | None:
        """The connector, or None when no shop is configured. It is built without the access
        token too: every function that moves a session builds it to decide which store actions
        to write, and only the one that performs them (`request_refund`) holds the token; a
        missing token is a ConfigError when an action is performed (the message is retried)."""
        shopify: ShopifySettings = stores.shopify
        if not shopify.enabled:
            return None
        return cls(shopify.admin_url, shopify.admin_token or "", notify_customer=shopify.notify_customer)

    def __repr__(self) -> str:
        return f"ShopifyConnector(url={self._url!r})"

    def perform(self, kind: StoreActionKind, order: StoreOrder) -> ActionResult:
        if not self._token:
            raise ConfigError("SHOPIFY_ADMIN_TOKEN", "required to act on Shopify orders")
        action = _ACTIONS.get(StoreActionKind(kind))
        if action is None:  # every kind has its action; a new kind must be added here
            raise StoreRefused(f"UNSUPPORTED_ACTION_{kind}")
        return action(self, order)

    # ---- the four actions ----

    def _hold(self, order: StoreOrder) -> ActionResult:
        gid = order_gid(order)
        found = self._read_order(gid)
        if found.get("cancelledAt"):
            return ActionResult(already=True, detail={"holds": {}, "cancelled": True})
        holds: dict[str, list[str]] = {}
        placed = 0
        for fo in _fulfillment_orders(found):
            ours = _our_holds(fo)
            if ours:
                holds[fo["id"]] = ours
                continue
            if fo.get("status") not in HOLDABLE:
                continue
            data = self._call("fulfillmentOrderHold", HOLD_MUTATION, {
                "id": fo["id"],
                "fulfillmentHold": {"reason": "OTHER", "reasonNotes": HOLD_NOTE, "handle": HOLD_HANDLE,
                                    "notifyMerchant": False},
            })
            codes = _codes(data.get("userErrors"))
            if codes == ["DUPLICATE_FULFILLMENT_HOLD_HANDLE"]:
                # placed by a call whose answer was lost: find it rather than add another
                ours = _our_holds(next((f for f in _fulfillment_orders(self._read_order(gid))
                                        if f["id"] == fo["id"]), {}))
                if not ours:
                    raise StoreUnavailable("Shopify has a hold of ours it does not show yet")
                holds[fo["id"]] = ours
                continue
            if codes:
                raise StoreRefused(codes[0])
            hold = data.get("fulfillmentHold") or {}
            if not hold.get("id"):
                raise StoreUnavailable("Shopify placed no fulfillment hold and said no error")
            holds[fo["id"]] = [hold["id"]]
            placed += 1
        self._tag(gid, TAG_PENDING)
        return ActionResult(already=placed == 0 and bool(holds), detail={"holds": holds})

    def _release(self, order: StoreOrder) -> ActionResult:
        gid = order_gid(order)
        recorded = {fo: set(ids) for fo, ids in (order.state.get("holds") or {}).items()}
        released: dict[str, list[str]] = {}
        for fo in _fulfillment_orders(self._read_order(gid)):
            present = {h["id"] for h in fo.get("fulfillmentHolds") or []}
            ours = sorted(present & (recorded.get(fo["id"], set()) | set(_our_holds(fo))))
            if not ours:
                continue
            data = self._call("fulfillmentOrderReleaseHold", RELEASE_MUTATION, {"id": fo["id"], "holdIds": ours})
            codes = _codes(data.get("userErrors"))
            if codes:
                raise StoreRefused(codes[0])
            released[fo["id"]] = ours
        self._tag(gid, TAG_VERIFIED)
        return ActionResult(already=not released, detail={"released": released})

    def _cancel_and_refund(self, order: StoreOrder) -> ActionResult:
        gid = order_gid(order)
        found = self._query(ORDER_CANCELLED_QUERY, {"id": gid})
        if found.get("cancelledAt"):
            return ActionResult(already=True, detail={"cancelled_at": found["cancelledAt"]})
        data = self._call("orderCancel", CANCEL_MUTATION, {
            "orderId": gid,
            "reason": "OTHER",
            "refundMethod": {"originalPaymentMethodsRefund": True},
            "restock": True,
            "notifyCustomer": self._notify_customer,
            "staffNote": _STAFF_NOTES.get(order.reason or "", "Age verification failed: cancelled and refunded"),
        })
        codes = _codes(data.get("orderCancelUserErrors")) or _codes(data.get("userErrors"))
        if codes:
            raise StoreRefused(codes[0])
        job = data.get("job") or {}
        return ActionResult(detail={"job_id": job.get("id"), "job_done": bool(job.get("done"))})

    def _flag_for_review(self, order: StoreOrder) -> ActionResult:
        self._tag(order_gid(order), TAG_REVIEW)
        return ActionResult(detail={"tag": TAG_REVIEW})

    # ---- calls ----

    def _read_order(self, gid: str) -> dict[str, Any]:
        return self._query(ORDER_QUERY, {"id": gid})

    def _query(self, document: str, variables: dict[str, Any]) -> dict[str, Any]:
        order = self._call("order", document, variables, mutation=False)
        if order is None:
            raise StoreRefused("ORDER_NOT_FOUND")
        return order

    def _tag(self, gid: str, tag: str) -> None:
        data = self._call("tagsAdd", TAGS_ADD_MUTATION, {"id": gid, "tags": [tag]})
        codes = _codes(data.get("userErrors"))
        if codes:
            raise StoreRefused(codes[0])

    def _call(self, root: str, document: str, variables: dict[str, Any], *, mutation: bool = True) -> Any:
        """`data[root]` of one GraphQL request, paced by the cost bucket; errors mapped per
        `shared.stores.base` (the store's message text is never read into one)."""
        with self._costs_lock:
            cost = self._costs.get(document, MUTATION_COST if mutation else QUERY_COST_GUESS)
        reserved = self.bucket.reserve(cost)
        from requests import RequestException

        try:
            response = self._session.post(
                self._url, data=json.dumps({"query": document, "variables": variables}),
                headers={"X-Shopify-Access-Token": self._token, "Content-Type": "application/json",
                         "Accept": "application/json"},
                timeout=self._timeout, allow_redirects=False)
        except RequestException as exc:
            self.bucket.cancel(reserved)
            raise StoreUnavailable(f"Shopify unreachable: {type(exc).__name__}") from exc
        except BaseException:
            self.bucket.cancel(reserved)  # never leave the others waiting on a probe that went nowhere
            raise
        status = response.status_code
        body = _json(response) if status == 200 else None
        extensions = body.get("extensions") if isinstance(body, dict) else None
        cost_info = extensions.get("cost") if isinstance(extensions, dict) else None
        if isinstance(cost_info, dict) and isinstance(cost_info.get("requestedQueryCost"), (int, float)):
            with self._costs_lock:
                self._costs[document] = float(cost_info["requestedQueryCost"])
            self.bucket.settle(cost_info, reserved)
        else:
            self.bucket.cancel(reserved)
        if status == 429:
            raise StoreUnavailable("Shopify answered 429", retry_after=_retry_after(response))
        if status in (401, 403):
            raise StoreUnavailable(f"Shopify refused our access token ({status})")
        if status in (404, 408) or status >= 500 or 300 <= status < 400:
            raise StoreUnavailable(f"Shopify answered {status}")
        if status != 200:
            raise StoreRefused(f"HTTP_{status}")
        if not isinstance(body, dict):
            raise StoreUnavailable("Shopify answered 200 without a JSON object")
        errors = body.get("errors")
        if errors:
            raise _graphql_error(errors, cost_info)
        data = body.get("data")
        if not isinstance(data, dict) or root not in data:
            raise StoreUnavailable("Shopify answered 200 without data")
        log.info("shopify %s", root, extra={"labels": {"shopify_call": root}})
        return data[root]


_ACTIONS: dict[StoreActionKind, Callable[[ShopifyConnector, StoreOrder], ActionResult]] = {
    StoreActionKind.HOLD: ShopifyConnector._hold,
    StoreActionKind.RELEASE: ShopifyConnector._release,
    StoreActionKind.CANCEL_AND_REFUND: ShopifyConnector._cancel_and_refund,
    StoreActionKind.FLAG_FOR_REVIEW: ShopifyConnector._flag_for_review,
}


def order_gid(order: StoreOrder) -> str:
    """The order's GID: kept from the webhook, or rebuilt from the session key."""
    if order.store_ref and ORDER_GID.fullmatch(order.store_ref):
        return order.store_ref
    ref = keys.ref(order.key)
    if ref.source != keys.SHOPIFY or not ref.order_id.isdigit():
        raise StoreRefused("NOT_A_SHOPIFY_ORDER")
    return f"gid://shopify/Order/{ref.order_id}"


def _fulfillment_orders(order: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The order's fulfillment orders. An order split into more than one page of them (ten
    locations or more) is left to a person: holding or releasing some of them is worse."""
    connection = order.get("fulfillmentOrders") or {}
    if (connection.get("pageInfo") or {}).get("hasNextPage"):
        raise StoreRefused("TOO_MANY_FULFILLMENT_ORDERS")
    return [fo for fo in connection.get("nodes") or [] if isinstance(fo, dict) and fo.get("id")]


def _our_holds(fo: Mapping[str, Any]) -> list[str]:
    return [h["id"] for h in fo.get("fulfillmentHolds") or []
            if h.get("heldByRequestingApp") and h.get("handle") == HOLD_HANDLE]


def _codes(user_errors: Any) -> list[str]:
    """The codes of a payload's user errors (`USER_ERROR` for one without a code); never the text."""
    return [str(e.get("code") or "USER_ERROR") for e in user_errors or [] if isinstance(e, dict)]


def _graphql_error(errors: Any, cost: Any) -> Exception:
    codes = [str(((e.get("extensions") or {}).get("code")) or "") for e in errors if isinstance(e, dict)]
    if "THROTTLED" in codes:
        return StoreUnavailable("Shopify throttled the request", retry_after=_throttle_wait(cost))
    if any(code in ("INTERNAL_SERVER_ERROR", "ACCESS_DENIED", "SERVICE_UNAVAILABLE") for code in codes):
        return StoreUnavailable(f"Shopify answered {next(c for c in codes if c)}")
    return StoreRefused(next((c for c in codes if c), "GRAPHQL_ERROR"))


def _throttle_wait(cost: Any) -> float | None:
    try:
        status = cost["throttleStatus"]
        missing = float(cost["requestedQueryCost"]) - float(status["currentlyAvailable"])
        return round(max(missing, 0.0) / float(status["restoreRate"]), 2) + 0.05
    except (TypeError, KeyError, ValueError, ZeroDivisionError):
        return None


def _retry_after(response: requests.Response) -> float | None:
    try:
        return max(float(response.headers.get("Retry-After", "")), 0.0)
    except ValueError:
        return None


def _json(response: requests.Response) -> Any:
    try:
        return loads_guarded(response.content, where="Shopify's answer")
    except Unparseable:
        return None
