"""`record_analytics`: topic `verification-events` — daily funnel roll-ups, once per event."""

from __future__ import annotations

from functions._cloudevent import subscriber
from shared import bootstrap
from shared.domain.messages import EventMessage

NAME = "record_analytics"
bootstrap.check_at_start(NAME)

record_analytics = subscriber(NAME, EventMessage)
