"""The sweeper's retention pass and the operator's preview of it (`purge --dry-run`)."""

from __future__ import annotations

import time
from datetime import datetime

from shared.config import Settings, TasksBackend
from shared.db import retention
from shared.db.database import Database

BATCH = 1000


def _plan(settings: Settings, now: datetime):
    return retention.cutoffs(now, settings.retention.sessions, settings.retention.webhooks, settings.retention.replay,
                             local=settings.tasks.backend == TasksBackend.LOCAL)


def purge(db: Database, settings: Settings, *, now: datetime, budget_seconds: float = 5.0,
          batch: int = BATCH) -> dict[str, int]:
    """Erase and delete what is past its retention, batch by batch, until done or out of time
    (the next sweep goes on). Rows touched per kind."""
    done: dict[str, int] = {}
    stop_at = time.monotonic() + budget_seconds
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
    return {kind.name: retention.eligible(db, kind, cutoff) for kind, cutoff in _plan(settings, now)}
