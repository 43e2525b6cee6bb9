"""`request_refund`'s use case: ask the store for an order's refund once, and record the outcome."""

from __future__ import annotations

from datetime import datetime

from shared.config import Settings
from shared.db import claims, sessions
from shared.db.database import Database
from shared.db.unit_of_work import UnitOfWork
from shared.domain.messages import OrderAction
from shared.domain.model import ERASED, REFUNDABLE, Event, RefundClaim, Status
from shared.errors import TransientError
from shared.handlers.result import Result, ResultStatus
from shared.ports import RefundGateway, RefundResult

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
        status = sessions.session_status(conn, action.order_id)
    if status is None:
        return Result(ResultStatus.IGNORED, action.order_id, "unknown order")
    # A session closed because its customer was forgotten (`erased`) was never verified: its
    # order is refunded too (a store's own cancellation asks for none).
    if status not in REFUNDABLE and not (status == Status.CANCELLED and action.reason == ERASED.reason):
        return Result(ResultStatus.IGNORED, action.order_id, f"not refunded: session is {status}")
    claim = claims.claim_refund(db, action.order_id, settings.lifecycle.email_lease.total_seconds())
    if claim is RefundClaim.REQUESTED:
        raise TransientError("this refund is being requested by another attempt", component="refund")
    if claim is not RefundClaim.CLAIMED:
        return Result(ResultStatus.DUPLICATE, action.order_id, f"refund already {claim}")
    try:
        result = gateway.refund(action.order_id, idempotency_key=f"refund-{action.order_id}",
                                reason=action.reason)
    except BaseException:
        claims.release_refund(db, action.order_id)
        raise
    with UnitOfWork(db, now=now) as uow:
        if claims.set_refund_status(uow.conn, action.order_id, str(result)):
            uow.effects(action.order_id, actor="request_refund").event(REFUND_EVENTS[result], reason=action.reason)
            uow.commit()
    return Result(ResultStatus.ACCEPTED, action.order_id, str(result))
