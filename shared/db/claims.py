"""Claims: the row that makes a repeated delivery harmless. First-time claims (a webhook delivery,
a subscriber's message: True once, committed with the effect) and leased claims (an email's send,
a refund's request), taken before calling out: a claim whose attempt died is taken over when its
lease passes, and the final state answers every later attempt.

The refund's other states (asked for, settled, closed by the store's own refund) are here too:
they are the same column the claim leases. Store actions have their own claims
(`shared.db.store_actions`); what the sweeper re-drives is `shared.db.redrive`'s."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

from shared.db.database import Database
from shared.domain.model import EmailClaim, RefundClaim


def claim_delivery(conn: Connection, provider: str, event_id: str, order_id: str | None) -> bool:
    """Record a webhook delivery; True only for the first delivery of that event."""
    return conn.execute(
        text("""
            INSERT INTO webhook_events AS w (provider, event_id, order_id)
            VALUES (:provider, :event_id, :order_id)
            ON CONFLICT (provider, event_id) DO UPDATE
                SET deliveries = w.deliveries + 1, last_received_at = now()
            RETURNING w.deliveries = 1
        """),
        {"provider": provider, "event_id": event_id, "order_id": order_id},
    ).scalar_one()


def claim_message(conn: Connection, subscriber: str, message_id: str) -> bool:
    """True the first time `subscriber` sees `message_id` (commit with the effect)."""
    return conn.execute(
        text("""
            INSERT INTO processed_messages (subscriber, message_id) VALUES (:s, :m)
            ON CONFLICT DO NOTHING RETURNING 1
        """),
        {"s": subscriber, "m": message_id},
    ).first() is not None


_CLAIM_EMAIL = text("""
    WITH claim AS (
        INSERT INTO email_sends AS e (order_id, kind, reminder_index, state)
        VALUES (:o, :k, :i, 'sending')
        ON CONFLICT (order_id, kind, reminder_index) DO UPDATE
            SET claimed_at = now(), attempts = e.attempts + 1
            WHERE e.state = 'sending' AND e.claimed_at < now() - make_interval(secs => :lease)
        RETURNING 'claimed'::text AS outcome
    )
    SELECT outcome FROM claim
    UNION ALL
    SELECT state FROM email_sends
    WHERE order_id = :o AND kind = :k AND reminder_index = :i AND NOT EXISTS (SELECT 1 FROM claim)
""")


def claim_email(db: Database, order_id: str, kind: str, reminder_index: int,
                lease_seconds: float) -> EmailClaim:
    """Claim one email for sending: CLAIMED (new, or taken over from an attempt whose lease
    passed), SENDING (another attempt holds the lease), or the final state (SENT, SKIPPED)."""
    rows = db.atomic(_CLAIM_EMAIL, {"o": order_id, "k": kind, "i": reminder_index, "lease": lease_seconds})
    # No row: a concurrent first claim committed after this statement's snapshot; it holds the lease.
    return EmailClaim(rows[0][0]) if rows else EmailClaim.SENDING


def release_email(conn: Connection, order_id: str, kind: str, reminder_index: int) -> None:
    conn.execute(
        text("DELETE FROM email_sends WHERE order_id = :o AND kind = :k AND reminder_index = :i "
             "AND state = 'sending'"),
        {"o": order_id, "k": kind, "i": reminder_index},
    )


def finish_email(conn: Connection, order_id: str, kind: str, reminder_index: int, state: str) -> None:
    conn.execute(
        text("UPDATE email_sends SET state = :state, sent_at = now() "
             "WHERE order_id = :o AND kind = :k AND reminder_index = :i"),
        {"o": order_id, "k": kind, "i": reminder_index, "state": state},
    )


_CLAIM_REFUND = text("""
    WITH claim AS (
        UPDATE verification_sessions
        SET refund_status = 'requested', refund_claimed_at = now()
        WHERE order_id = :o
          AND (refund_status IS NULL
               OR (refund_status = 'requested'
                   AND (refund_claimed_at IS NULL
                        OR refund_claimed_at < now() - make_interval(secs => :lease))))
        RETURNING 'claimed'::text AS outcome
    )
    SELECT outcome FROM claim
    UNION ALL
    SELECT coalesce(refund_status, 'requested') FROM verification_sessions
    WHERE order_id = :o AND NOT EXISTS (SELECT 1 FROM claim)
""")


def claim_refund(db: Database, order_id: str, lease_seconds: float) -> RefundClaim:
    """CLAIMED (first, or taken over past the lease), REQUESTED (another attempt holds the
    lease), the final refund status, or UNKNOWN for an unknown order."""
    rows = db.atomic(_CLAIM_REFUND, {"o": order_id, "lease": lease_seconds})
    return RefundClaim(rows[0][0]) if rows else RefundClaim.UNKNOWN


def release_refund(db: Database, order_id: str) -> None:
    """A call that failed gives its lease back at once (the retry need not wait for it)."""
    db.atomic(text("UPDATE verification_sessions SET refund_claimed_at = NULL "
                   "WHERE order_id = :o AND refund_status = 'requested'"), {"o": order_id})


def record_refund_request(conn: Connection, order_id: str) -> None:
    """A transition that owes a refund asked REFUND_BACKEND for it (its message is in the same
    outbox): the session is owed that refund until it is settled (`redrive.refunds_to_redrive`)."""
    conn.execute(text("UPDATE verification_sessions SET refund_requested_at = now() WHERE order_id = :o"),
                 {"o": order_id})


def set_refund_status(conn: Connection, order_id: str, status: str) -> bool:
    """'requested' → the outcome; True when this call recorded it."""
    return conn.execute(
        text("UPDATE verification_sessions SET refund_status = :s, updated_at = now() "
             "WHERE order_id = :o AND refund_status = 'requested' RETURNING 1"),
        {"o": order_id, "s": status},
    ).first() is not None


def close_store_refund(conn: Connection, order_id: str, outcome: str) -> bool:
    """The store's own `cancel_and_refund` ended: refunded (the store did it) or manual (it refused:
    a person refunds). No refund request was made for such an order (`redrive.refunds_to_redrive` leaves
    it to the store action). True once."""
    return conn.execute(text("UPDATE verification_sessions SET refund_status = :s, updated_at = now() "
                             "WHERE order_id = :o AND refund_status IS NULL RETURNING 1"),
                        {"o": order_id, "s": outcome}).first() is not None
