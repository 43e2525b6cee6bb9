"""`record_analytics`'s use case: roll each event into the daily funnel once (deduplicated by
the message's stable key, never Pub/Sub's own id, which changes on a re-publish); and the
funnel report, whose query is the database layer's (`shared.db.reads.funnel`)."""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any

from shared import log as logctx
from shared.db import analytics_store, claims, reads
from shared.db.database import Database
from shared.db.unit_of_work import UnitOfWork
from shared.domain.messages import EventMessage
from shared.domain.model import EMAILS, Email, Event
from shared.handlers.result import Result, ResultStatus

story = logging.getLogger("story")  # one line per lifecycle step; the local console prints these

METRICS = {
    Event.ORDER_RECEIVED: "orders_received",
    Event.STARTED: "opened",
    Event.SUBMITTED: "submitted",
    Event.APPROVED: "verified",
    Event.REUSED: "returning_customers",  # verified at once (DESIGN.md 3b): apart from `verified`
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


# A refund the store's own connector made (`refund.completed` with `by`) also counts here.
STORE_REFUNDS = "refunds_by_store"


def metrics_of(event: EventMessage) -> tuple[str, ...]:
    """Every funnel count `event` adds to."""
    metric = metric_of(event)
    if metric == "refunds_completed" and event.data.get("by"):
        return (metric, STORE_REFUNDS)
    return (metric,) if metric else ()


def record_event(db: Database, event: EventMessage) -> Result:
    """Roll one event into the daily funnel, once: ACCEPTED when it counted, DUPLICATE after."""
    day = datetime.fromisoformat(event.occurred_at).date()
    metrics = metrics_of(event)
    metric = metrics[0] if metrics else None
    with UnitOfWork(db) as uow:
        if not claims.claim_message(uow.conn, "record_analytics", event.id):
            return Result(ResultStatus.DUPLICATE, event.order_id, "event already counted")
        for each in metrics:
            analytics_store.bump_funnel(uow.conn, day, each)
        seconds = event.data.get("seconds_to_verify")
        if event.type == Event.APPROVED and isinstance(seconds, int) and event.order_id:
            analytics_store.record_verify_duration(uow.conn, event.order_id, day, seconds, bucket_of(seconds))
        uow.commit()
    tell(event)  # once per event, as it is counted
    return Result(ResultStatus.ACCEPTED, event.order_id, metric)


# How an order's story reads, one line per step (events not named here are not told).
STORY = {
    Event.ORDER_RECEIVED: "order received",
    Event.ORDER_CANCELLED: "cancelled by the store",
    Event.STARTED: "customer opened the verification",
    Event.SUBMITTED: "customer submitted the verification",
    Event.APPROVED: "verified",
    Event.REUSED: "verified: returning customer",
    Event.CUSTOMER_REVOKED: "verified-customer record revoked",
    Event.DECLINED: "declined",
    Event.IN_REVIEW: "in review at the provider",
    Event.RESUBMISSION_REQUESTED: "provider asked for a resubmission",
    Event.EXPIRED: "expired (deadline passed)",
    Event.DEADLINE_EXTENDED: "deadline extended",
    Event.LINK_RESENT: "link resent",
    Event.REFUND_REQUESTED: "refund requested",
    Event.REFUND_MANUAL: "refund waits for an operator",
    Event.REFUND_COMPLETED: "refund done",
    Event.REFUND_FAILED: "refund failed",
    Event.EMAIL_FAILED: "email could not be sent",
    Event.STORE_HELD: "hold placed",
    Event.STORE_RELEASED: "released",
    Event.STORE_CANCELLED: "cancelled and refunded",
    Event.STORE_FLAGGED: "flagged for review at the store",
    Event.STORE_NOTIFIED: "outcome webhook delivered",
    Event.STORE_ACTION_FAILED: "the store refused an action",
}
EMAIL_STORY = {Email.LINK: "link sent", Email.REMINDER: "reminder sent"}


def story_of(event: EventMessage) -> str | None:
    """The step `event` is in its order's story, or None. Kinds and ids only: no customer data."""
    if event.type == Event.EMAIL_SENT:
        kind = event.data.get("kind")
        if kind not in set(Email):
            return None
        return EMAIL_STORY.get(Email(kind), f"{kind} email sent")
    if event.type == Event.STORE_NOTIFIED and event.data.get("type") in NOTICE_TYPES:
        return f"outcome webhook {event.data['type']} delivered"
    try:
        return STORY.get(Event(event.type))
    except ValueError:
        return None


NOTICE_TYPES = frozenset({"order.held", "order.verified", "order.expired", "order.declined", "order.cancelled",
                          "order.in_review"})


def tell(event: EventMessage) -> None:
    phrase = story_of(event)
    if phrase:
        story.info("order %s: %s", logctx.identifier(event.order_id) or "?", phrase,
                   extra={"labels": {"event": event.type}})


def funnel(db: Database, start: date, end: date) -> dict[str, Any]:
    """The funnel for days [start, end]: counts, conversion %, time-to-verify buckets and median."""
    with db.read() as conn:
        return reads.funnel(conn, start, end)
