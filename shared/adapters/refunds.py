"""RefundGateway implementations: the store's refund API over HTTP, or a manual hand-off.

REFUND_BACKEND chooses: `http` posts to REFUND_API_URL; `manual` (the default)
records nothing remotely and answers MANUAL, so an operator refunds by hand.
"""

from __future__ import annotations

import logging

import requests

from shared.ports import RefundGateway, RefundResult
from shared.config import RefundBackend, RefundSettings
from shared.domain import keys
from shared.adapters.json_post import post_json
from shared.errors import ConfigError, TransientError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0


def make_refund_gateway(settings: RefundSettings) -> RefundGateway:
    """`HttpRefundGateway` for REFUND_BACKEND=http, `ManualRefundGateway` for manual."""
    if settings.backend == RefundBackend.HTTP:
        return HttpRefundGateway(settings.require("REFUND_API_URL"), settings.require("REFUND_API_TOKEN"))
    if settings.backend == RefundBackend.MANUAL:
        return ManualRefundGateway()
    raise ConfigError("REFUND_BACKEND", f"{settings.backend!r} is not one of http, manual")


class HttpRefundGateway:
    """Asks the store to refund: `POST <url>` with `{"orderId", "source", "reason"}`.

    `orderId` is the store's own id and `source` the system it came from (`orders`,
    `lightspeed`): the session key is ours (`shared.domain.keys`), the store never sees it.

    Sends `Authorization: Bearer <token>` and `Idempotency-Key: <key>`, so the
    store can recognise a retry of the same request. Answers:

    - 2xx, or 409 (already refunded) → REFUNDED;
    - 401, 403 (our token), 408, 429, 5xx, no answer → TransientError (retry later);
    - any other status → FAILED (the store will not do it; a person must look).
    """

    def __init__(
        self,
        url: str,
        token: str,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        session: requests.Session | None = None,
    ) -> None:
        self._url = url
        self._token = token
        self._timeout = timeout
        self._session = session or requests.Session()

    def __repr__(self) -> str:
        return f"HttpRefundGateway(url={self._url!r})"

    def refund(self, order_id: str, idempotency_key: str, reason: str) -> RefundResult:
        """Refund the order of session key `order_id`; the same `idempotency_key` must be used for
        every retry."""
        order = keys.ref(order_id)
        response = post_json(
            self._session, self._url, {"orderId": order.order_id, "source": order.source, "reason": reason},
            headers={"Authorization": f"Bearer {self._token}", "Idempotency-Key": idempotency_key},
            timeout=self._timeout, service="refund API", component="refunds",
        )
        status = response.status_code
        if status in (401, 403):  # our token (rotated, revoked), not this order: a fixed token refunds the backlog
            raise TransientError(f"refund API refused our credentials ({status})", component="refunds")
        if 200 <= status < 300 or status == 409:
            result = RefundResult.REFUNDED
        else:
            result = RefundResult.FAILED
        level = logging.INFO if result is RefundResult.REFUNDED else logging.WARNING
        labels = {"order_id": order_id, "http_status": str(status)}
        if result is RefundResult.FAILED:  # counted by the log-based metric `refund_failures`
            labels.update(event="refund.failed", code=str(status))
        log.log(level, "refund %s", result, extra={"labels": labels})
        return result


class ManualRefundGateway:
    """Refunds nothing itself: answers MANUAL so the order is left for an operator."""

    def refund(self, order_id: str, idempotency_key: str, reason: str) -> RefundResult:
        """Log the hand-off (order id and reason only) and answer MANUAL."""
        log.warning(
            "refund needs an operator", extra={"labels": {"order_id": order_id, "refund_reason": reason}}
        )
        return RefundResult.MANUAL
