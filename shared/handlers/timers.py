"""Timer deliveries (reminder, deadline), the sweeper's expiry of lost timers, deadline extension."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from shared.config import Settings
from shared.db import store
from shared.db.database import Database
from shared.domain.messages import TimerPayload
from shared.domain.model import DEADLINE, LINK_NOT_SENT, Email, Event, timers_for
from shared.errors import TransientError
from shared.handlers.effects import Effects
from shared.handlers.intake import Result, apply_effects

log = logging.getLogger(__name__)


def fire(db: Database, timer: TimerPayload, *, now: datetime, request_id: str | None = None) -> Result:
    """Re-check state and act; a stale, duplicate or moved timer is a no-op."""
    if timer.kind == "reminder":
        return send_reminder(db, timer, now=now, request_id=request_id)
    return expire(db, timer.order_id, now=now, request_id=request_id, actor="timer")


def send_reminder(db: Database, timer: TimerPayload, *, now: datetime, request_id: str | None) -> Result:
    fx = Effects(timer.order_id, now, request_id, actor="timer")
    with db.transaction() as conn:
        if not store.fire_reminder(conn, timer.order_id, timer.reminder_index, timer.deadline_version):
            return Result("ignored", timer.order_id, "reminder already sent, cancelled or session not pending")
        fx.event(Event.REMINDER_DUE, reminder_index=timer.reminder_index)
        fx.email(Email.REMINDER, timer.reminder_index)
        store.write_effects(conn, fx.events, fx.outbox)
    return Result("accepted", timer.order_id)


def expire(db: Database, order_id: str, *, now: datetime, request_id: str | None = None,
           actor: str = "timer") -> Result:
    """pending → expired only when the deadline has passed and the link email was sent; refund and
    email in the same commit. A customer who was never sent the link is never refunded by a
    machine: the session goes to a person (`in_review`, reason `link_not_sent`)."""
    fx = Effects(order_id, now, request_id, actor=actor)
    with db.transaction() as conn:
        moved = store.move_status(conn, order_id, DEADLINE.from_statuses, DEADLINE.to_status,
                                  due_by=now, link_sent=True)
        if moved is not None:
            store.mark_deadline_fired(conn, order_id)
            apply_effects(conn, fx, DEADLINE, {"deadline": moved["deadline"].isoformat()})
            return Result("accepted", order_id)
        held = store.move_status(conn, order_id, LINK_NOT_SENT.from_statuses, LINK_NOT_SENT.to_status,
                                 due_by=now, link_sent=False)
        if held is None:
            return Result("ignored", order_id, "not pending, or the deadline is later")
        store.mark_deadline_fired(conn, order_id)
        apply_effects(conn, fx, LINK_NOT_SENT, {"reason": "link_not_sent", "deadline": held["deadline"].isoformat()})
    log.warning("deadline passed but the link email was never sent: session held for review",
                extra={"labels": {"order_id": order_id}})
    return Result("accepted", order_id, "link_not_sent")


@dataclass
class ExpiryReport:
    expired: int = 0
    failed: int = 0  # sessions that could not be expired this time (each logged); the rest went on


def expire_overdue(db: Database, *, now: datetime, grace, limit: int = 500) -> ExpiryReport:
    """The sweeper's half: expire pending sessions whose deadline passed `grace` ago (lost timers).

    Each session on its own: one that fails (bad data, a lost connection) is counted and
    logged, and the others are still expired."""
    with db.read() as conn:
        overdue = store.overdue_sessions(conn, now - grace, limit)
    report = ExpiryReport()
    for order_id in overdue:
        try:
            report.expired += expire(db, order_id, now=now, actor="sweeper").status == "accepted"
        except TransientError:
            raise  # the database is away: the next sweep tries them all again
        except Exception:
            report.failed += 1
            log.exception("sweeper could not expire a session", extra={"labels": {"order_id": order_id}})
    return report


def extend_deadline(db: Database, settings: Settings, order_id: str, deadline: datetime, *,
                    now: datetime, actor: str) -> Result:
    """Operator action: a later deadline, a new deadline timer; the old timer becomes a no-op."""
    fx = Effects(order_id, now, actor=actor)
    with db.transaction() as conn:
        row = store.extend_deadline(conn, order_id, deadline)
        if row is None:
            return Result("ignored", order_id, "session closed, or the deadline is not later")
        for name in store.cancel_timers(conn, order_id, kind="deadline"):
            fx.unschedule(name)
        new_deadline = timers_for(now, deadline, (), version=row["deadline_version"])[-1]
        store.add_timers(conn, [{
            "order_id": order_id, "kind": new_deadline.kind, "reminder_index": 0,
            "deadline_version": new_deadline.deadline_version, "fire_at": deadline.isoformat(),
            "task_name": new_deadline.task_name(order_id),
        }])
        fx.schedule(new_deadline)
        fx.event(Event.DEADLINE_EXTENDED, deadline=deadline.isoformat())
        store.write_effects(conn, fx.events, fx.outbox)
    return Result("accepted", order_id)
