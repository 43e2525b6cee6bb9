"""`record_analytics`'s use case: roll each event into the daily funnel once (deduplicated by
the message's stable key, never Pub/Sub's own id, which changes on a re-publish); and the
funnel report, whose query is the database layer's (`shared.db.reads.funnel`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from shared.db import reads, store
from shared.db.database import Database
from shared.domain.messages import EventMessage
from shared.domain.model import EMAILS, Event
from shared.handlers.result import Result, ResultStatus


METRICS = {
    Event.ORDER_RECEIVED: "orders_received",
    Event.STARTED: "opened",
    Event.SUBMITTED: "submitted",
    Event.APPROVED: "verified",
    Event.DECLINED: "declined",
    Event.IN_REVIEW: "in_review",
    Event.EXPIRED: "expired",
    Event.REFUND_REQUESTED: "refunds_requested",
    Event.REFUND_COMPLETED: "refunds_completed",
    Event.REFUND_FAILED: "refunds_failed",
}

BUCKETS = ((3600, "<1h"), (6 * 3600, "1-6h"), (24 * 3600, "6-24h"), (48 * 3600, "24-48h"),
           (72 * 3600, "48-72h"))


def bucket_of(seconds: int) -> str:
    for limit, name in BUCKETS:
        if seconds < limit:
            return name
    return ">72h"


def metric_of(event: EventMessage) -> str | None:
    if event.type == Event.EMAIL_SENT:
        spec = EMAILS.get(event.data.get("kind"))
        return spec.metric if spec else None
    try:
        return METRICS.get(Event(event.type))
    except ValueError:
        return None


def record_event(db: Database, event: EventMessage) -> Result:
    """Roll one event into the daily funnel, once: ACCEPTED when it counted, DUPLICATE after."""
    day = datetime.fromisoformat(event.occurred_at).date()
    metric = metric_of(event)
    with db.transaction() as conn:
        if not store.claim_message(conn, "record_analytics", event.id):
            return Result(ResultStatus.DUPLICATE, event.order_id, "event already counted")
        if metric:
            store.bump_funnel(conn, day, metric)
        seconds = event.data.get("seconds_to_verify")
        if event.type == Event.APPROVED and isinstance(seconds, int) and event.order_id:
            store.record_verify_duration(conn, event.order_id, day, seconds, bucket_of(seconds))
    return Result(ResultStatus.ACCEPTED, event.order_id, metric)


def funnel(db: Database, start: date, end: date) -> dict[str, Any]:
    """The funnel for days [start, end]: counts, conversion %, time-to-verify buckets and median."""
    with db.read() as conn:
        return reads.funnel(conn, start, end)
