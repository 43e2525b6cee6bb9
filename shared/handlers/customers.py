"""Verify once's operator actions (DESIGN.md 3b, 3): revoke a customer's verified-customer
record, and forget a customer by email (the right to erasure). Each is one unit of work whose
event-log and outbox rows commit with it, recorded with the operator; the caller relays."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.config import Settings
from shared.db import customer_store, operator_store, sessions
from shared.db.database import Database
from shared.db.unit_of_work import UnitOfWork
from shared.domain import customers, fields, reasons
from shared.domain.model import ERASED, OPEN, Event
from shared.domain.operator_commands import BadAction, ForgetCustomer, RevokeCustomer
from shared.errors import PermanentError
from shared.handlers.intake import apply_effects
from shared.stores.registry import NO_STORES, StoreRegistry
from shared.handlers.operator import actor
from shared.handlers.result import Result, ResultStatus


def revoke(db: Database, order_id: str, *, operator: str, reason: str, now: datetime,
           note: str | None = None) -> Result:
    """Remove the verified-customer record of this order's customer (the order that created it,
    or one that reused it): their next order asks again. Recorded on this order with the
    operator and the reason code (a `RevokeReason`; BadReason for any other); the note, if any,
    in the database only (`operator_notes`)."""
    note = reasons.clean_note(note)
    code = reasons.reason("revoke", reason, note)
    with UnitOfWork(db, now=now) as uow:
        originals = customer_store.revoke_for_session(uow.conn, order_id)
        if not originals:
            return Result(ResultStatus.IGNORED, order_id, "this order's customer has no verified-customer record")
        fx = uow.effects(order_id, actor=actor(operator))
        fx.explain(note)
        fx.event(Event.CUSTOMER_REVOKED, reason=code, original_session=originals[0], manual=True)
        uow.commit()
    return Result(ResultStatus.ACCEPTED, order_id)


def revoke_customer(db: Database, cmd: RevokeCustomer, *, now: datetime) -> Result:
    return revoke(db, cmd.order_id, operator=cmd.operator, reason=cmd.reason or "", note=cmd.note, now=now)


@dataclass(frozen=True)
class Erasure:
    sessions: int  # sessions whose email was erased
    cancelled: list[str]  # open sessions closed `cancelled`, reason `erased` (relay these)
    records: int  # verified-customer records removed


def forget(db: Database, settings: Settings, email: str, *, operator: str, now: datetime,
           stores: StoreRegistry = NO_STORES) -> Erasure:
    """Erase `email` from every session of any status, close its open sessions as `cancelled`
    (reason `erased`: the normal transition, so their store actions are written), remove every
    verified-customer record for it, delete the operators' notes on those sessions, and record
    that an erasure happened (operator, time, counts): never what was erased. Emails still queued for those sessions then go nowhere
    (the email function ignores an erased session)."""
    normalised = customers.normalise_email(email)
    pepper = settings.reuse.key_secret.encode() if settings.reuse.key_secret else None
    email_key = customers.email_key(pepper, normalised) if pepper else None
    with UnitOfWork(db, now=now) as uow:
        found = customer_store.sessions_of_email(uow.conn, normalised, email_key)
        cancelled = []
        for session in found:
            if session["status"] not in OPEN:
                continue
            moved = sessions.move_status(uow.conn, session["order_id"], tuple(ERASED.from_statuses), ERASED.to_status)
            if moved is not None:
                apply_effects(uow, uow.effects(session["order_id"], actor=actor(operator)), ERASED, {"manual": True},
                              stores)
                cancelled.append(session["order_id"])
        erased = customer_store.erase_sessions(uow.conn, [s["order_id"] for s in found])
        operator_store.erase_notes(uow.conn, [s["order_id"] for s in found])  # a note may name them
        records = customer_store.forget_records(uow.conn, email_key) if email_key else 0
        uow.effects(None, actor=actor(operator)).note(  # type: ignore[arg-type]  (names no order)
            Event.CUSTOMER_ERASED, sessions=erased, cancelled=len(cancelled), records=records)
        uow.commit()
    return Erasure(erased, cancelled, records)


def forget_customer(db: Database, settings: Settings, cmd: ForgetCustomer, *, now: datetime,
                    stores: StoreRegistry = NO_STORES) -> Erasure:
    """`forget` for an email as typed (BadAction naming the field when it is none)."""
    try:
        address = fields.email(cmd.email.strip(), "email")
    except PermanentError:
        raise BadAction("forget needs the customer's email address", field="email") from None
    return forget(db, settings, address, operator=cmd.operator, now=now, stores=stores)
