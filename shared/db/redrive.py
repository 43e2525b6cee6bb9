"""The sweeper's queries for work a crash or a lost message left behind: pending sessions past
their deadline (a lost timer), emails never sent or left `sending`, refunds asked for and never
settled, store actions unfinished. Each finds a bounded batch; the ones that mark a row re-driven
do so in the same statement, so a row comes back at most once a lease."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Connection

from shared.db.schema import REFUND_OWED, sql_in
from shared.domain.messages import TOPIC_EMAILS
from shared.domain.model import EMAILS, STORE_ACTION_OPEN, Email, Event


def overdue_sessions(conn: Connection, cutoff: datetime, limit: int) -> list[str]:
    """Pending sessions whose deadline is before `cutoff` (served by the partial index)."""
    return list(conn.execute(
        text("""
            SELECT order_id FROM verification_sessions
            WHERE status = 'pending' AND deadline <= :cutoff
              AND coalesce(decision_hold_until, deadline) <= :cutoff
            ORDER BY deadline LIMIT :n
        """),
        {"cutoff": cutoff, "n": limit},
    ).scalars())


# A pending session's link email, a lease after the order, is neither sent nor on its way in the outbox.
_LINK_DUE = f"""
    s.status = 'pending' AND s.created_at < now() - make_interval(secs => :lease)
    AND NOT EXISTS (SELECT 1 FROM email_sends d
                    WHERE d.order_id = s.order_id AND d.kind = '{Email.LINK}'
                      AND (d.state <> 'sending' OR d.claimed_at >= now() - make_interval(secs => :lease)))
    AND NOT EXISTS (SELECT 1 FROM outbox o
                    WHERE o.order_id = s.order_id AND o.delivered_at IS NULL AND o.dead_at IS NULL
                      AND o.kind = 'publish' AND o.payload->>'topic' = '{TOPIC_EMAILS}')
"""

# An operator's resent link (`link` n > 0) whose attempt died: its session can still take a link
# and no later link was asked for since (that one carries the session's link now).
_RESENT_LINK_DUE = f"""
    s.erased_at IS NULL AND c.kind || ':' || s.status = ANY(:sendable)
    AND NOT EXISTS (SELECT 1 FROM email_sends l
                    WHERE l.order_id = c.order_id AND l.kind = '{Email.LINK}' AND l.reminder_index > c.reminder_index)
"""

# Claims left `sending` past their lease (the attempt died), not re-driven within the last lease:
# marked re-driven in the same statement. The message it enqueues takes the claim over (a new
# `claimed_at`); if that message is lost too, the claim comes back a lease later.
_STALE_CLAIMS_TO_REDRIVE = text(f"""
    UPDATE email_sends e SET redriven_at = now()
    FROM (SELECT c.order_id, c.kind, c.reminder_index
          FROM email_sends c JOIN verification_sessions s ON s.order_id = c.order_id
          WHERE c.state = 'sending' AND c.claimed_at < now() - make_interval(secs => :lease)
            AND (c.redriven_at IS NULL OR c.redriven_at < now() - make_interval(secs => :lease))
            AND CASE WHEN c.kind = '{Email.LINK}' AND c.reminder_index = 0 THEN {_LINK_DUE}
                     WHEN c.kind = '{Email.LINK}' THEN {_RESENT_LINK_DUE}
                     ELSE s.erased_at IS NULL AND c.kind || ':' || s.status = ANY(:sendable) END
          ORDER BY c.claimed_at LIMIT :n
          FOR UPDATE OF c SKIP LOCKED) due
    WHERE e.order_id = due.order_id AND e.kind = due.kind AND e.reminder_index = due.reminder_index
    RETURNING e.order_id, e.kind, e.reminder_index
""")

# Link emails never claimed (their message lost before it ran, or its attempt failed and gave the
# claim back), not on their way in the outbox and not re-driven within the last lease: the session
# is marked re-driven (`link_redriven_at`) in the same statement, since the relay delivers the
# message it enqueues (the outbox check alone no longer holds it back) while it waits in the queue.
_LINKS_NEVER_CLAIMED = text(f"""
    UPDATE verification_sessions v SET link_redriven_at = now()
    FROM (SELECT s.order_id FROM verification_sessions s
          WHERE {_LINK_DUE}
            AND (s.link_redriven_at IS NULL OR s.link_redriven_at < now() - make_interval(secs => :lease))
            AND NOT EXISTS (SELECT 1 FROM email_sends z
                            WHERE z.order_id = s.order_id AND z.kind = '{Email.LINK}' AND z.reminder_index = 0)
          ORDER BY s.created_at LIMIT :n
          FOR UPDATE OF s SKIP LOCKED) due
    WHERE v.order_id = due.order_id
    RETURNING v.order_id, '{Email.LINK}' AS kind, 0 AS reminder_index
""")

# Each email kind with each status it may still go out in (`EmailSpec.sendable_in`), as
# `kind:status`: a claim left `sending` for a session that can no longer take its email (a
# reminder of a session since verified, a customer erased) is not re-driven, since its job would
# be ignored and the claim stay `sending`, enqueued again by every sweep.
_SENDABLE = sorted(f"{kind}:{status}" for kind, spec in EMAILS.items() for status in spec.sendable_in)


def emails_to_redrive(conn: Connection, lease_seconds: float, limit: int) -> list[tuple[str, str, int]]:
    """Emails a crash may have lost: claims left `sending` past their lease that their session
    can still take, and pending sessions whose link was never claimed (and is not on its way in
    the outbox): each at most once a lease."""
    stale = [tuple(r) for r in conn.execute(_STALE_CLAIMS_TO_REDRIVE,
                                            {"lease": lease_seconds, "n": limit, "sendable": _SENDABLE})]
    if len(stale) >= limit:
        return stale
    return stale + [tuple(r) for r in conn.execute(_LINKS_NEVER_CLAIMED,
                                                   {"lease": lease_seconds, "n": limit - len(stale)})]


_REFUNDS_TO_REDRIVE = text(f"""
    UPDATE verification_sessions s SET refund_requested_at = now()
    FROM (SELECT order_id FROM verification_sessions
          WHERE {REFUND_OWED}
            AND refund_requested_at < now() - make_interval(secs => :lease)
            AND (refund_claimed_at IS NULL OR refund_claimed_at < now() - make_interval(secs => :lease))
          ORDER BY refund_requested_at LIMIT :n
          FOR UPDATE SKIP LOCKED) due
    WHERE s.order_id = due.order_id
    RETURNING s.order_id, coalesce(
        (SELECT e.data->>'reason' FROM event_log e WHERE e.order_id = s.order_id AND e.type = :requested
         ORDER BY e.id DESC LIMIT 1),
        s.status)
""")


def refunds_to_redrive(conn: Connection, lease_seconds: float, limit: int) -> list[tuple[str, str]]:
    """(order id, reason) of sessions whose refund was asked for over a lease ago and whose
    request was lost: never claimed, given back by a failed call, or claimed by an attempt that
    died (its lease passed). Which sessions are owed one is what their transitions recorded
    (`claims.record_refund_request`: an erased customer's cancelled order too, never a store's own
    cancellation), not their status. Each is re-driven at most once a lease (the request's time
    moves on). The reason is the one the first request gave (an underage approval's `underage`,
    an erasure's `erased`), else the status."""
    return [tuple(r) for r in conn.execute(_REFUNDS_TO_REDRIVE, {"lease": lease_seconds, "n": limit,
                                                                 "requested": str(Event.REFUND_REQUESTED)})]


_STORE_ACTIONS_TO_REDRIVE = text(f"""
    UPDATE store_actions s SET redriven_at = now()
    FROM (SELECT order_id, action, connector FROM store_actions
          WHERE {sql_in("state", STORE_ACTION_OPEN)}
            AND coalesce(lease_until, created_at + make_interval(secs => :lease)) < now()
            AND (redriven_at IS NULL OR redriven_at < now() - make_interval(secs => :lease))
          ORDER BY created_at LIMIT :n
          FOR UPDATE SKIP LOCKED) due
    WHERE s.order_id = due.order_id AND s.action = due.action AND s.connector = due.connector
    RETURNING s.order_id, s.action, s.connector
""")


def store_actions_to_redrive(conn: Connection, lease_seconds: float, limit: int) -> list[tuple[str, str, str]]:
    """(order, action, connector) of store actions a crash or a lost message left unfinished:
    due a lease after they were asked for, or leased past their lease (an attempt that died, or
    a store's Retry-After that passed). Each is re-driven at most once a lease."""
    return [tuple(r) for r in conn.execute(_STORE_ACTIONS_TO_REDRIVE, {"lease": lease_seconds, "n": limit})]
