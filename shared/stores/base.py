"""The store connector seam (DESIGN.md section 4b): what every store's outbound part implements.

A connector performs one store action for one order and says what the store now holds. It
makes network calls and nothing else: the claim (a lease on the `(order, action)` pair), the
outcome event and any re-drive belong to the handler that calls it, never to the connector.

Errors a connector raises, and what the caller does with them:

- `StoreRefused(code)`: the store said no for good (`userErrors`, a 4xx other than
  401/403/404-of-our-URL/408/409/429). Recorded as `store.action_failed` with `code` only (never
  the store's message text, which can hold customer data); the order goes to "needs attention".
- `StoreUnavailable(retry_after=...)`: try again later (401/403: our credentials, 429 and
  GraphQL `THROTTLED`, 5xx, timeouts, connection errors). `retry_after` is the store's own
  hint in seconds where it gave one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from shared.errors import PermanentError, TransientError


class StoreActionKind(StrEnum):
    HOLD = "hold"  # order received: nothing ships before the check
    RELEASE = "release"  # verified (an operator's verify included)
    CANCEL_AND_REFUND = "cancel_and_refund"  # expired, or declined (underage included)
    FLAG_FOR_REVIEW = "flag_for_review"  # in review
    # The store (or an operator) cancelled first: a notification only (the outcome webhook's
    # `order.cancelled`); no store connector implements it, so nothing is cancelled or refunded.
    NOTE_CANCELLED = "note_cancelled"


# What a store's own connector can do to its order (everything but the outcome webhook's notice).
ORDER_ACTIONS = frozenset({StoreActionKind.HOLD, StoreActionKind.RELEASE, StoreActionKind.CANCEL_AND_REFUND,
                           StoreActionKind.FLAG_FOR_REVIEW})


@dataclass(frozen=True)
class StoreOrder:
    """What a connector is told about the order it acts on.

    `key` is the session key (`shopify:1001`); `store_ref` the store's own id its API needs
    (Shopify's order GID, WooCommerce's order id), kept from the webhook; `reason` the outcome
    (`expired`, `declined`, `underage`, ...) for a cancel; `state` what earlier actions of this
    order recorded (e.g. the hold ids a release must name), merged in the order they were done;
    `occurred_at` when the transition that asked for the action happened (an outcome
    webhook's `occurredAt`)."""

    key: str
    source: str
    store_ref: str
    reason: str | None = None
    state: Mapping[str, Any] = field(default_factory=dict)
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class ActionResult:
    """What the store holds after the action. `already` when the store's state showed the
    action done before this call (a retry after a crash: nothing was sent twice); `detail` is
    kept with the action and handed to later actions as `StoreOrder.state` (hold ids, a job id,
    a refund id). No customer data in it."""

    already: bool = False
    detail: Mapping[str, Any] = field(default_factory=dict)


class StoreRefused(PermanentError):
    """The store refused the action for good; `code` is the store's error code, never its text."""

    status = 422
    code = "store_refused"

    def __init__(self, store_code: str) -> None:
        super().__init__(f"the store refused the action: {store_code}")
        self.store_code = store_code


class StoreUnavailable(TransientError):
    """The store could not take the action now; `retry_after` is its own hint, in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, component="store")
        self.retry_after = retry_after


class StoreConnector(Protocol):
    """One store's outbound part. `actions` are the ones it implements (each is optional)."""

    source: str
    actions: frozenset[StoreActionKind]

    def perform(self, kind: StoreActionKind, order: StoreOrder) -> ActionResult:
        """Do `kind` for `order` once: read the store's state first where its API has no
        idempotency key, so a retry after a crash finds the action done (`already`)."""
