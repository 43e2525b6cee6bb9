"""The sweeper's re-drive of customer emails, refund requests, store actions and registered side
effects a crash or a dropped message lost."""

from __future__ import annotations

import logging
from datetime import datetime

from shared.config import Settings
from shared.db import effect_runs, redrive
from shared.db.database import Database
from shared.db.unit_of_work import UnitOfWork
from shared.effects import registry as effect_registry

log = logging.getLogger(__name__)


def redrive_lost_work(db: Database, settings: Settings, *, now: datetime, limit: int = 200) -> int:
    """The sweeper's safety net for work a crash or a dropped message lost: link emails never
    sent, email claims left past their lease, refunds never completed, store actions unfinished
    a lease after they were asked for or past their lease, registered side effects' runs the same
    (`shared.effects`). Each is enqueued
    again (the claims make a repeat harmless). Returns how many were enqueued."""
    lease = settings.lifecycle.email_lease.total_seconds()
    with UnitOfWork(db, now=now) as uow:
        emails = redrive.emails_to_redrive(uow.conn, lease, limit)
        refunds = redrive.refunds_to_redrive(uow.conn, lease, limit)
        actions = redrive.store_actions_to_redrive(uow.conn, lease, limit)
        runs = effect_runs.effect_runs_to_redrive(uow.conn, effect_registry.names(), lease, limit)
        for order_id, kind, reminder_index in emails:
            uow.effects(order_id, actor="sweeper").email(kind, reminder_index)
        for order_id, reason in refunds:
            uow.effects(order_id, actor="sweeper").refund_action(reason)
        for order_id, action, connector in actions:
            uow.effects(order_id, actor="sweeper").store_action_message(action, connector)
        for order_id, effect in runs:
            uow.effects(order_id, actor="sweeper").effect_run_message(effect)
        uow.commit()
    if emails or refunds or actions or runs:
        log.warning("sweep re-enqueued %d emails, %d refunds, %d store actions and %d side effects",
                    len(emails), len(refunds), len(actions), len(runs))
    return len(emails) + len(refunds) + len(actions) + len(runs)
