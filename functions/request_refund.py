"""`request_refund`: topic `order-actions` — refund requests for expired or declined orders, store
actions (hold, release, cancel and refund, flag, outcome webhooks: `shared.handlers.store_actions`),
and registered side effects of transitions (`shared.effects`: `shared.handlers.effects`)."""

from __future__ import annotations

from functions._cloudevent import subscriber
from shared import bootstrap
from shared.domain.messages import OrderActions

NAME = "request_refund"
bootstrap.check_at_start(NAME)

request_refund = subscriber(NAME, OrderActions)
