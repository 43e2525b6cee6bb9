"""The operator's commands (`shared.domain.operator_commands`), from the console and the CLI
alike through `shared.bootstrap.handle`, which relays what they committed.

Verify, cancel and extend are the shared transitions (`intake.operator_action`,
`timers.extend_deadline`), recorded with the operator; the actions webhooks and timers never
take are here: resend the link, close a manual refund, retry a store action or a parked outbox
row. Each is a conditional update whose event-log and outbox rows commit with it, recorded with
the operator as actor; `actor` gives the one spelling of an operator for all of them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.config import TIMER_HORIZON, Settings, parse_duration
from shared.db import operator_store
from shared.db.database import Database
from shared.db.unit_of_work import UnitOfWork
from shared.domain import reasons
from shared.domain.model import Email, Event
from shared.domain.operator_commands import (
    BadAction,
    CancelOrder,
    ExtendDeadline,
    RecordRefund,
    ResendLink,
    RetryParked,
    RetryStoreAction,
    VerifyOrder,
)
from shared.errors import ConfigError
from shared.handlers import intake, timers
from shared.handlers.result import Result, ResultStatus
from shared.handlers.refunds import REFUND_EVENTS
from shared.stores.registry import NO_STORES, StoreRegistry


RESEND_GUARD = timedelta(minutes=1)  # a resend within this of the last is a repeat, not a new link


def actor(operator: str) -> str:
    return intake.operator_actor(operator)


def verify(db: Database, settings: Settings, cmd: VerifyOrder, *, now: datetime,
           stores: StoreRegistry = NO_STORES) -> Result:
    """The approval transition, by hand; with `age_checked`, the customer is remembered for
    verify once (when it is on)."""
    return intake.operator_action(db, cmd.order_id, "verify", operator=cmd.operator, now=now, reason=cmd.reason,
                                  note=cmd.note, age_checked=cmd.age_checked,
                                  reverify_after=settings.reuse.reverify_after, stores=stores)


def cancel(db: Database, cmd: CancelOrder, *, now: datetime, stores: StoreRegistry = NO_STORES) -> Result:
    """The store cancellation's transition, by hand."""
    return intake.operator_action(db, cmd.order_id, "cancel", operator=cmd.operator, now=now, reason=cmd.reason,
                                  note=cmd.note, stores=stores)


def extend(db: Database, settings: Settings, cmd: ExtendDeadline, *, now: datetime) -> Result:
    """A later deadline, `duration` from now: at most TIMER_HORIZON ahead (Cloud Tasks sets no
    timer further), BadAction naming the field otherwise."""
    try:
        deadline = now + parse_duration(cmd.duration or "", "duration")
    except (ConfigError, OverflowError):  # OverflowError: past the year 9999
        raise BadAction("the new deadline needs a duration from now, like 48h", field="duration") from None
    if deadline - now > TIMER_HORIZON:
        raise BadAction("the new deadline must be at most 720h (30 days) from now: Cloud Tasks sets no "
                        "timer further ahead", field="duration")
    return timers.extend_deadline(db, settings, cmd.order_id, deadline, now=now, actor=actor(cmd.operator))


def resend(db: Database, cmd: ResendLink, *, now: datetime) -> Result:
    return resend_link(db, cmd.order_id, operator=cmd.operator, now=now)


def record_refund(db: Database, cmd: RecordRefund, *, now: datetime) -> Result:
    return close_refund(db, cmd.order_id, cmd.outcome, operator=cmd.operator, now=now, reason=cmd.reason,
                        note=cmd.note)


def retry_store(db: Database, cmd: RetryStoreAction, *, now: datetime) -> Result:
    return retry_store_action(db, cmd.order_id, cmd.store_action, operator=cmd.operator, now=now)


def retry(db: Database, cmd: RetryParked, *, now: datetime) -> list[str]:
    return retry_parked(db, cmd.outbox_id, operator=cmd.operator, now=now)


def resend_link(db: Database, order_id: str, *, operator: str, now: datetime) -> Result:
    """An open session gets a fresh provider session and a new link email (the first is link 0),
    once within RESEND_GUARD: a double click, or two operators at once, send one. Not while the
    provider decides on the customer's submission: its decision would then be for a superseded
    session and ignored, and an adult who verified would be refunded."""
    with UnitOfWork(db, now=now) as uow:
        if operator_store.provider_deciding(uow.conn, order_id, now):  # locks the session row
            return Result(ResultStatus.IGNORED, order_id,
                          "the provider is deciding on the customer's submission; a new link would void it")
        if not operator_store.clear_provider_session(uow.conn, order_id):
            return Result(ResultStatus.IGNORED, order_id, "unknown order, or the session is closed")
        last = operator_store.last_link_resend(uow.conn, order_id)
        if last is not None and now - last < RESEND_GUARD:
            return Result(ResultStatus.IGNORED, order_id, "the link was resent less than a minute ago")
        index = operator_store.next_link_index(uow.conn, order_id)
        fx = uow.effects(order_id, actor=actor(operator))
        fx.event(Event.LINK_RESENT, link_index=index)
        fx.email(Email.LINK, index)
        uow.commit()
    return Result(ResultStatus.ACCEPTED, order_id)


# The reason codes of closing a refund by hand, by its outcome (`shared.domain.reasons`).
REFUND_REASON_ACTION = {"refunded": "refund-done", "failed": "refund-failed"}


def close_refund(db: Database, order_id: str, outcome: str, *, operator: str, now: datetime,
                 reason: str | None = None, note: str | None = None) -> Result:
    """A refund done by hand: `refunded` (from manual or failed) or `failed` (from manual).
    An optional reason code (how it was refunded, why it failed) goes on the event; the note,
    if any, in the database only (`operator_notes`)."""
    note = reasons.clean_note(note)
    code = reasons.reason(REFUND_REASON_ACTION[outcome], reason, note)
    with UnitOfWork(db, now=now) as uow:
        before = operator_store.close_refund(uow.conn, order_id, outcome)
        if before is None:
            return Result(ResultStatus.IGNORED, order_id, "no manual refund open for this order")
        fx = uow.effects(order_id, actor=actor(operator))
        fx.explain(note)
        fx.event(REFUND_EVENTS[outcome], manual=True, previous=before, **({"reason": code} if code else {}))
        uow.commit()
    return Result(ResultStatus.ACCEPTED, order_id)


def retry_store_action(db: Database, order_id: str, store_action: str | None, *, operator: str,
                       now: datetime) -> Result:
    """A store action the store refused (`action:connector`, as the order page names it) is asked
    again: due, its message re-published; recorded with the operator."""
    action, _, connector = (store_action or "").partition(":")
    if not action or not connector:
        return Result(ResultStatus.IGNORED, order_id, "which store action? (action:connector)")
    with UnitOfWork(db, now=now) as uow:
        refused = operator_store.retry_store_action(uow.conn, order_id, action, connector)
        if refused:
            return Result(ResultStatus.IGNORED, order_id, refused)
        fx = uow.effects(order_id, actor=actor(operator))
        fx.event(Event.STORE_ACTION_RETRIED, action=action, connector=connector)
        fx.store_action_message(action, connector)
        uow.commit()
    return Result(ResultStatus.ACCEPTED, order_id)


def retry_parked(db: Database, outbox_id: int | None, *, operator: str, now: datetime) -> list[str]:
    """Make parked rows due again (one, or every one when `outbox_id` is None); their order ids."""
    with UnitOfWork(db, now=now) as uow:
        rows = operator_store.unpark_outbox(uow.conn, outbox_id)
        for row_id, order_id in rows:
            uow.effects(order_id, actor=actor(operator)).event(Event.OUTBOX_RETRIED, outbox_id=row_id)
        uow.commit()
    return sorted({order_id for _, order_id in rows if order_id})
