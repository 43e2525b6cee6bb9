"""The transitions, in one module (issue 22 item 2): how a session moves (`transition`) and
what each move writes with it (`apply_effects`), for webhooks, timers and the sweeper alike,
and every operator action, from the console and the CLI through `shared.bootstrap.handle`
(`shared.domain.operator_commands`; `shared.handlers.registry` maps each command here).

An operator's verify and cancel are the webhooks' transitions with the operator recorded; the
other actions (extend the deadline, resend the link, close a manual refund, retry a store action
or a parked outbox row, revoke or forget a customer) are each a conditional update whose
event-log and outbox rows commit with it, recorded with the operator as actor (`actor`: the one
spelling of an operator); `bootstrap.handle` relays what they committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.config import TIMER_HORIZON, Settings, parse_duration
from shared.db import claims, countdowns, customer_store, effect_runs, operator_store, sessions
from shared.db.database import Database
from shared.db.unit_of_work import UnitOfWork
from shared.domain import customers, fields, keys, reasons
from shared.domain.effects import Effects
from shared.domain.model import (
    DECISION_RULES,
    ERASED,
    OPEN,
    STORE_CANCEL,
    AgeCheck,
    Decision,
    Email,
    Event,
    SessionBinding,
    Status,
    TimerKind,
    Transition,
    timers_for,
)
from shared.domain.operator_commands import (
    BadAction,
    CancelOrder,
    ExtendDeadline,
    ForgetCustomer,
    RecordRefund,
    Refused,
    ResendLink,
    RetryEffect,
    RetryParked,
    RetryStoreAction,
    RevokeCustomer,
    VerifyOrder,
)
from shared.effects import registry as effect_registry
from shared.errors import ConfigError, PermanentError
from shared.handlers.refunds import REFUND_EVENTS
from shared.handlers.result import Result, ResultStatus
from shared.stores.registry import NO_STORES, StoreRegistry


# ---- the transition: webhooks, timers, the sweeper, operators ------------------------------


def session_of(uow: UnitOfWork, provider: str, vendor_data: str, session_id: str) -> str:
    """The session key a provider delivery is for. `vendorData` is the key, except on a provider
    session opened before keys had a source (schema v8), whose vendorData is a Lightspeed sale's
    bare id: the provider session we recorded for it tells which session it is."""
    owner = sessions.owner_of_provider_session(uow.conn, keys.candidate_keys(vendor_data), provider, session_id)
    return owner or vendor_data


def claim_and_bind(uow: UnitOfWork, fx: Effects, provider: str, event_id: str, order_id: str, session_id: str,
                    ignored_event: Event, details: dict) -> Result | None:
    """Claim the delivery and check the provider session is this order's current one.

    A Result when the input stops here (duplicate, unknown order, unknown or superseded
    session: recorded and committed, nothing changed); None to go on."""
    if not claims.claim_delivery(uow.conn, provider, event_id, order_id):
        uow.commit()  # the repeat is counted
        return Result(ResultStatus.DUPLICATE, order_id, "event already received")
    status = sessions.session_status(uow.conn, order_id)
    if status is None:
        uow.commit()
        return Result(ResultStatus.IGNORED, order_id, "unknown order")
    binding = SessionBinding(sessions.provider_session_state(uow.conn, order_id, provider, session_id))
    if binding is SessionBinding.CURRENT:
        return None
    reason = f"{binding}_session"
    fx.event(ignored_event, status=status, **{**details, "reason": reason})
    uow.commit()
    return Result(ResultStatus.IGNORED, order_id, reason)


def transition(db: Database, provider: str, event_id: str, order_id: str, rule: Transition,
                details: dict, *, ignored_event: Event, now: datetime,
                request_id: str | None, actor: str | None = None, session_id: str | None = None,
                decided_at: datetime | None = None, record_unknown: bool = False,
                stores: StoreRegistry = NO_STORES, after: AfterTransition | None = None,
                note: str | None = None) -> Result:
    with UnitOfWork(db, now=now, request_id=request_id) as uow:
        if session_id is not None:
            order_id = session_of(uow, provider, order_id, session_id)
        fx = uow.effects(order_id, actor=actor or provider)
        fx.explain(note)  # an operator's: on the event that says what the action did (or that it was ignored)
        if session_id is not None:
            stopped = claim_and_bind(uow, fx, provider, event_id, order_id, session_id,
                                      ignored_event, details)
            if stopped:
                return stopped
        elif not claims.claim_delivery(uow.conn, provider, event_id, order_id):
            uow.commit()  # the repeat is counted
            return Result(ResultStatus.DUPLICATE, order_id, "event already received")
        if record_unknown:  # a cancellation: serialised with the paid delivery it may race
            sessions.lock_order(uow.conn, order_id)
        moved = sessions.move_status(uow.conn, order_id, tuple(rule.from_statuses), rule.to_status,
                                     fresh_link=rule.fresh_link, decided_at=decided_at)
        if moved is None:
            status = sessions.session_status(uow.conn, order_id)
            if status is not None or record_unknown:
                fx.event(ignored_event, status=status or "unknown", **details)
            uow.commit()
            return Result(ResultStatus.IGNORED, order_id,
                          f"session is {status}" if status else "unknown order")
        if rule.to_status is Status.VERIFIED:
            details["seconds_to_verify"] = max(0, int((now - moved["ordered_at"]).total_seconds()))
        apply_effects(uow, fx, rule, details, stores)
        if after is not None:
            after(uow, fx)
        uow.commit()
    return Result(ResultStatus.ACCEPTED, order_id)


def apply_effects(uow: UnitOfWork, fx: Effects, rule: Transition, details: dict,
                  stores: StoreRegistry = NO_STORES) -> None:
    """Collect the side effects of a transition that applied (the unit of work writes them).

    Its store action goes to each connector of the order's source that implements it, and to
    the outcome webhook (`stores.connectors_for`); where the store's own connector cancels and
    refunds, the refund is its (recorded when the store answers), not a request to REFUND_BACKEND.
    A request to REFUND_BACKEND is recorded on the session (`refund_requested_at`) by every rule
    that owes a refund, whatever status it closes in: that, not the status, is what the sweep's
    re-drive of a lost request reads. Each registered side effect the rule names (`effects=`) gets
    its claim row and message (LookupError for a name `shared.effects.registry` does not hold)."""
    if rule.reason:
        details = {"reason": rule.reason, **details}
    fx.event(rule.event, **details)
    if rule.cancel_timers:
        for name in countdowns.cancel_timers(uow.conn, fx.order_id):
            fx.unschedule(name)
    source = keys.ref(fx.order_id).source
    if rule.refund and stores.refunds(source):
        fx.event(Event.REFUND_REQUESTED, reason=rule.refund_reason, by=source)
    elif rule.refund:  # owed (ERASED too): recorded on the session, so the sweep re-drives a lost request
        claims.record_refund_request(uow.conn, fx.order_id)
        fx.refund(reason=rule.refund_reason)
    action = rule.store_action
    if action:
        reason = rule.refund_reason if rule.refund else rule.reason
        fx.store_action(action, stores.connectors_for(source, action), reason=reason)
    if rule.email:
        fx.email(rule.email)
    for effect in effect_registry.require(rule.effects):
        fx.effect_run(effect, reason=rule.reason or str(rule.to_status))


AfterTransition = Callable[[UnitOfWork, Effects], None]


def remember(reverify_after: timedelta | None, now: datetime) -> AfterTransition | None:
    """A session verified with the age check passed records its customer key (verify once on)."""
    if reverify_after is None:
        return None

    def record(uow: UnitOfWork, fx: Effects) -> None:
        customer_store.remember_customer(uow.conn, fx.order_id, now, now + reverify_after)
    return record


def revoke_underage(uow: UnitOfWork, fx: Effects) -> None:
    """An underage decline removes the record of the same customer key, recorded on this session."""
    for original in customer_store.revoke_for_session(uow.conn, fx.order_id):
        fx.event(Event.CUSTOMER_REVOKED, reason="underage", original_session=original)


# ---- operator actions -------------------------------------------------------------------


CLI_ACTOR = "cli:"  # what the operator CLI records: its database session user, then the --by it was given


def operator_actor(operator: str) -> str:
    """The event actor of an operator's action: `operator:<IAP-verified email>` from the console,
    the CLI's own `cli:<database user> (<--by>)` as it is (a self-declared name, not verified)."""
    return operator if operator.startswith(CLI_ACTOR) else f"operator:{operator}"


def operator_action(db: Database, order_id: str, action: str, *, operator: str, now: datetime,
                    reason: str | None = None, note: str | None = None, age_checked: bool = False,
                    reverify_after: timedelta | None = None, stores: StoreRegistry = NO_STORES) -> Result:
    """An operator's manual `verify` or `cancel`: the same transitions, with the operator recorded.
    A verify records the customer for verify once only when the operator says they checked the
    age (`age_checked`, recorded as `age_check: passed`) and verify once is on (`reverify_after`).
    `reason` is one of the action's codes (`shared.domain.reasons`; BadReason for any other): the
    event carries it; the optional note is kept in `operator_notes` only, never published."""
    rules = {"verify": DECISION_RULES[Decision.APPROVED], "cancel": STORE_CANCEL}
    note = reasons.clean_note(note)
    code = reasons.reason(action, reason, note)
    details = {"manual": True, "reason": code}
    after = None
    if action == "verify" and age_checked:
        details["age_check"] = str(AgeCheck.PASSED)
        after = remember(reverify_after, now)
    return transition(db, "operator", f"{action}:{order_id}:{uuid.uuid4()}", order_id, rules[action],
                       details, ignored_event=Event.DECISION_IGNORED, now=now,
                       request_id=None, actor=operator_actor(operator), stores=stores, after=after, note=note)


RESEND_GUARD = timedelta(minutes=1)  # a resend within this of the last is a repeat, not a new link


def verify(db: Database, settings: Settings, cmd: VerifyOrder, *, now: datetime,
           stores: StoreRegistry = NO_STORES) -> Result:
    """The approval transition, by hand; with `age_checked`, the customer is remembered for
    verify once (when it is on)."""
    return operator_action(db, cmd.order_id, "verify", operator=cmd.operator, now=now, reason=cmd.reason,
                           note=cmd.note, age_checked=cmd.age_checked,
                           reverify_after=settings.reuse.reverify_after, stores=stores)


def cancel(db: Database, cmd: CancelOrder, *, now: datetime, stores: StoreRegistry = NO_STORES) -> Result:
    """The store cancellation's transition, by hand."""
    return operator_action(db, cmd.order_id, "cancel", operator=cmd.operator, now=now, reason=cmd.reason,
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
    return extend_deadline(db, settings, cmd.order_id, deadline, now=now, actor=operator_actor(cmd.operator))


def resend(db: Database, cmd: ResendLink, *, now: datetime) -> Result:
    return resend_link(db, cmd.order_id, operator=cmd.operator, now=now)


def record_refund(db: Database, cmd: RecordRefund, *, now: datetime) -> Result:
    return close_refund(db, cmd.order_id, cmd.outcome, operator=cmd.operator, now=now, reason=cmd.reason,
                        note=cmd.note)


def retry_store(db: Database, cmd: RetryStoreAction, *, now: datetime) -> Result:
    return retry_store_action(db, cmd.order_id, cmd.store_action, operator=cmd.operator, now=now)


def retry_effect(db: Database, cmd: RetryEffect, *, now: datetime) -> Result:
    return retry_effect_run(db, cmd.order_id, cmd.effect, operator=cmd.operator, now=now)


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
        fx = uow.effects(order_id, actor=operator_actor(operator))
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
        fx = uow.effects(order_id, actor=operator_actor(operator))
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
        fx = uow.effects(order_id, actor=operator_actor(operator))
        fx.event(Event.STORE_ACTION_RETRIED, action=action, connector=connector)
        fx.store_action_message(action, connector)
        uow.commit()
    return Result(ResultStatus.ACCEPTED, order_id)


def retry_effect_run(db: Database, order_id: str, effect: str | None, *, operator: str, now: datetime) -> Result:
    """A registered side effect that failed for good is asked again: due with a fresh attempt
    budget, its message in the same transaction, `effect.retried` recorded with the operator (and
    the failure it retries). Refused (409) for a run that did not fail; 400 for an effect no
    longer registered (nothing would perform it)."""
    name = (effect or "").strip()
    if not name:
        raise BadAction("which side effect? (its name, as the order page lists it)", field="effect")
    if effect_registry.effect(name) is None:
        raise BadAction(f"side effect {name!r} is not registered: nothing would perform it", field="effect")
    with UnitOfWork(db, now=now) as uow:
        failed = effect_runs.retry_effect_run(uow.conn, order_id, name)
        if failed is None:
            state = effect_runs.effect_state(uow.conn, order_id, name)
            raise Refused(f"side effect {name} was never asked for this order" if state is None
                          else f"side effect {name} is {state}, not failed: nothing to retry")
        fx = uow.effects(order_id, actor=operator_actor(operator))
        fx.event(Event.EFFECT_RETRIED, effect=name, attempts=failed["attempts"], code=failed["error_code"])
        fx.effect_run_message(name)
        uow.commit()
    return Result(ResultStatus.ACCEPTED, order_id)


def retry_parked(db: Database, outbox_id: int | None, *, operator: str, now: datetime) -> list[str]:
    """Make parked rows due again (one, or every one when `outbox_id` is None); their order ids."""
    with UnitOfWork(db, now=now) as uow:
        rows = operator_store.unpark_outbox(uow.conn, outbox_id)
        for row_id, order_id in rows:
            uow.effects(order_id, actor=operator_actor(operator)).event(Event.OUTBOX_RETRIED, outbox_id=row_id)
        uow.commit()
    return sorted({order_id for _, order_id in rows if order_id})


def extend_deadline(db: Database, settings: Settings, order_id: str, deadline: datetime, *,
                    now: datetime, actor: str) -> Result:
    """Operator action: a later deadline, a new deadline timer; the old timer becomes a no-op."""
    with UnitOfWork(db, now=now) as uow:
        row = sessions.extend_deadline(uow.conn, order_id, deadline)
        if row is None:
            return Result(ResultStatus.IGNORED, order_id, "session closed, or the deadline is not later")
        fx = uow.effects(order_id, actor=actor)
        for name in countdowns.cancel_timers(uow.conn, order_id, kind=TimerKind.DEADLINE):
            fx.unschedule(name)
        fx.schedule(timers_for(now, deadline, (), version=row["deadline_version"])[-1])
        fx.event(Event.DEADLINE_EXTENDED, deadline=deadline.isoformat())
        uow.commit()
    if row["status"] == Status.IN_REVIEW:  # staff would otherwise see nothing change
        return Result(ResultStatus.ACCEPTED, order_id, "in review, the session does not expire; "
                                                       "the new deadline counts if it goes back to pending")
    return Result(ResultStatus.ACCEPTED, order_id)


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
        fx = uow.effects(order_id, actor=operator_actor(operator))
        fx.explain(note)
        fx.event(Event.CUSTOMER_REVOKED, reason=code, original_session=originals[0], manual=True)
        uow.commit()
    return Result(ResultStatus.ACCEPTED, order_id)


def revoke_customer(db: Database, cmd: RevokeCustomer, *, now: datetime) -> Result:
    return revoke(db, cmd.order_id, operator=cmd.operator, reason=cmd.reason or "", note=cmd.note, now=now)


@dataclass(frozen=True)
class Erasure:
    sessions: int  # sessions whose email was erased
    cancelled: list[str]  # open sessions closed `cancelled`, reason `erased` (`bootstrap.handle` relays them)
    records: int  # verified-customer records removed


def forget(db: Database, settings: Settings, email: str, *, operator: str, now: datetime,
           stores: StoreRegistry = NO_STORES) -> Erasure:
    """Erase `email` from every session of any status, close its open sessions as `cancelled`
    (reason `erased`: the normal transition, so their store actions are written), remove every
    verified-customer record for it, delete the operators' notes on those sessions, and record
    that an erasure happened (operator, time, counts): never what was erased. Emails still queued
    for those sessions then go nowhere (the email function ignores an erased session)."""
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
                fx = uow.effects(session["order_id"], actor=operator_actor(operator))
                apply_effects(uow, fx, ERASED, {"manual": True}, stores)
                cancelled.append(session["order_id"])
        erased = customer_store.erase_sessions(uow.conn, [s["order_id"] for s in found])
        operator_store.erase_notes(uow.conn, [s["order_id"] for s in found])  # a note may name them
        records = customer_store.forget_records(uow.conn, email_key) if email_key else 0
        uow.effects(None, actor=operator_actor(operator)).note(  # type: ignore[arg-type]  (names no order)
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
