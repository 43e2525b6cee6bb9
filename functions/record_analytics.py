"""`record_analytics`: topic `verification-events` — daily funnel roll-ups, once per event."""

from __future__ import annotations

from functions._cloudevent import subscriber
from shared import bootstrap
from shared.domain.messages import EventMessage
from shared.handlers import subscribers

NAME = "record_analytics"
bootstrap.check_at_start(NAME)


@subscriber(NAME, EventMessage)
def record_analytics(event: EventMessage) -> str:
    counted = subscribers.record_event(bootstrap.container().db, event)
    return "counted" if counted else "duplicate"
