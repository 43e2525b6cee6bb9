"""Operator actions that webhooks and timers never take: resend the link, close a manual refund,
retry a parked outbox row. Each is a conditional update whose event-log and outbox rows commit
with it, recorded with the operator as actor; the caller relays afterwards.

Verify, cancel and extend are the shared transitions (`intake.operator_action`,
`timers.extend_deadline`); `actor` gives the one spelling of an operator for all of them.
"""

from __future__ import annotations

from datetime import datetime

from shared.db import operator_store, store
from shared.db.database import Database
from shared.domain.model import Email, Event
from shared.handlers.effects import Effects
from shared.handlers.intake import Result

REFUND_EVENTS = {"refunded": Event.REFUND_COMPLETED, "failed": Event.REFUND_FAILED}


def actor(operator: str) -> str:
    return f"operator:{operator}"


def resend_link(db: Database, order_id: str, *, operator: str, now: datetime) -> Result:
    """An open session gets a fresh provider session and a new link email."""
    fx = Effects(order_id, now, actor=actor(operator))
    with db.transaction() as conn:
        if not operator_store.clear_provider_session(conn, order_id):
            return Result("ignored", order_id, "unknown order, or the session is closed")
        index = operator_store.next_link_index(conn, order_id)
        fx.event(Event.LINK_RESENT, link_index=index)
        fx.email(Email.LINK, index)
        store.write_effects(conn, fx.events, fx.outbox)
    return Result("accepted", order_id)


def close_refund(db: Database, order_id: str, outcome: str, *, operator: str, now: datetime,
                 note: str | None = None) -> Result:
    """A refund done by hand: `refunded` (from manual or failed) or `failed` (from manual)."""
    fx = Effects(order_id, now, actor=actor(operator))
    with db.transaction() as conn:
        before = operator_store.close_refund(conn, order_id, outcome)
        if before is None:
            return Result("ignored", order_id, "no manual refund open for this order")
        fx.event(REFUND_EVENTS[outcome], manual=True, previous=before, **({"note": note} if note else {}))
        store.write_effects(conn, fx.events, fx.outbox)
    return Result("accepted", order_id)


def retry_parked(db: Database, outbox_id: int | None, *, operator: str, now: datetime) -> list[str]:
    """Make parked rows due again (one, or every one when `outbox_id` is None); their order ids."""
    with db.transaction() as conn:
        rows = operator_store.unpark_outbox(conn, outbox_id)
        for row_id, order_id in rows:
            fx = Effects(order_id, now, actor=actor(operator))
            fx.event(Event.OUTBOX_RETRIED, outbox_id=row_id)
            store.write_effects(conn, fx.events, fx.outbox)
    return sorted({order_id for _, order_id in rows if order_id})
