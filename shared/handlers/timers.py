"""Timer deliveries (reminder, deadline), the sweeper's expiry of lost timers, deadline extension."""

from __future__ import annotations

from datetime import datetime

from shared.config import Settings
from shared.db import store
from shared.db.database import Database
from shared.domain.messages import TimerPayload
from shared.domain.model import DEADLINE, LINK_NOT_SENT, Email, Event, TimerKind, timers_for
from shared.handlers.effects import Effects
from shared.handlers.intake import Result, apply_effects


def fire(db: Database, timer: TimerPayload, *, now: datetime, request_id: str | None = None) -> Result:
    """Re-check state and act; a stale, duplicate or moved timer is a no-op."""
    return _FIRE[timer.timer_kind](db, timer, now=now, request_id=request_id)


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
    """pending → expired only when the deadline has passed, refund and email in the same commit;
    a session whose link email was never sent goes to a person instead (in_review, link_not_sent)."""
    fx = Effects(order_id, now, request_id, actor=actor)
    with db.transaction() as conn:
        rule = DEADLINE if store.link_sent(conn, order_id) else LINK_NOT_SENT
        moved = store.move_status(conn, order_id, rule.from_statuses, rule.to_status, due_by=now)
        if moved is None:
            return Result("ignored", order_id, "not pending, or the deadline is later")
        store.mark_deadline_fired(conn, order_id)
        apply_effects(conn, fx, rule, {"deadline": moved["deadline"].isoformat()})
    return Result("accepted", order_id)


def _deadline(db: Database, timer: TimerPayload, *, now: datetime, request_id: str | None) -> Result:
    return expire(db, timer.order_id, now=now, request_id=request_id, actor="timer")


_FIRE = {TimerKind.REMINDER: send_reminder, TimerKind.DEADLINE: _deadline}


def expire_overdue(db: Database, *, now: datetime, grace, limit: int = 500) -> int:
    """The sweeper's half: expire pending sessions whose deadline passed `grace` ago (lost timers)."""
    with db.read() as conn:
        overdue = store.overdue_sessions(conn, now - grace, limit)
    return sum(expire(db, order_id, now=now, actor="sweeper").status == "accepted" for order_id in overdue)


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
