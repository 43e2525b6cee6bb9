"""`send_customer_email`'s use case: one customer email, sent at most once per claim.

Which kinds exist and what each needs (a link, the statuses it may go out in) is the spec
table `shared.domain.model.EMAILS`; this module reads it and holds no kind of its own.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from email.errors import MessageError
from typing import Any

from shared.config import Settings
from shared.db import claims, sessions, store_actions
from shared.db.database import Database
from shared.db.unit_of_work import UnitOfWork
from shared.domain import keys
from shared.domain.messages import EmailJob
from shared.domain.model import Email, EmailClaim, Event, email_spec
from shared.emails.render import build_message
from shared.errors import PermanentError, TransientError
from shared.handlers.result import Result, ResultStatus
from shared.ports import EmailSender, VerificationProvider

log = logging.getLogger(__name__)

# How long a sent email's record is retried through a database outage, at most: inside
# send_customer_email's 120 s timeout (infra/config.sh) with the send's own time, since a
# request past it is answered 504 by Cloud Run and may lose its CPU mid-retry.
RECORD_RETRY_MAX_SECONDS = 90.0


def send_email(db: Database, settings: Settings, sender: EmailSender, provider: VerificationProvider,
               job: EmailJob, *, now: datetime) -> Result:
    """Send one email at most once per claim: SENT, or why not (SKIPPED: it cannot be built, or the
    server refused it for good; DUPLICATE; IGNORED).

    Raises TransientError to be retried: when the send failed, and when another attempt
    holds the claim's lease (it may yet fail; if it crashed, the lease passes and a later
    delivery takes the claim over). Never SENT for an email that was not sent."""
    kind = job.kind
    spec = email_spec(kind)
    with db.read() as conn:
        session = sessions.load_session(conn, job.order_id)
    if session is None:
        return Result(ResultStatus.IGNORED, job.order_id, "unknown order")
    if not spec.sendable(session["status"]):
        return Result(ResultStatus.IGNORED, job.order_id, f"session is {session['status']}")
    if session["customer_email"] is None:
        return Result(ResultStatus.IGNORED, job.order_id, "customer erased (past RETENTION)")
    lease = settings.lifecycle.email_lease.total_seconds()
    claim = claims.claim_email(db, job.order_id, kind, job.reminder_index, lease)
    if claim is EmailClaim.SENDING:
        raise TransientError("this email is being sent by another attempt", component="email")
    if claim is not EmailClaim.CLAIMED:
        return Result(ResultStatus.DUPLICATE, job.order_id, f"already {claim}")
    refused: Exception | None = None
    try:
        url = None
        if spec.needs_link:
            url = session["provider_url"]
            if not url:
                created = provider.create_session(job.order_id)
                chosen = settings.inbound.providers.id_provider  # the provider `provider` is
                with UnitOfWork(db, now=now) as uow:
                    _, url = sessions.set_provider_session(uow.conn, job.order_id, chosen, created.session_id,
                                                          created.url)
                    uow.commit()
        # The customer is told the store's own order id, never our session key. Every send of
        # this claim's email (a retry after a crash lost its record) has one Message-ID; a new
        # link (the operator's resend) makes a new email.
        repeat_key = "\x00".join((job.order_id, kind, str(job.reminder_index), url or ""))
        message = build_message(
            session["customer_email"], kind,
            repeat_key=repeat_key,
            order_id=keys.ref(job.order_id).order_id,
            verification_url=url,
            deadline=session["deadline"],
            store_timezone=settings.email.store_timezone,
            reminder_index=job.reminder_index,
            store_name=settings.email.store_name,
            store_told=spec.tells_shipping and _release_asked(db, job.order_id),
        )
        sender.send(message)
    # The message itself is at fault, the server refused this email for good (its recipient, its
    # content), or the provider refused to open this order's link: no retry can send it.
    except (MessageError, PermanentError) as exc:
        refused = exc
    except BaseException:
        with UnitOfWork(db, now=now) as uow:
            claims.release_email(uow.conn, job.order_id, kind, job.reminder_index)
            uow.commit()
        raise
    if refused is not None:  # no retry can help (nor a re-drive of the link): an operator must
        log.error("email %s cannot be built or sent: %s", kind, type(refused).__name__,
                  extra={"labels": {"event": "email.failed", "email_kind": str(kind),
                                    "error_class": type(refused).__name__}})
        return _finish_email(db, job, now, EmailClaim.SKIPPED, Event.EMAIL_FAILED, reason=type(refused).__name__)
    result = _record_sent(db, job, now, lease=lease)
    if kind == Email.LINK and job.reminder_index == 0 and session.get("created_at") is not None:
        # The log-based distribution `time_to_link` (infra/monitoring/): from the order's
        # arrival to its link email, in seconds.
        waited = max((now - session["created_at"]).total_seconds(), 0.0)
        log.info("link email sent %.1f s after the order", waited,
                 extra={"labels": {"event": "email.link_sent", "seconds_since_order": f"{waited:.3f}"}})
    return result


def _release_asked(db: Database, order_id: str) -> bool:
    """Whether the order's own store connector was asked to release it (and did not refuse)."""
    with db.read() as conn:
        return store_actions.release_asked(conn, order_id)


def _record_sent(db: Database, job: EmailJob, now: datetime, *, lease: float) -> Result:
    """Record a sent email, retrying a database outage for half the claim's `lease` (so no
    other delivery takes the claim over meanwhile), at most RECORD_RETRY_MAX_SECONDS: the
    message is out, and if this record were given up, the claim's lease would pass and the
    email be sent again (with the same Message-ID)."""
    give_up_at = time.monotonic() + min(lease / 2, RECORD_RETRY_MAX_SECONDS)
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
        claims.finish_email(uow.conn, job.order_id, job.kind, job.reminder_index, str(state))
        uow.effects(job.order_id, actor="send_customer_email").event(
            event, kind=job.kind, reminder_index=job.reminder_index, **details)
        uow.commit()
    return Result(_FINISHED[state], job.order_id, details.get("reason"))
