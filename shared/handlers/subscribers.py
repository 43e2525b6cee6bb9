"""What the three Pub/Sub subscribers do with one message each.

Deduplication is by the message's stable key (the `message_key` attribute the
outbox sets, identical when a row is re-published), never by Pub/Sub's own
message id, which changes on a re-publish.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from email.errors import MessageError
from typing import Any

from shared.ports import EmailSender, RefundGateway, RefundResult, VerificationProvider
from shared.config import Settings
from shared.db import store
from shared.db.database import Database
from shared.domain.messages import EmailJob, EventMessage, OrderAction
from shared.domain.model import EMAILS, EmailClaim, Event, RefundClaim, Status, email_spec
from shared.emails.render import build_message
from shared.errors import TransientError
from shared.db.unit_of_work import UnitOfWork
from shared.handlers.result import Result, ResultStatus

log = logging.getLogger(__name__)

REFUNDABLE = (Status.DECLINED, Status.EXPIRED)


# ---- customer emails -------------------------------------------------------------


def send_email(db: Database, settings: Settings, sender: EmailSender, provider: VerificationProvider,
               job: EmailJob, *, now: datetime) -> Result:
    """Send one email at most once per claim: SENT, or why not (SKIPPED, DUPLICATE, IGNORED).

    Raises TransientError to be retried: when the send failed, and when another attempt
    holds the claim's lease (it may yet fail; if it crashed, the lease passes and a later
    delivery takes the claim over). Never SENT for an email that was not sent."""
    kind = job.kind
    spec = email_spec(kind)
    with db.read() as conn:
        session = store.load_session(conn, job.order_id)
    if session is None:
        return Result(ResultStatus.IGNORED, job.order_id, "unknown order")
    if not spec.sendable(session["status"]):
        return Result(ResultStatus.IGNORED, job.order_id, f"session is {session['status']}")
    if session["customer_email"] is None:
        return Result(ResultStatus.IGNORED, job.order_id, "customer erased (past RETENTION)")
    lease = settings.email_lease.total_seconds()
    claim = store.claim_email(db, job.order_id, kind, job.reminder_index, lease)
    if claim is EmailClaim.SENDING:
        raise TransientError("this email is being sent by another attempt", component="email")
    if claim is not EmailClaim.CLAIMED:
        return Result(ResultStatus.DUPLICATE, job.order_id, f"already {claim}")
    try:
        url = None
        if spec.needs_link:
            url = session["veriff_url"]
            if not url:
                created = provider.create_session(job.order_id)
                with db.transaction() as conn:
                    _, url = store.set_provider_session(conn, job.order_id, created.session_id, created.url)
        message = build_message(
            session["customer_email"], kind, order_id=job.order_id, verification_url=url,
            deadline=session["deadline"], store_timezone=settings.store_timezone,
            reminder_index=job.reminder_index, store_name=settings.store_name,
        )
        sender.send(message)
    except MessageError as exc:  # the message itself is at fault: no retry can help, an operator must
        log.error("email %s cannot be built or sent: %s", kind, type(exc).__name__)
        return _finish_email(db, job, now, EmailClaim.SKIPPED, Event.EMAIL_FAILED, reason=type(exc).__name__)
    except BaseException:
        with db.transaction() as conn:
            store.release_email(conn, job.order_id, kind, job.reminder_index)
        raise
    return _record_sent(db, job, now, within=lease / 2)


def _record_sent(db: Database, job: EmailJob, now: datetime, *, within: float) -> Result:
    """Record a sent email, retrying a database outage for up to `within` seconds (half the
    claim's lease, so no other delivery takes the claim over meanwhile): the message is out,
    and if this record were given up, the claim's lease would pass and the email be sent
    again."""
    give_up_at = time.monotonic() + within
    pause = 0.25
    while True:
        try:
            return _finish_email(db, job, now, EmailClaim.SENT, Event.EMAIL_SENT)
        except TransientError:
            if time.monotonic() + pause > give_up_at:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


# How a claimed email ended, as the email's state and the use case's result.
_FINISHED = {EmailClaim.SENT: ResultStatus.SENT, EmailClaim.SKIPPED: ResultStatus.SKIPPED}


def _finish_email(db: Database, job: EmailJob, now: datetime, state: EmailClaim, event: Event,
                  **details: Any) -> Result:
    with UnitOfWork(db, now=now) as uow:
        store.finish_email(uow.conn, job.order_id, job.kind, job.reminder_index, str(state))
        uow.effects(job.order_id, actor="send_customer_email").event(
            event, kind=job.kind, reminder_index=job.reminder_index, **details)
        uow.commit()
    return Result(_FINISHED[state], job.order_id, details.get("reason"))


def redrive_lost_work(db: Database, settings: Settings, *, now: datetime, limit: int = 200) -> int:
    """The sweeper's safety net for work a crash or a dropped message lost: link emails never
    sent, email claims left past their lease, refunds never completed. Each is enqueued
    again (the claims make a repeat harmless). Returns how many were enqueued."""
    lease = settings.email_lease.total_seconds()
    with UnitOfWork(db, now=now) as uow:
        emails = store.emails_to_redrive(uow.conn, lease, limit)
        refunds = store.refunds_to_redrive(uow.conn, lease, limit)
        for order_id, kind, reminder_index in emails:
            uow.effects(order_id, actor="sweeper").email(kind, reminder_index)
        for order_id, reason in refunds:
            uow.effects(order_id, actor="sweeper").refund_action(reason)
        uow.commit()
    if emails or refunds:
        log.warning("sweep re-enqueued %d emails and %d refunds", len(emails), len(refunds))
    return len(emails) + len(refunds)


# ---- analytics ---------------------------------------------------------------------

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


def funnel(db: Database, start, end) -> dict[str, Any]:
    """The funnel for days [start, end]: counts, conversion %, time-to-verify buckets and median."""
    with db.read() as conn:
        report = store.funnel(conn, start, end)
    received = report["counts"].get("orders_received", 0)
    verified = report["counts"].get("verified", 0)
    report["conversion_percent"] = round(100.0 * verified / received, 1) if received else None
    return report


# ---- refunds -----------------------------------------------------------------------

# A refund's outcome and the event that records it (the refund subscriber's and the operator's).
REFUND_EVENTS = {RefundResult.REFUNDED: Event.REFUND_COMPLETED, RefundResult.FAILED: Event.REFUND_FAILED,
                 RefundResult.MANUAL: Event.REFUND_MANUAL}


def request_refund(db: Database, settings: Settings, gateway: RefundGateway, action: OrderAction, *,
                   now: datetime) -> Result:
    """Ask for the refund once per order; the outcome recorded on the session and as an event
    (ACCEPTED, its detail the gateway's answer), or why not (DUPLICATE, IGNORED).

    The claim (refund_status NULL → requested, with a lease) commits before the call. A
    delivery that finds another attempt's lease raises TransientError (retried later); one
    that finds the lease passed (a crash) takes it over and calls again with the same
    Idempotency-Key, so the store's API sees one refund whatever happens here."""
    with db.read() as conn:
        status = store.session_status(conn, action.order_id)
    if status is None:
        return Result(ResultStatus.IGNORED, action.order_id, "unknown order")
    if status not in REFUNDABLE:  # closed for good: a refund is owed only for these
        return Result(ResultStatus.IGNORED, action.order_id, f"not refunded: session is {status}")
    claim = store.claim_refund(db, action.order_id, settings.email_lease.total_seconds())
    if claim is RefundClaim.REQUESTED:
        raise TransientError("this refund is being requested by another attempt", component="refund")
    if claim is not RefundClaim.CLAIMED:
        return Result(ResultStatus.DUPLICATE, action.order_id, f"refund already {claim}")
    try:
        result = gateway.refund(action.order_id, idempotency_key=f"refund-{action.order_id}",
                                reason=action.reason)
    except BaseException:
        store.release_refund(db, action.order_id)
        raise
    with UnitOfWork(db, now=now) as uow:
        if store.set_refund_status(uow.conn, action.order_id, str(result)):
            uow.effects(action.order_id, actor="request_refund").event(REFUND_EVENTS[result], reason=action.reason)
            uow.commit()
    return Result(ResultStatus.ACCEPTED, action.order_id, str(result))

