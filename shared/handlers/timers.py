"""Timer deliveries (reminder, deadline) and the sweeper's expiry of lost timers (an operator's
deadline extension is `transitions.extend_deadline`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from shared.db import countdowns, redrive, sessions
from shared.db.database import Database
from shared.domain.messages import TimerPayload
from shared.domain.model import DEADLINE, LINK_NOT_SENT, Email, Event, TimerKind
from shared.errors import TransientError
from shared.db.unit_of_work import UnitOfWork
from shared.handlers.result import Result, ResultStatus
from shared.handlers.transitions import apply_effects
from shared.stores.registry import NO_STORES, StoreRegistry

log = logging.getLogger(__name__)


def fire(db: Database, timer: TimerPayload, *, now: datetime, request_id: str | None = None,
         stores: StoreRegistry = NO_STORES) -> Result:
    """Re-check state and act (what each kind does: `FIRES`); a stale, duplicate or moved timer is a no-op."""
    return FIRES[timer.timer_kind](db, timer, now=now, request_id=request_id, stores=stores)


def send_reminder(db: Database, timer: TimerPayload, *, now: datetime, request_id: str | None,
                  stores: StoreRegistry = NO_STORES) -> Result:
    with UnitOfWork(db, now=now, request_id=request_id) as uow:
        if not countdowns.fire_reminder(uow.conn, timer.order_id, timer.reminder_index, timer.deadline_version):
            return Result(ResultStatus.IGNORED, timer.order_id,
                          "reminder already sent, cancelled, or session not pending or submitted")
        fx = uow.effects(timer.order_id, actor="timer")
        fx.event(Event.REMINDER_DUE, reminder_index=timer.reminder_index)
        fx.email(Email.REMINDER, timer.reminder_index)
        uow.commit()
    return Result(ResultStatus.ACCEPTED, timer.order_id)


def expire(db: Database, order_id: str, *, now: datetime, request_id: str | None = None,
           actor: str = "timer", stores: StoreRegistry = NO_STORES) -> Result:
    """pending → expired only when the deadline has passed and the link email was sent; refund and
    email in the same commit. A customer who was never sent the link is never refunded by a
    machine: the session goes to a person (`in_review`, reason `link_not_sent`)."""
    with UnitOfWork(db, now=now, request_id=request_id) as uow:
        fx = uow.effects(order_id, actor=actor)
        moved = sessions.move_status(uow.conn, order_id, DEADLINE.from_statuses, DEADLINE.to_status,
                                     due_by=now, link_sent=True)
        if moved is not None:
            countdowns.mark_deadline_fired(uow.conn, order_id)
            apply_effects(uow, fx, DEADLINE, {"deadline": moved["deadline"].isoformat()}, stores)
            uow.commit()
            return Result(ResultStatus.ACCEPTED, order_id)
        held = sessions.move_status(uow.conn, order_id, LINK_NOT_SENT.from_statuses, LINK_NOT_SENT.to_status,
                                    due_by=now, link_sent=False)
        if held is None:
            return Result(ResultStatus.IGNORED, order_id, "not pending, or the deadline is later")
        countdowns.mark_deadline_fired(uow.conn, order_id)
        apply_effects(uow, fx, LINK_NOT_SENT, {"deadline": held["deadline"].isoformat()}, stores)
        uow.commit()
    log.warning("deadline passed but the link email was never sent: session held for review",
                extra={"labels": {"order_id": order_id, "event": "session.in_review", "reason": "link_not_sent"}})
    return Result(ResultStatus.ACCEPTED, order_id, "link_not_sent")


def _deadline(db: Database, timer: TimerPayload, *, now: datetime, request_id: str | None,
              stores: StoreRegistry = NO_STORES) -> Result:
    return expire(db, timer.order_id, now=now, request_id=request_id, actor="timer", stores=stores)


# What a delivered timer of each kind does.
FIRES: dict[TimerKind, Callable[..., Result]] = {
    TimerKind.REMINDER: send_reminder,
    TimerKind.DEADLINE: _deadline,
}


@dataclass
class ExpiryReport:
    expired: int = 0
    failed: int = 0  # sessions that could not be expired this time (each logged); the rest went on


def expire_overdue(db: Database, *, now: datetime, grace, limit: int = 500,
                   stores: StoreRegistry = NO_STORES) -> ExpiryReport:
    """The sweeper's half: expire pending sessions whose deadline passed `grace` ago (lost timers).

    Each session on its own: one that fails (bad data, a lost connection) is counted and
    logged, and the others are still expired."""
    with db.read() as conn:
        overdue = redrive.overdue_sessions(conn, now - grace, limit)
    report = ExpiryReport()
    for order_id in overdue:
        try:
            report.expired += expire(db, order_id, now=now, actor="sweeper", stores=stores).accepted
        except TransientError:
            raise  # the database is away: the next sweep tries them all again
        except Exception:
            report.failed += 1
            log.exception("sweeper could not expire a session", extra={"labels": {"order_id": order_id}})
    return report
