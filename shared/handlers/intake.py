"""Webhook inputs: order placed, provider decision, store cancellation."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from shared.config import Settings
from shared.db import store
from shared.db.database import Database
from shared.domain.messages import OrderPlaced, ProviderDecision, StoreCancelled
from shared.domain.model import (
    DECISION_RULES,
    STORE_CANCEL,
    Decision,
    Email,
    Event,
    Status,
    Transition,
    deadline_for,
    timers_for,
)
from shared.handlers.effects import Effects


@dataclass(frozen=True)
class Result:
    status: str  # "accepted" | "duplicate" | "ignored"
    order_id: str | None = None
    detail: str | None = None

    def to_dict(self) -> dict[str, str]:
        body = {"status": self.status}
        if self.order_id:
            body["orderId"] = self.order_id
        if self.detail:
            body["detail"] = self.detail
        return body


def place_order(db: Database, settings: Settings, cmd: OrderPlaced, *, now: datetime,
                request_id: str | None = None) -> Result:
    """Open a session with its deadline and timers, once per order."""
    start, deadline = deadline_for(cmd.ordered_at, now, settings.verification_window)
    timers = timers_for(start, deadline, settings.reminder_offsets)
    fx = Effects(cmd.order_id, now, request_id)
    fx.event(Event.ORDER_RECEIVED, provider=cmd.provider, event_id=cmd.event_id)
    fx.event(Event.VERIFICATION_REQUESTED, deadline=deadline.isoformat())
    fx.email(Email.LINK)
    for timer in timers:
        fx.schedule(timer)
    claimed, opened = store.place_order(db, {
        "provider": cmd.provider, "event_id": cmd.event_id, "order_id": cmd.order_id,
        "customer_email": cmd.customer_email, "customer_id": cmd.customer_id,
        "order_total": cmd.order_total, "currency": cmd.currency,
        "ordered_at": start, "deadline": deadline, "now": now, "request_id": request_id,
        "duplicate_event_id": str(uuid.uuid4()),
        "events": fx.events,
        "timers": [{"order_id": cmd.order_id, "kind": t.kind, "reminder_index": t.reminder_index,
                    "deadline_version": t.deadline_version, "fire_at": t.fire_at.isoformat(),
                    "task_name": t.task_name(cmd.order_id)} for t in timers],
        "outbox": fx.outbox,
    })
    if opened:
        return Result("accepted", cmd.order_id)
    if claimed:
        return Result("duplicate", cmd.order_id, "order already has a verification session")
    return Result("duplicate", cmd.order_id, "event already received")


def record_decision(db: Database, cmd: ProviderDecision, *, now: datetime,
                    request_id: str | None = None) -> Result:
    """Apply the provider's decision if the session's status allows it; else record it."""
    rule = DECISION_RULES[cmd.decision]
    details = {"decision": str(cmd.decision), "code": cmd.code,
               "verification_id": cmd.verification_id, "reason_code": cmd.reason_code}
    return _transition(db, cmd.provider, cmd.event_id, cmd.order_id, rule, details,
                       ignored_event=Event.DECISION_IGNORED, now=now, request_id=request_id)


def cancel_order(db: Database, cmd: StoreCancelled, *, now: datetime,
                 request_id: str | None = None) -> Result:
    """The store voided the order: close the session and its timers."""
    return _transition(db, cmd.provider, cmd.event_id, cmd.order_id, STORE_CANCEL, {},
                       ignored_event=Event.CANCEL_IGNORED, now=now, request_id=request_id)


def operator_action(db: Database, order_id: str, action: str, *, operator: str, now: datetime,
                    reason: str | None = None) -> Result:
    """An operator's manual `verify` or `cancel`: the same transitions, with the operator recorded."""
    rules = {"verify": DECISION_RULES[Decision.APPROVED], "cancel": STORE_CANCEL}
    details = {"manual": True, **({"reason": reason} if reason else {})}
    return _transition(db, "operator", f"{action}:{order_id}:{uuid.uuid4()}", order_id, rules[action],
                       details, ignored_event=Event.DECISION_IGNORED, now=now,
                       request_id=None, actor=f"operator:{operator}")


def _transition(db: Database, provider: str, event_id: str, order_id: str, rule: Transition,
                details: dict, *, ignored_event: Event, now: datetime,
                request_id: str | None, actor: str | None = None) -> Result:
    fx = Effects(order_id, now, request_id, actor=actor or provider)
    with db.transaction() as conn:
        if not store.claim_delivery(conn, provider, event_id, order_id):
            return Result("duplicate", order_id, "event already received")
        moved = store.move_status(conn, order_id, tuple(rule.from_statuses), rule.to_status,
                                  fresh_link=rule.fresh_link)
        if moved is None:
            status = store.session_status(conn, order_id)
            if status is None:
                return Result("ignored", order_id, "unknown order")
            fx.event(ignored_event, status=status, **details)
            store.write_effects(conn, fx.events, fx.outbox)
            return Result("ignored", order_id, f"session is {status}")
        if rule.to_status is Status.VERIFIED:
            details["seconds_to_verify"] = max(0, int((now - moved["ordered_at"]).total_seconds()))
        apply_effects(conn, fx, rule, details)
    return Result("accepted", order_id)


def apply_effects(conn, fx: Effects, rule: Transition, details: dict) -> None:
    """The side effects of a transition that applied, written in the caller's transaction."""
    fx.event(rule.event, **details)
    if rule.cancel_timers:
        for name in store.cancel_timers(conn, fx.order_id):
            fx.unschedule(name)
    if rule.refund:
        fx.refund(reason=str(rule.to_status))
    if rule.email:
        fx.email(rule.email)
    store.write_effects(conn, fx.events, fx.outbox)
