"""The outbox relay: deliver committed side effects (tasks, messages) exactly once each.

Rows are locked with FOR UPDATE SKIP LOCKED for the length of their delivery,
so two relays never hold the same row. A crash after a delivery but before
the commit leaves the row undelivered, and the next relay repeats it: task
creation is idempotent by its deterministic name (ALREADY_EXISTS is success),
deletion by NOT_FOUND, and a re-published message carries the same
`message_key` attribute, on which subscribers deduplicate.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime

from shared.adapters.ports import EventPublisher, OutgoingMessage, TaskScheduler, TimerTask
from shared.db import store
from shared.db.database import Database
from shared.errors import PermanentError, ServiceError

log = logging.getLogger(__name__)

BATCH = 100
MAX_BACKOFF_SECONDS = 600.0


@dataclass
class RelayReport:
    delivered: int = 0
    failed: int = 0  # will be retried after a backoff
    dead: int = 0  # failed permanently: parked in the outbox with the error, not retried

    def add(self, other: RelayReport) -> None:
        self.delivered += other.delivered
        self.failed += other.failed
        self.dead += other.dead


def backoff_seconds(attempts: int) -> float:
    """10 s, 20 s, 40 s ... capped at 10 minutes."""
    return min(10.0 * 2 ** attempts, MAX_BACKOFF_SECONDS)


def relay(db: Database, scheduler: TaskScheduler, publisher: EventPublisher, *,
          order_ids: list[str] | None = None, budget_seconds: float = 2.0, batch: int = BATCH) -> RelayReport:
    """Deliver due outbox rows (only these orders' when given) until done or out of time."""
    report = RelayReport()
    stop_at = time.monotonic() + budget_seconds
    while time.monotonic() < stop_at:
        with db.transaction() as conn:
            rows = store.claim_outbox(conn, batch, order_ids)
            if not rows:
                break
            delivered, failures, dead = _deliver(rows, scheduler, publisher)
            store.mark_delivered(conn, delivered)
            store.mark_failed(conn, failures)
            store.mark_dead(conn, dead)
        for row_id, error in dead:
            log.error("outbox row %d can never be delivered, parked: %s", row_id, error)
        report.add(RelayReport(len(delivered), len(failures), len(dead)))
        if failures or len(rows) < batch:
            break  # what failed waits for its backoff; the sweeper comes back for it
    if report.failed or report.dead:
        log.warning("outbox relay: %d delivered, %d failed, %d dead", report.delivered, report.failed, report.dead)
    return report


def _deliver(rows: list[dict], scheduler: TaskScheduler, publisher: EventPublisher):
    delivered: list[int] = []
    failures: list[tuple[int, str, float]] = []
    dead: list[tuple[int, str]] = []

    def failed(row: dict, error: Exception) -> None:
        described = f"{type(error).__name__}: {error}"
        if isinstance(error, PermanentError):
            dead.append((row["id"], described))
        else:
            failures.append((row["id"], described, backoff_seconds(row["attempts"])))

    messages = [row for row in rows if row["kind"] == "publish"]
    for row in rows:
        if row["kind"] == "publish":
            continue
        payload = row["payload"]
        try:
            if row["kind"] == "task.create":
                scheduler.create(TimerTask(
                    name=payload["name"],
                    schedule_time=datetime.fromisoformat(payload["schedule_time"]),
                    payload=payload["body"],
                ))
            else:
                scheduler.delete(payload["name"])
            delivered.append(row["id"])
        except ServiceError as exc:
            failed(row, exc)
    if messages:
        outcomes = publisher.publish_batch([
            OutgoingMessage(
                topic=row["payload"]["topic"],
                data=json.dumps(row["payload"]["data"]).encode(),
                ordering_key=row["payload"]["ordering_key"],
                attributes=row["payload"]["attributes"],
            )
            for row in messages
        ])
        for row, outcome in zip(messages, outcomes):
            if isinstance(outcome, Exception):
                failed(row, outcome)
            else:
                delivered.append(row["id"])
    return delivered, failures, dead
