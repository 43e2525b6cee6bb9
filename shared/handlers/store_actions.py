"""The `order-actions` subscriber's store half: one store action for one order through one
connector, once (DESIGN.md 4b).

The transition that asks for the action wrote its claim row (`store_actions`, due) and its
message in one transaction. Here the claim is leased before the call (`store_actions.claim_store_action`:
a release or cancel waits for the order's hold, and never runs after the opposite one), the
connector is called with no transaction open, and its outcome is recorded with its event:

- done: `store.held`, `store.released`, `store.cancelled` with `refund.completed` (the store
  refunded), `store.flagged`; `store.notified` for the outcome webhook (it tells, it does not act);
- `StoreRefused`: `store.action_failed` with the store's code only; the order needs attention
  (a refused cancel leaves the refund to a person: `refund.manual`);
- `StoreUnavailable`: the claim stays leased for the store's Retry-After (or our backoff) and the
  message is retried; the sweeper re-drives a claim whose lease passed and a message lost.

A crash between the claim and the record leaves the lease to pass: the action is called again,
and the connector reads the store's state first (`ActionResult.already`), so one outcome is
recorded and nothing is done twice by our doing.
"""

from __future__ import annotations

import logging
from datetime import datetime

from shared.config import Settings
from shared.db import claims, store_actions
from shared.db.database import Database
from shared.db.unit_of_work import UnitOfWork
from shared.domain.messages import StoreAction
from shared.domain.model import Event
from shared.errors import TransientError
from shared.handlers.result import Result, ResultStatus
from shared.stores.base import ActionResult, StoreActionKind, StoreOrder, StoreRefused, StoreUnavailable
from shared.stores.registry import StoreRegistry

log = logging.getLogger(__name__)

# What a connector acting on the store's order records when the action is done.
DONE_EVENTS = {
    StoreActionKind.HOLD: Event.STORE_HELD,
    StoreActionKind.RELEASE: Event.STORE_RELEASED,
    StoreActionKind.CANCEL_AND_REFUND: Event.STORE_CANCELLED,
    StoreActionKind.FLAG_FOR_REVIEW: Event.STORE_FLAGGED,
}
MAX_BACKOFF_SECONDS = 3600.0


def backoff_seconds(attempts: int) -> float:
    """10 s doubling to an hour: a store that is down is asked again for as long as it takes."""
    return min(10.0 * 2 ** min(max(attempts - 1, 0), 12), MAX_BACKOFF_SECONDS)


def perform(db: Database, settings: Settings, stores: StoreRegistry, msg: StoreAction, *,
            now: datetime) -> Result:
    kind = StoreActionKind(msg.action)
    connector = stores.connector(msg.connector)
    if connector is None or kind not in connector.actions:
        store_actions.skip_store_action(db, msg.order_id, msg.action, msg.connector, "not_configured")
        return Result(ResultStatus.IGNORED, msg.order_id, f"connector {msg.connector} does not {kind}")
    claim = store_actions.claim_store_action(db, msg.order_id, msg.action, msg.connector,
                                             settings.lifecycle.email_lease.total_seconds())
    outcome = claim["outcome"]
    if outcome == "busy":
        raise TransientError("this store action is in flight, or waits for the order's hold", component="store")
    if outcome != "claimed":
        status = ResultStatus.DUPLICATE if outcome in ("done", "failed", "skipped") else ResultStatus.IGNORED
        return Result(status, msg.order_id, f"store action {kind}: {outcome}")
    order = StoreOrder(key=msg.order_id, source=claim["source"] or "",
                       store_ref=claim["store_ref"] or _own_id(msg.order_id), reason=claim["reason"],
                       state=claim["state"], occurred_at=claim["requested_at"])
    attempts = claim["attempts"]
    try:
        result = connector.perform(kind, order)
    except StoreRefused as exc:
        return _record_refusal(db, stores, msg, kind, exc.store_code, now=now)
    except StoreUnavailable as exc:
        wait = max(exc.retry_after or 0.0, backoff_seconds(attempts))
        store_actions.postpone_store_action(db, msg.order_id, msg.action, msg.connector, attempts, wait)
        raise
    except BaseException:
        store_actions.postpone_store_action(db, msg.order_id, msg.action, msg.connector, attempts, 0)
        raise
    return _record_done(db, stores, msg, kind, result, reason=claim["reason"], now=now)


def _own_id(key: str) -> str:
    from shared.domain import keys

    return keys.ref(key).order_id


def _record_done(db: Database, stores: StoreRegistry, msg: StoreAction, kind: StoreActionKind,
                 result: ActionResult, *, reason: str | None, now: datetime) -> Result:
    with UnitOfWork(db, now=now) as uow:
        if not store_actions.finish_store_action(uow.conn, msg.order_id, msg.action, msg.connector,
                                                 dict(result.detail)):
            return Result(ResultStatus.DUPLICATE, msg.order_id, f"store action {kind} recorded by another attempt")
        fx = uow.effects(msg.order_id, actor=f"store:{msg.connector}")
        if not stores.acts(msg.connector):
            fx.event(Event.STORE_NOTIFIED, action=str(kind), connector=msg.connector, already=result.already,
                     **({"type": result.detail["type"]} if "type" in result.detail else {}))
        else:
            fx.event(DONE_EVENTS[kind], action=str(kind), connector=msg.connector, already=result.already)
            if kind is StoreActionKind.CANCEL_AND_REFUND and claims.close_store_refund(uow.conn, msg.order_id,
                                                                                       "refunded"):
                fx.event(Event.REFUND_COMPLETED, reason=reason or "", by=msg.connector)
        uow.commit()
    return Result(ResultStatus.ACCEPTED, msg.order_id, f"{kind} done")


def _record_refusal(db: Database, stores: StoreRegistry, msg: StoreAction, kind: StoreActionKind, code: str, *,
                    now: datetime) -> Result:
    with UnitOfWork(db, now=now) as uow:
        if not store_actions.fail_store_action(uow.conn, msg.order_id, msg.action, msg.connector, code):
            return Result(ResultStatus.DUPLICATE, msg.order_id, f"store action {kind} recorded by another attempt")
        fx = uow.effects(msg.order_id, actor=f"store:{msg.connector}")
        fx.event(Event.STORE_ACTION_FAILED, action=str(kind), connector=msg.connector, code=code)
        if (kind is StoreActionKind.CANCEL_AND_REFUND and stores.acts(msg.connector)
                and claims.close_store_refund(uow.conn, msg.order_id, "manual")):
            fx.event(Event.REFUND_MANUAL, reason="store_refused", by=msg.connector)
        uow.commit()
    # The line the `store_action_failures` metric counts (infra/monitoring): the code only, never the store's text.
    log.warning("the store refused an action: %s %s", kind, code,
                extra={"labels": {"event": "store.action_failed", "store": msg.connector, "connector": msg.connector,
                                  "action": str(kind), "code": code, "order_id": msg.order_id}})
    return Result(ResultStatus.ACCEPTED, msg.order_id, f"{kind} refused: {code}")
