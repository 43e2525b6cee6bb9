"""The operator's own writes (resend a link, close a manual refund, retry a parked outbox row).

Each is a conditional UPDATE that reports whether it applied; the caller writes its
event-log and outbox rows in the same transaction (`store.write_effects`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

from shared.domain.model import Event

# Which refund states an operator may close, and into what.
REFUND_CLOSABLE = {"refunded": ("manual", "failed"), "failed": ("manual",)}


def clear_provider_session(conn: Connection, order_id: str) -> bool:
    """Forget an open session's provider session, so the next link email opens a fresh one."""
    return conn.execute(
        text("""
            UPDATE verification_sessions
            SET veriff_session_id = NULL, veriff_url = NULL, updated_at = now()
            WHERE order_id = :o AND status IN ('pending', 'in_review')
            RETURNING 1
        """),
        {"o": order_id},
    ).first() is not None


def link_resends(conn: Connection, order_id: str) -> tuple[int, datetime | None]:
    """How many times the link was resent, and when last. Counted from the event log, which is
    kept: the outbox rows that queued earlier links go after REPLAY_RETENTION, while their email
    claims stay and would mark a reused link index as already sent."""
    count, last = conn.execute(
        text("SELECT count(*), max(occurred_at) FROM event_log WHERE order_id = :o AND type = :resent"),
        {"o": order_id, "resent": str(Event.LINK_RESENT)},
    ).one()
    return count, last


def close_refund(conn: Connection, order_id: str, outcome: str) -> str | None:
    """Record a manual refund's outcome; the refund state before, or None when it did not apply."""
    return conn.execute(
        text("""
            UPDATE verification_sessions s SET refund_status = :outcome, updated_at = now()
            FROM (SELECT order_id, refund_status FROM verification_sessions WHERE order_id = :o FOR UPDATE) b
            WHERE s.order_id = b.order_id AND s.refund_status = ANY(:allowed)
            RETURNING b.refund_status
        """),
        {"o": order_id, "outcome": outcome, "allowed": list(REFUND_CLOSABLE[outcome])},
    ).scalar_one_or_none()


def unpark_outbox(conn: Connection, outbox_id: int | None) -> list[tuple[int, str | None]]:
    """Make parked rows (one, or all when `outbox_id` is None) due again; (id, order id) of each."""
    return [tuple(row) for row in conn.execute(
        text("""
            UPDATE outbox SET dead_at = NULL, available_at = now()
            WHERE dead_at IS NOT NULL AND (CAST(:id AS bigint) IS NULL OR id = :id)
            RETURNING id, order_id
        """),
        {"id": outbox_id},
    ).all()]
