"""The operator's own writes (resend a link, close a manual refund, retry a parked outbox row,
an operator's note on the event of their action).

Each is a conditional UPDATE that reports whether it applied; the caller writes its
event-log and outbox rows in the same transaction (`outbox.write_effects`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.engine import Connection

from shared.db.schema import operator_notes, sql_in
from shared.domain.messages import TOPIC_EMAILS
from shared.domain.model import OPEN, Email, Event

# Which refund states an operator may close, and into what.
REFUND_CLOSABLE = {"refunded": ("manual", "failed"), "failed": ("manual",)}


def provider_deciding(conn: Connection, order_id: str, now: datetime) -> bool:
    """Whether the provider holds a submission of this open session for its decision: the
    customer submitted before the deadline (the decision hold), or the provider put it in
    review (the latest `verification.in_review` has no reason of ours). Locks the session row."""
    return bool(conn.execute(
        text("""
            SELECT (s.status = 'pending' AND s.decision_hold_until > :now)
                OR (s.status = 'in_review' AND coalesce((
                        SELECT e.data->>'reason' IS NULL FROM event_log e
                        WHERE e.order_id = s.order_id AND e.type = :in_review
                        ORDER BY e.id DESC LIMIT 1), false))
            FROM verification_sessions s WHERE s.order_id = :o FOR UPDATE
        """),
        {"o": order_id, "now": now, "in_review": str(Event.IN_REVIEW)},
    ).scalar_one_or_none())


def clear_provider_session(conn: Connection, order_id: str) -> bool:
    """Forget an open session's provider session, so the next link email opens a fresh one."""
    return conn.execute(
        text(f"""
            UPDATE verification_sessions
            SET provider_session_id = NULL, provider_url = NULL, updated_at = now()
            WHERE order_id = :o AND {sql_in("status", OPEN)}
            RETURNING 1
        """),
        {"o": order_id},
    ).first() is not None


def next_link_index(conn: Connection, order_id: str) -> int:
    """The index of the next link email (0 is the first): past every link job still in the outbox
    and every link email claimed. Not a count of outbox rows: delivered ones are deleted after
    REPLAY_RETENTION, and an index used again finds its email already sent."""
    return conn.execute(
        text(f"""
            SELECT greatest(
                (SELECT coalesce(max(CAST(payload->'data'->>'reminder_index' AS int)) + 1, 0) FROM outbox
                 WHERE order_id = :o AND payload->>'topic' = '{TOPIC_EMAILS}'
                   AND payload->'data'->>'kind' = '{Email.LINK}'),
                (SELECT coalesce(max(reminder_index) + 1, 0) FROM email_sends
                 WHERE order_id = :o AND kind = '{Email.LINK}'))
        """),
        {"o": order_id},
    ).scalar_one()


def last_link_resend(conn: Connection, order_id: str) -> datetime | None:
    """When the link was last resent (the event log is kept), or None."""
    return conn.execute(
        text("SELECT max(occurred_at) FROM event_log WHERE order_id = :o AND type = :resent"),
        {"o": order_id, "resent": str(Event.LINK_RESENT)},
    ).scalar_one()


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


def retry_store_action(conn: Connection, order_id: str, action: str, connector: str) -> str | None:
    """A store action the store refused becomes due again; None when it applied, else why not.
    A refused cancel-and-refund whose refund a person already closed (refunded or failed by
    hand) is not retried: the store would refund the order a second time."""
    if action == "cancel_and_refund":
        refund = conn.execute(text("SELECT refund_status FROM verification_sessions WHERE order_id = :o FOR UPDATE"),
                              {"o": order_id}).scalar_one_or_none()
        if refund not in (None, "manual"):
            return f"the refund was closed by hand ({refund}): the store would refund twice"
    retried = conn.execute(text("""
        UPDATE store_actions SET state = 'due', error_code = NULL, finished_at = NULL, lease_until = NULL,
                                 redriven_at = NULL
        WHERE order_id = :o AND action = :a AND connector = :c AND state = 'failed'
        RETURNING 1
    """), {"o": order_id, "a": action, "c": connector}).first() is not None
    if not retried:
        return "no failed store action of that kind"
    if action == "cancel_and_refund":  # the store refunds again, not a person
        conn.execute(text("UPDATE verification_sessions SET refund_status = NULL "
                          "WHERE order_id = :o AND refund_status = 'manual'"), {"o": order_id})
    return None


def session_user(conn: Connection) -> str:
    """The database user this connection logged in as (what the operator CLI records as its actor)."""
    return conn.execute(text("SELECT session_user")).scalar_one()


def write_notes(conn: Connection, notes) -> None:
    """Operators' notes (`NoteRow`s), each on the event its action recorded (v17). The table is
    the one place a note is kept: never the event log, an outbox row or a message."""
    conn.execute(operator_notes.insert(), [{"event_id": n.event_id, "order_id": n.order_id, "note": n.note}
                                           for n in notes])


def notes_of(conn: Connection, order_id: str) -> dict[str, str]:
    """An order's operator notes by the event id they explain (the order page and `status`)."""
    rows = conn.execute(select(operator_notes.c.event_id, operator_notes.c.note)
                        .where(operator_notes.c.order_id == order_id))
    return {str(event_id): note for event_id, note in rows}


def erase_notes(conn: Connection, order_ids: list[str]) -> int:
    """Delete the operator notes of these sessions (forget erases them with the customer)."""
    if not order_ids:
        return 0
    return conn.execute(operator_notes.delete().where(operator_notes.c.order_id.in_(order_ids))).rowcount
