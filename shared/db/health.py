"""Health numbers: what the alerts in infra/monitoring/ watch, read from the database.

The sweep logs `outbox_backlog` once a run (the log-based distributions `outbox_backlog`
and `outbox_oldest_age` are read from that line); one reading, no writes.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection


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
