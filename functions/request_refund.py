"""`request_refund`: topic `order-actions` — refund requests for expired or declined orders."""

from __future__ import annotations

from functions._cloudevent import subscriber
from shared import bootstrap
from shared.domain.messages import OrderAction

NAME = "request_refund"
bootstrap.check_at_start(NAME)

request_refund = subscriber(NAME, OrderAction)
