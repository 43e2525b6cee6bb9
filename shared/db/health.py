"""Health numbers: what the alerts in infra/monitoring/ watch, read from the database.

The sweep logs `outbox_backlog` once a run (the log-based distributions `outbox_backlog`
and `outbox_oldest_age` are read from that line) and records the run (`record_sweep`, its one
write: the `sweep_runs` row the System page shows as the last sweep); the report is one reading.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

from shared.config import EventsBackend, Settings, TasksBackend
from shared.db.effect_runs import effects_failed


@dataclass(frozen=True)
class OutboxBacklog:
    undelivered: int  # neither delivered nor parked
    oldest_seconds: float  # age of the oldest of them (0 when none)
    parked: int  # failed for good, waiting for an operator


def outbox_backlog(conn: Connection) -> OutboxBacklog:
    row = conn.execute(text("""
        SELECT count(*) FILTER (WHERE delivered_at IS NULL AND dead_at IS NULL),
               COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)
                                FILTER (WHERE delivered_at IS NULL AND dead_at IS NULL)), 0),
               count(*) FILTER (WHERE dead_at IS NOT NULL)
        FROM outbox WHERE delivered_at IS NULL
    """)).one()
    return OutboxBacklog(int(row[0]), max(float(row[1]), 0.0), int(row[2]))


# The one sweep kind today (`functions/sweep.py`): its row in `sweep_runs`.
SWEEP = "sweep"


@dataclass(frozen=True)
class LastSweep:
    """The last recorded run of the sweep: when it finished, how long ago (by the database's
    clock), how long it took, and its report's counts (what its `sweep done` line says)."""

    finished_at: datetime
    seconds_ago: float
    seconds: float
    report: dict[str, int | float]

    def to_dict(self) -> dict:
        return {"finished_at": self.finished_at.isoformat(), "seconds_ago": round(self.seconds_ago, 1),
                "seconds": round(self.seconds, 3), "report": self.report}


def record_sweep(conn: Connection, *, finished_at: datetime, seconds: float, report: dict[str, int | float],
                 name: str = SWEEP) -> None:
    """Upsert the run's row (one a sweep kind): numbers only, never customer data."""
    conn.execute(text("""
        INSERT INTO sweep_runs (name, finished_at, seconds, report)
        VALUES (:name, :finished_at, :seconds, CAST(:report AS jsonb))
        ON CONFLICT (name) DO UPDATE
        SET finished_at = EXCLUDED.finished_at, seconds = EXCLUDED.seconds, report = EXCLUDED.report
    """), {"name": name, "finished_at": finished_at, "seconds": round(float(seconds), 3),
           "report": json.dumps(report, sort_keys=True)})


def last_sweep(conn: Connection, name: str = SWEEP) -> LastSweep | None:
    """The last recorded run, or None when no sweep has run (since v15)."""
    row = conn.execute(text("""
        SELECT finished_at, GREATEST(EXTRACT(EPOCH FROM now() - finished_at), 0), seconds, report
        FROM sweep_runs WHERE name = :name
    """), {"name": name}).one_or_none()
    if row is None:
        return None
    return LastSweep(finished_at=row[0], seconds_ago=float(row[1]), seconds=float(row[2]), report=dict(row[3]))


@dataclass(frozen=True)
class HealthReport:
    """The numbers the alerts watch, as the console's System page and `operator health` show them."""

    outbox: OutboxBacklog
    in_review: dict[str, int]  # by reason: link_not_sent, or provider_review (the ID provider's own review)
    refunds_failed: int  # sessions whose refund the refund API refused (refund_status failed)
    store_actions_failed: dict[str, int]  # store actions a store refused (its code recorded), by connector
    # Local stack only (TASKS_BACKEND/EVENTS_BACKEND local): deliveries the local queue gave up,
    # by queue (timers, or a message's topic); None where Cloud Tasks and Pub/Sub deliver.
    local_dead_letters: dict[str, int] | None
    last_sweep: LastSweep | None = None  # None: no sweep has run
    effects_failed: dict[str, int] | None = None  # registered side effects failed for good, by effect

    def to_dict(self) -> dict:
        return {"outbox": {"undelivered": self.outbox.undelivered,
                           "oldest_seconds": round(self.outbox.oldest_seconds, 1),
                           "parked": self.outbox.parked},
                "in_review": self.in_review, "refunds_failed": self.refunds_failed,
                "store_actions_failed": self.store_actions_failed,
                "local_dead_letters": self.local_dead_letters,
                "last_sweep": self.last_sweep.to_dict() if self.last_sweep else None,
                "effects_failed": self.effects_failed or {}}


def in_review_by_reason(conn: Connection) -> dict[str, int]:
    """Sessions in review, by the reason of their latest `verification.in_review` event (none
    of ours: the ID provider's own review)."""
    rows = conn.execute(text("""
        SELECT COALESCE(e.reason, 'provider_review') AS reason, count(*)
        FROM verification_sessions s
        LEFT JOIN LATERAL (
            SELECT data->>'reason' AS reason FROM event_log
            WHERE order_id = s.order_id AND type = 'verification.in_review'
            ORDER BY id DESC LIMIT 1
        ) e ON true
        WHERE s.status = 'in_review'
        GROUP BY 1 ORDER BY 1
    """)).all()
    return {reason: int(count) for reason, count in rows}


def refunds_failed(conn: Connection) -> int:
    return int(conn.execute(text(
        "SELECT count(*) FROM verification_sessions WHERE refund_status = 'failed'")).scalar_one())


def store_actions_failed(conn: Connection) -> dict[str, int]:
    """Store actions the store refused for good, by connector (each is in "needs attention")."""
    rows = conn.execute(text(
        "SELECT connector, count(*) FROM store_actions WHERE state = 'failed' GROUP BY connector ORDER BY connector"
    )).all()
    return {connector: int(count) for connector, count in rows}


def local_dead_letters(conn: Connection) -> dict[str, int]:
    """The local queue's given-up deliveries, by queue (the table is the local stack's own)."""
    rows = conn.execute(text("""
        SELECT queue, count(*) FROM local_tasks WHERE last_status = 'gave_up' GROUP BY queue ORDER BY queue
    """)).all()
    return {queue: int(count) for queue, count in rows}


def uses_local_queue(settings: Settings) -> bool:
    return settings.tasks.backend == TasksBackend.LOCAL or settings.events.backend == EventsBackend.LOCAL


def report(conn: Connection, *, local_queue: bool) -> HealthReport:
    """Every number, in one read. `local_queue`: whether this deployment delivers through the
    local queue (only then is its table read: no cloud function's role may)."""
    return HealthReport(outbox=outbox_backlog(conn), in_review=in_review_by_reason(conn),
                        refunds_failed=refunds_failed(conn), store_actions_failed=store_actions_failed(conn),
                        local_dead_letters=local_dead_letters(conn) if local_queue else None,
                        last_sweep=last_sweep(conn), effects_failed=effects_failed(conn))
