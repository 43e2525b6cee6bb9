"""The `order-actions` subscriber's side-effect half: one registered side effect (`shared.effects`)
for one order, performed once.

The transition that asks for it wrote its claim row (`effect_runs`, due) and its message in one
transaction. Here the row is leased before `perform` (`effect_runs.claim_effect_run`: a duplicate
delivery finds it leased or finished and performs nothing), `perform` runs with no transaction
open, and its outcome is recorded by the attempt holding the lease, with its event:

- done: `effect.done`;
- `EffectFailed`, or a failure when the effect's attempts are used up: `effect.failed` with its
  code only (the error's class for an unexpected one, never its text), counted by the health
  numbers;
- any other failure: the lease is kept for the effect's backoff and the message retried (the
  sweeper re-drives the run once the lease passes, and a run whose attempt died or whose message
  was lost).
"""

from __future__ import annotations

import logging
from datetime import datetime

from shared.config import Settings
from shared.db import effect_runs
from shared.db.database import Database
from shared.db.unit_of_work import UnitOfWork
from shared.domain.messages import EffectRun
from shared.domain.model import Event
from shared.effects import Effect, EffectContext, EffectFailed, EffectOrder, registry
from shared.errors import TransientError
from shared.handlers.result import Result, ResultStatus

log = logging.getLogger(__name__)


def perform(db: Database, settings: Settings, msg: EffectRun, *, now: datetime) -> Result:
    effect = registry.effect(msg.effect)
    if effect is None:  # no longer registered (or never): nothing performs it, nothing re-drives it
        return Result(ResultStatus.IGNORED, msg.order_id, f"side effect {msg.effect} is not registered")
    claim = effect_runs.claim_effect_run(db, msg.order_id, effect.name, settings.lifecycle.email_lease.total_seconds())
    outcome = claim["outcome"]
    if outcome == "busy":
        raise TransientError("this side effect is in flight, or waits for its retry", component="effect")
    if outcome != "claimed":
        status = ResultStatus.DUPLICATE if outcome in ("done", "failed") else ResultStatus.IGNORED
        return Result(status, msg.order_id, f"side effect {effect.name}: {outcome}")
    attempts = claim["attempts"]
    order = EffectOrder(key=msg.order_id, source=claim["source"], store_ref=claim["store_ref"],
                        status=claim["status"], reason=claim["reason"])
    context = EffectContext(settings=settings, now=now, attempt=attempts,
                            idempotency_key=f"effect-{effect.name}-{msg.order_id}")
    try:
        effect.perform(context, order)
    except EffectFailed as exc:
        return _record_failed(db, effect, msg, attempts, exc.code, now=now)
    except Exception as exc:  # noqa: BLE001 - the effect's own failure: retried, then recorded by class
        code = type(exc).__name__
        if attempts - claim["retried_from"] >= effect.max_attempts:
            return _record_failed(db, effect, msg, attempts, code, now=now)
        effect_runs.postpone_effect_run(db, msg.order_id, effect.name, attempts,
                                        effect.retry_in(attempts - claim["retried_from"]), code)
        raise TransientError(f"side effect {effect.name} failed ({code}); retried", component="effect") from None
    return _record_done(db, effect, msg, attempts, now=now)


def _record_done(db: Database, effect: Effect, msg: EffectRun, attempts: int, *, now: datetime) -> Result:
    with UnitOfWork(db, now=now) as uow:
        if not effect_runs.finish_effect_run(uow.conn, msg.order_id, effect.name, attempts):
            return Result(ResultStatus.DUPLICATE, msg.order_id,
                          f"side effect {effect.name} recorded by another attempt")
        uow.effects(msg.order_id, actor=f"effect:{effect.name}").event(Event.EFFECT_DONE, effect=effect.name,
                                                                       attempts=attempts)
        uow.commit()
    return Result(ResultStatus.ACCEPTED, msg.order_id, f"{effect.name} done")


def _record_failed(db: Database, effect: Effect, msg: EffectRun, attempts: int, code: str, *,
                   now: datetime) -> Result:
    with UnitOfWork(db, now=now) as uow:
        if not effect_runs.fail_effect_run(uow.conn, msg.order_id, effect.name, attempts, code):
            return Result(ResultStatus.DUPLICATE, msg.order_id,
                          f"side effect {effect.name} recorded by another attempt")
        uow.effects(msg.order_id, actor=f"effect:{effect.name}").event(Event.EFFECT_FAILED, effect=effect.name,
                                                                       code=code, attempts=attempts)
        uow.commit()
    log.warning("a side effect failed for good: %s %s", effect.name, code,
                extra={"labels": {"event": "effect.failed", "effect": effect.name, "code": code,
                                  "order_id": msg.order_id}})
    return Result(ResultStatus.ACCEPTED, msg.order_id, f"{effect.name} failed: {code}")
