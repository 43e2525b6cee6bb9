"""Webhook inputs: order placed, provider decision, store cancellation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from shared.config import Settings
from shared.db import claims, customer_store, sessions
from shared.db.database import Database
from shared.domain import customers, keys
from shared.domain.messages import (
    IgnoredDelivery,
    OrderPlaced,
    ProviderDecision,
    ProviderEvent,
    StoreCancelled,
)
from shared.domain.model import (
    APPROVAL_RULES,
    AgeCheck,
    DECISION_RULES,
    PROVIDER_EVENTS,
    RETURNING_CUSTOMER,
    RETURNING_CUSTOMER_TOLD,
    STORE_CANCEL,
    Decision,
    Email,
    Event,
    ProviderEventKind,
    age_check,
    deadline_for,
    is_stale,
    timers_for,
)
from shared.db.unit_of_work import UnitOfWork
from shared.domain.effects import Effects
from shared.domain.ids import new_id
from shared.handlers.result import Result, ResultStatus
from shared.stores.base import StoreActionKind
from shared.stores.registry import NO_STORES, StoreRegistry
from shared.handlers.transitions import (
    apply_effects,
    claim_and_bind,
    remember,
    revoke_underage,
    session_of,
    transition,
)


def place_order(db: Database, settings: Settings, cmd: OrderPlaced, *, now: datetime,
                request_id: str | None = None, stores: StoreRegistry = NO_STORES) -> Result:
    """Open a session with its deadline and timers, once per order; a stale order opens none, nor
    one the store cancelled first (a paid delivery retried after the void). The store is asked
    to hold the order (through each connector that holds: `stores`), in the same statement."""
    if is_stale(cmd.ordered_at, now, settings.lifecycle.max_order_age):
        return _record_stale(db, cmd, now=now, request_id=request_id)
    start, deadline = deadline_for(now, settings.lifecycle.verification_window)
    params = {
        "provider": cmd.provider, "event_id": cmd.event_id, "order_id": cmd.order_id,
        "customer_email": cmd.customer_email, "customer_id": cmd.customer_id,
        "order_total": cmd.order_total, "currency": cmd.currency,
        "ordered_at": start, "deadline": deadline, "now": now, "request_id": request_id,
        "store_ordered_at": cmd.ordered_at, "store_ref": cmd.store_ref,
        "duplicate_event_id": new_id(),
    }
    customer = (customers.keys_for(settings.reuse.pepper(), cmd.provider, cmd.customer_id, cmd.customer_email)
                if cmd.customer_id else None)  # a guest never has a key

    def new_session(uow: UnitOfWork) -> Effects:
        """The rows a new pending session writes with it (`UnitOfWork.place_order`)."""
        fx = uow.effects(cmd.order_id, actor=cmd.provider)
        fx.event(Event.ORDER_RECEIVED, provider=cmd.provider, event_id=cmd.event_id)
        fx.event(Event.VERIFICATION_REQUESTED, deadline=deadline.isoformat())
        fx.email(Email.LINK)
        for timer in timers_for(start, deadline, settings.lifecycle.reminder_offsets):
            fx.schedule(timer)
        fx.store_action(StoreActionKind.HOLD, stores.connectors_for(cmd.provider, StoreActionKind.HOLD))
        return fx

    uow = UnitOfWork(db, now=now, request_id=request_id)
    namespaced = keys.is_namespaced(cmd.provider)
    if namespaced or customer is not None:
        # Only a namespaced source sends cancellations, and a void may overtake the paid
        # delivery (retried for 48 h) or race it: under the order's lock, which the void takes
        # too, a void recorded first opens nothing. A customer with a key may be a returning one
        # (DESIGN.md 3b): the record is read and used in this same transaction.
        with uow:
            if namespaced:
                sessions.lock_order(uow.conn, cmd.order_id)
            cancelled = namespaced and sessions.cancelled_without_session(uow.conn, cmd.order_id)
            if not cancelled:
                claimed, opened = _place_order_with_key(uow, cmd, params, new_session, customer, now, stores,
                                                        tell_returning=settings.reuse.returning_email)
            uow.commit()
        if cancelled:
            return record_ignored(db, settings, IgnoredDelivery(cmd.provider, cmd.event_id, cmd.order_id,
                                                                reason="cancelled_by_store"),
                                  now=now, request_id=request_id)
    else:  # the fast path (a guest, or verify once off): the unit of work is one prepared statement
        claimed, opened = uow.place_order(new_session(uow), params)
    if opened:
        return Result(ResultStatus.ACCEPTED, cmd.order_id)
    if claimed:
        return Result(ResultStatus.DUPLICATE, cmd.order_id, "order already has a verification session")
    return Result(ResultStatus.DUPLICATE, cmd.order_id, "event already received")


def _place_order_with_key(uow: UnitOfWork, cmd: OrderPlaced, params: dict,
                          new_session: Callable[[UnitOfWork], Effects],
                          customer: customers.CustomerKeys | None, now: datetime,
                          stores: StoreRegistry, *, tell_returning: bool = False) -> tuple[bool, bool]:
    """`place_order` in the unit of work's transaction, or, for a returning customer whose
    record is unexpired (held against revocation until commit), the session opened `verified`:
    no provider session, link, reminders or deadline timer, and no hold: the store is told to
    release at once (its `release` store action, written here with the session). With
    `tell_returning` (RETURNING_CUSTOMER_EMAIL) the customer's short "no action needed" email
    is queued in the same transaction, once: a repeat of the order opens nothing."""
    record = customer and customer_store.reusable_record(uow.conn, customer.customer_key, now)
    if not record:
        claimed, opened = uow.place_order(new_session(uow), params)
        if opened and customer is not None:
            customer_store.set_session_keys(uow.conn, cmd.order_id, customer.customer_key, customer.email_key)
        return claimed, opened
    claimed, opened = customer_store.open_reused_session(
        uow.conn, {**params, "customer_key": customer.customer_key, "email_key": customer.email_key})
    fx = uow.effects(cmd.order_id, actor=cmd.provider)
    if opened:
        fx.event(Event.ORDER_RECEIVED, provider=cmd.provider, event_id=cmd.event_id)
        rule = RETURNING_CUSTOMER_TOLD if tell_returning else RETURNING_CUSTOMER
        apply_effects(uow, fx, rule, {
            "original_session": record["session_id"], "verified_at": record["verified_at"].isoformat(),
            "expires_at": record["expires_at"].isoformat()}, stores)
    elif claimed:
        fx.event(Event.ORDER_DUPLICATE, provider=cmd.provider, event_id=cmd.event_id)
    return claimed, opened


def _record_stale(db: Database, cmd: OrderPlaced, *, now: datetime, request_id: str | None) -> Result:
    with UnitOfWork(db, now=now, request_id=request_id) as uow:
        if not claims.claim_delivery(uow.conn, cmd.provider, cmd.event_id, cmd.order_id):
            uow.commit()  # the repeat is counted
            return Result(ResultStatus.DUPLICATE, cmd.order_id, "event already received")
        uow.effects(cmd.order_id, actor=cmd.provider).event(
            Event.ORDER_STALE, provider=cmd.provider, event_id=cmd.event_id, ordered_at=cmd.ordered_at.isoformat())
        uow.commit()
    return Result(ResultStatus.IGNORED, cmd.order_id,
                  "order is older than MAX_ORDER_AGE: recorded for the operator")


def record_decision(db: Database, settings: Settings, cmd: ProviderDecision, *, now: datetime,
                    request_id: str | None = None, stores: StoreRegistry = NO_STORES) -> Result:
    """Apply the provider's decision to the session it was made for, if its status allows; else record it.

    An approval is checked against MINIMUM_AGE on the decision's date (UTC), never later than
    today: a `decisionTime` in the future would make the customer older than they are (an
    underage customer would pass). Only the outcome (`age_check`) is kept, never the date of birth."""
    rule = DECISION_RULES[cmd.decision]
    details: dict = {"decision": str(cmd.decision), "code": cmd.code,
                     "verification_id": cmd.verification_id, "reason_code": cmd.reason_code}
    if cmd.decision is Decision.APPROVED:
        decided_on = min(cmd.decided_at or now, now).date()
        outcome = age_check(cmd.birth_date, decided_on, settings.lifecycle.minimum_age)
        rule = APPROVAL_RULES[outcome]
        details["age_check"] = str(outcome)
    if rule.reason:
        details["reason"] = rule.reason
    after = None
    if cmd.decision is Decision.APPROVED:
        after = (remember(settings.reuse.reverify_after, now) if outcome is AgeCheck.PASSED
                 else revoke_underage if outcome is AgeCheck.UNDERAGE else None)
    return transition(db, cmd.provider, cmd.event_id, cmd.order_id, rule, details,
                       ignored_event=Event.DECISION_IGNORED, now=now, request_id=request_id,
                       session_id=cmd.verification_id, decided_at=cmd.decided_at, stores=stores,
                       after=after)


def record_provider_event(db: Database, settings: Settings, cmd: ProviderEvent, *, now: datetime,
                          request_id: str | None = None) -> Result:
    """Record the customer's progress; a submission before the deadline holds the expiry
    for the decision until deadline + DECISION_GRACE."""
    details: dict = {"verification_id": cmd.verification_id}
    with UnitOfWork(db, now=now, request_id=request_id) as uow:
        order_id = session_of(uow, cmd.provider, cmd.order_id, cmd.verification_id)
        fx = uow.effects(order_id, actor=cmd.provider)
        stopped = claim_and_bind(uow, fx, cmd.provider, cmd.event_id, order_id,
                                  cmd.verification_id, Event.DECISION_IGNORED, details)
        if stopped:
            return stopped
        if cmd.kind is ProviderEventKind.SUBMITTED:
            hold = sessions.hold_for_decision(uow.conn, order_id, now, settings.lifecycle.decision_grace)
            if hold is not None:
                details["decision_due_by"] = hold.isoformat()
        fx.event(PROVIDER_EVENTS[cmd.kind], **details)
        uow.commit()
    return Result(ResultStatus.ACCEPTED, order_id)


def record_ignored(db: Database, settings: Settings, cmd: IgnoredDelivery, *, now: datetime,
                   request_id: str | None = None) -> Result:
    """A delivery the service does not act on (a walk-in sale, a return): recorded once, answered 200."""
    with UnitOfWork(db, now=now, request_id=request_id) as uow:
        if not claims.claim_delivery(uow.conn, cmd.provider, cmd.event_id, cmd.order_id):
            uow.commit()  # the repeat is counted
            return Result(ResultStatus.DUPLICATE, cmd.order_id, "event already received")
        uow.effects(cmd.order_id, actor=cmd.provider).event(
            Event.ORDER_IGNORED, provider=cmd.provider, event_id=cmd.event_id, reason=cmd.reason)
        uow.commit()
    return Result(ResultStatus.IGNORED, cmd.order_id, cmd.reason)


def cancel_order(db: Database, settings: Settings, cmd: StoreCancelled, *, now: datetime,
                 request_id: str | None = None, stores: StoreRegistry = NO_STORES) -> Result:
    """The store voided the order: close the session and its timers. A void that comes before
    any session is recorded (`order.cancel_ignored`), so the paid delivery it overtook opens none."""
    return transition(db, cmd.provider, cmd.event_id, cmd.order_id, STORE_CANCEL, {},
                       ignored_event=Event.CANCEL_IGNORED, now=now, request_id=request_id,
                       record_unknown=True, stores=stores)
