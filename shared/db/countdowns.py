"""A session's countdown timers (`countdown_timers`): fired once by their task while the session
still waits for them, and cancelled when a transition closes it. A deadline extension bumps the
session's `deadline_version` (`sessions.extend_deadline`), so an old deadline's task finds no timer."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection


def cancel_timers(conn: Connection, order_id: str, kind: str | None = None) -> list[str]:
    """Mark the order's scheduled timers (of `kind`, or all) cancelled; their task names."""
    return list(
        conn.execute(
            text("""
                UPDATE countdown_timers SET state = 'cancelled'
                WHERE order_id = :o AND state = 'scheduled'
                  AND (CAST(:kind AS text) IS NULL OR kind = :kind)
                RETURNING task_name
            """),
            {"o": order_id, "kind": kind},
        ).scalars()
    )


def fire_reminder(conn: Connection, order_id: str, reminder_index: int, deadline_version: int) -> bool:
    """Mark a scheduled reminder fired, only while its session is pending and the customer has not
    submitted (a submission waiting for its decision holds the session). True once."""
    return conn.execute(
        text("""
            UPDATE countdown_timers t SET state = 'fired', fired_at = now()
            FROM verification_sessions s
            WHERE t.order_id = :o AND t.kind = 'reminder' AND t.reminder_index = :i
              AND t.deadline_version = :v AND t.state = 'scheduled'
              AND s.order_id = t.order_id AND s.status = 'pending' AND s.decision_hold_until IS NULL
            RETURNING 1
        """),
        {"o": order_id, "i": reminder_index, "v": deadline_version},
    ).first() is not None


def mark_deadline_fired(conn: Connection, order_id: str) -> None:
    conn.execute(
        text("""
            UPDATE countdown_timers SET state = 'fired', fired_at = now()
            WHERE order_id = :o AND kind = 'deadline' AND state = 'scheduled'
              AND deadline_version = (SELECT deadline_version FROM verification_sessions WHERE order_id = :o)
        """),
        {"o": order_id},
    )
