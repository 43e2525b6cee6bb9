"""The sweeper's retention pass and the operator's preview of it (`purge --dry-run`).

No session keeps its customer's data longer than RETENTION past its deadline, whatever its
status. A closed session is erased RETENTION after it closed (`closed_at`, our own clock). An
open one (`pending` or `in_review`: a review nobody finished, an approval without a date of
birth, a link that was never sent) is closed when RETENTION has passed since its deadline:
`cancelled`, reason `retention`, through the normal transition (`model.RETENTION_CLOSED`: timers
cancelled, the store told `note_cancelled`, which releases nothing, so the held order never
ships unverified), with no automatic refund (an in-review order is a person's to decide): its
refund is left `manual`, made once by a person from "needs attention". Its email, id, keys and
provider link are erased in the same transaction.
"""

from __future__ import annotations

import time
from datetime import datetime

from shared.config import Settings, TasksBackend
from shared.db import customer_store, retention, sessions
from shared.db.database import Database
from shared.db.unit_of_work import UnitOfWork
from shared.domain.model import RETENTION_CLOSED, Event
from shared.handlers.transitions import apply_effects
from shared.stores.registry import NO_STORES, StoreRegistry

BATCH = 1000
CLOSE_BATCH = 100  # open sessions closed per transaction (each writes its events and store action)
ACTOR = "retention"


def _plan(settings: Settings, now: datetime):
    return retention.cutoffs(now, settings.retention.sessions, settings.retention.webhooks, settings.retention.replay,
                             local=settings.tasks.backend == TasksBackend.LOCAL)


def close_open(db: Database, settings: Settings, *, now: datetime, stores: StoreRegistry = NO_STORES,
               limit: int = CLOSE_BATCH) -> int:
    """Close and erase up to `limit` open sessions whose deadline is RETENTION past, in one unit
    of work (its outbox rows go with the next relay); how many it closed."""
    with UnitOfWork(db, now=now) as uow:
        due = retention.open_past_retention(uow.conn, now - settings.retention.sessions, limit)
        closed = []
        for order_id in due:
            if sessions.move_status(uow.conn, order_id, tuple(RETENTION_CLOSED.from_statuses),
                                    RETENTION_CLOSED.to_status) is None:
                continue
            fx = uow.effects(order_id, actor=ACTOR)
            apply_effects(uow, fx, RETENTION_CLOSED, {}, stores)
            if retention.refund_to_a_person(uow.conn, order_id):
                fx.event(Event.REFUND_MANUAL, reason=RETENTION_CLOSED.reason)
            closed.append(order_id)
        customer_store.erase_sessions(uow.conn, closed)
        uow.commit()
    return len(closed)


def purge(db: Database, settings: Settings, *, now: datetime, budget_seconds: float = 5.0,
          batch: int = BATCH, stores: StoreRegistry = NO_STORES) -> dict[str, int]:
    """Close and erase open sessions RETENTION past their deadline, then erase and delete what
    is past its retention, batch by batch, until done or out of time (the next sweep goes on).
    Rows touched per kind."""
    done: dict[str, int] = {}
    stop_at = time.monotonic() + budget_seconds
    while time.monotonic() < stop_at:
        count = close_open(db, settings, now=now, stores=stores, limit=min(batch, CLOSE_BATCH))
        if count:
            done[retention.OPEN_CLOSED] = done.get(retention.OPEN_CLOSED, 0) + count
        if count < min(batch, CLOSE_BATCH):
            break
    for kind, cutoff in _plan(settings, now):
        while time.monotonic() < stop_at:
            count = retention.purge_batch(db, kind, cutoff, batch)
            if count:
                done[kind.name] = done.get(kind.name, 0) + count
            if count < batch:
                break
    return done


def preview(db: Database, settings: Settings, *, now: datetime) -> dict[str, int]:
    """What a purge would touch now, per kind (nothing is changed)."""
    counts = {retention.OPEN_CLOSED: retention.open_past_retention_count(db, now - settings.retention.sessions)}
    counts.update({kind.name: retention.eligible(db, kind, cutoff) for kind, cutoff in _plan(settings, now)})
    return counts
