"""The SQL of verify once (DESIGN.md 3b): verified-customer records, looked up with the order
that may reuse one, written by an approval, removed by a revocation, a forget or retention.

A record is read `FOR SHARE` in the order's transaction and removed by a `DELETE`: a revocation
racing an order either commits first (the order sees no record) or waits for the order's commit
(the order used it): never half."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from shared.db import claims


def reusable_record(conn: Connection, customer_key: str, now: datetime) -> dict[str, Any] | None:
    """The unexpired record of this key, locked against revocation until the transaction ends."""
    row = conn.execute(
        text("""
            SELECT session_id, verified_at, expires_at FROM verified_customers
            WHERE customer_key = :k AND expires_at > :now
            FOR SHARE
        """),
        {"k": customer_key, "now": now},
    ).mappings().first()
    return dict(row) if row else None


def set_session_keys(conn: Connection, order_id: str, customer_key: str, email_key: str) -> None:
    conn.execute(
        text("UPDATE verification_sessions SET customer_key = :k, email_key = :e WHERE order_id = :o"),
        {"o": order_id, "k": customer_key, "e": email_key},
    )


def open_reused_session(conn: Connection, params: dict[str, Any]) -> tuple[bool, bool]:
    """(new delivery, new session): the delivery claimed and the session inserted `verified`,
    as `place_order` does for a pending one (a repeat of the delivery or a known order opens
    nothing; the caller records the duplicate)."""
    if not claims.claim_delivery(conn, params["provider"], params["event_id"], params["order_id"]):
        return False, False
    opened = conn.execute(
        text("""
            INSERT INTO verification_sessions (order_id, source, customer_email, customer_id, order_total,
                                               currency, ordered_at, deadline, status, decided_at,
                                               closed_at, customer_key, email_key, store_ordered_at, store_ref)
            VALUES (:order_id, :provider, :customer_email, :customer_id, :order_total, :currency,
                    :ordered_at, :ordered_at, 'verified', :now, :now, :customer_key, :email_key,
                    :store_ordered_at, :store_ref)
            ON CONFLICT (order_id) DO NOTHING
            RETURNING true
        """),
        {k: params[k] for k in ("order_id", "provider", "customer_email", "customer_id", "order_total",
                                "currency", "ordered_at", "now", "customer_key", "email_key",
                                "store_ordered_at", "store_ref")},
    ).first() is not None
    return True, opened


def remember_customer(conn: Connection, order_id: str, now: datetime, expires_at: datetime) -> bool:
    """Record (or renew) the verified-customer key of a session that has one; True when recorded."""
    return conn.execute(
        text("""
            INSERT INTO verified_customers AS v (customer_key, email_key, source, session_id,
                                                 verified_at, expires_at)
            SELECT customer_key, email_key, source, order_id, :now, :exp
            FROM verification_sessions WHERE order_id = :o AND customer_key IS NOT NULL
            ON CONFLICT (customer_key) DO UPDATE
                SET email_key = excluded.email_key, source = excluded.source,
                    session_id = excluded.session_id, verified_at = excluded.verified_at,
                    expires_at = excluded.expires_at
            RETURNING 1
        """),
        {"o": order_id, "now": now, "exp": expires_at},
    ).first() is not None


def revoke_for_session(conn: Connection, order_id: str) -> list[str]:
    """Remove the record of this session's customer key; the sessions the removed record came from."""
    return list(conn.execute(
        text("""
            DELETE FROM verified_customers
            WHERE customer_key = (SELECT customer_key FROM verification_sessions WHERE order_id = :o)
            RETURNING session_id
        """),
        {"o": order_id},
    ).scalars())


def record_of_session(conn: Connection, order_id: str) -> dict[str, Any] | None:
    """The record this session's customer key has now (for the console's order page)."""
    row = conn.execute(
        text("""
            SELECT v.session_id, v.verified_at, v.expires_at FROM verified_customers v
            JOIN verification_sessions s ON s.customer_key = v.customer_key
            WHERE s.order_id = :o
        """),
        {"o": order_id},
    ).mappings().first()
    return dict(row) if row else None


def sessions_of_email(conn: Connection, email: str, email_key: str | None) -> list[dict[str, Any]]:
    """Every session of this email (any case), or of its email key, locked until commit."""
    return [dict(r) for r in conn.execute(
        text("""
            SELECT order_id, status FROM verification_sessions
            WHERE lower(customer_email) = lower(:e)
               OR (CAST(:ek AS text) IS NOT NULL AND email_key = :ek)
            ORDER BY order_id
            FOR UPDATE
        """),
        {"e": email, "ek": email_key},
    ).mappings()]


def erase_sessions(conn: Connection, order_ids: list[str]) -> int:
    """The customer's email, id, keys and provider link (a bearer link to their provider
    session) erased from these sessions (as retention does)."""
    return len(conn.execute(
        text("""
            UPDATE verification_sessions
            SET customer_email = NULL, customer_id = NULL, customer_key = NULL, email_key = NULL,
                provider_url = NULL,
                erased_at = coalesce(erased_at, now()), updated_at = now()
            WHERE order_id = ANY(:ids)
            RETURNING 1
        """),
        {"ids": order_ids},
    ).all())


def forget_records(conn: Connection, email_key: str) -> int:
    """Every verified-customer record of this email, whichever account it came with."""
    return len(conn.execute(
        text("DELETE FROM verified_customers WHERE email_key = :ek RETURNING 1"), {"ek": email_key}).all())
