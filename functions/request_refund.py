"""`request_refund`: topic `order-actions` — refund/cancel requests for expired or declined orders."""

from __future__ import annotations

from functions._cloudevent import subscriber
from shared import bootstrap
from shared.domain.messages import OrderAction
from shared.handlers import subscribers

NAME = "request_refund"
bootstrap.check_at_start(NAME)


@subscriber(NAME, OrderAction)
def request_refund(action: OrderAction) -> str:
    c = bootstrap.container()
    outcome = subscribers.request_refund(c.db, c.settings, c.refund_gateway, action, now=c.clock.now())
    c.relay([action.order_id])
    return outcome
