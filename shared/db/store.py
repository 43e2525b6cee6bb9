"""Every SQL statement the handlers run. Bound parameters only."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from shared.db.database import Database

_JSON_ROWS = dict(
    events=JSONB,
    timers=JSONB,
    outbox=JSONB,
)

# `order placed` in one statement: claim the delivery, open the session, and --
# only when the session is new -- write its events, timers and outbox rows.
# A new delivery for a known order records `order.duplicate` instead.
_PLACE_ORDER = text("""
WITH claim AS (
    INSERT INTO webhook_events AS w (provider, event_id, order_id)
    VALUES (:provider, :event_id, :order_id)
    ON CONFLICT (provider, event_id) DO UPDATE
        SET deliveries = w.deliveries + 1, last_received_at = now()
    RETURNING w.deliveries = 1 AS first
), opened AS (
    INSERT INTO verification_sessions (order_id, source, customer_email, customer_id,
                                       order_total, currency, ordered_at, deadline)
    SELECT :order_id, :provider, :customer_email, :customer_id,
           :order_total, :currency, :ordered_at, :deadline
    FROM claim WHERE claim.first
    ON CONFLICT (order_id) DO NOTHING
    RETURNING order_id
), new_events AS (
    INSERT INTO event_log (event_id, order_id, type, occurred_at, request_id, data)
    SELECT e.event_id, e.order_id, e.type, e.occurred_at, e.request_id, e.data
    FROM jsonb_to_recordset(:events) AS e(event_id uuid, order_id text, type text,
                                          occurred_at timestamptz, request_id text, data jsonb)
    WHERE EXISTS (SELECT FROM opened)
), duplicate AS (
    INSERT INTO event_log (event_id, order_id, type, occurred_at, request_id, data)
    SELECT :duplicate_event_id, :order_id, 'order.duplicate', :now, :request_id,
           jsonb_build_object('provider', CAST(:provider AS text), 'event_id', CAST(:event_id AS text))
    FROM claim WHERE claim.first AND NOT EXISTS (SELECT FROM opened)
), new_timers AS (
    INSERT INTO countdown_timers (order_id, kind, reminder_index, deadline_version, fire_at, task_name)
    SELECT t.order_id, t.kind, t.reminder_index, t.deadline_version, t.fire_at, t.task_name
    FROM jsonb_to_recordset(:timers) AS t(order_id text, kind text, reminder_index int,
                                          deadline_version int, fire_at timestamptz, task_name text)
    WHERE EXISTS (SELECT FROM opened)
), new_outbox AS (
    INSERT INTO outbox (kind, order_id, payload)
    SELECT o.kind, o.order_id, o.payload
    FROM jsonb_to_recordset(:outbox) AS o(kind text, order_id text, payload jsonb)
    WHERE EXISTS (SELECT FROM opened)
)
SELECT (SELECT first FROM claim) AS claimed, EXISTS (SELECT FROM opened) AS opened
""").bindparams(*(bindparam(name, type_=type_) for name, type_ in _JSON_ROWS.items()))


def place_order(db: Database, params: dict[str, Any]) -> tuple[bool, bool]:
    """(claimed, opened): whether this delivery is new, whether it opened the session."""
    row = db.atomic(_PLACE_ORDER, params)[0]
    return bool(row.claimed), bool(row.opened)


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


def move_status(
    conn: Connection,
    order_id: str,
    from_statuses: tuple[str, ...],
    to_status: str,
    *,
    fresh_link: bool = False,
    due_by: datetime | None = None,
) -> dict[str, Any] | None:
    """Conditional transition; the session row when it applied, else None.

    `due_by` adds `deadline <= due_by` (the deadline timer's re-check)."""
    terminal = to_status in ("verified", "declined", "expired", "cancelled")
    row = conn.execute(
        text("""
            UPDATE verification_sessions
            SET status = :to_status,
                updated_at = now(),
                decided_at = CASE WHEN :terminal THEN now() ELSE decided_at END,
                veriff_session_id = CASE WHEN :fresh_link THEN NULL ELSE veriff_session_id END,
                veriff_url = CASE WHEN :fresh_link THEN NULL ELSE veriff_url END
            WHERE order_id = :order_id
              AND status = ANY(:from_statuses)
              AND (CAST(:due_by AS timestamptz) IS NULL OR deadline <= :due_by)
            RETURNING order_id, status, deadline, deadline_version
        """),
        {
            "order_id": order_id,
            "from_statuses": list(from_statuses),
            "to_status": to_status,
            "terminal": terminal,
            "fresh_link": fresh_link,
            "due_by": due_by,
        },
    ).mappings().first()
    return dict(row) if row else None


def session_status(conn: Connection, order_id: str) -> str | None:
    return conn.execute(
        text("SELECT status FROM verification_sessions WHERE order_id = :o"), {"o": order_id}
    ).scalar_one_or_none()


def cancel_timers(conn: Connection, order_id: str) -> list[str]:
    """Mark every scheduled timer of the order cancelled; their task names."""
    return list(
        conn.execute(
            text("""
                UPDATE countdown_timers SET state = 'cancelled'
                WHERE order_id = :o AND state = 'scheduled'
                RETURNING task_name
            """),
            {"o": order_id},
        ).scalars()
    )


def write_effects(conn: Connection, events: list[dict], outbox: list[dict]) -> None:
    """Event-log and outbox rows in one statement."""
    conn.execute(
        text("""
            WITH new_events AS (
                INSERT INTO event_log (event_id, order_id, type, occurred_at, request_id, actor, data)
                SELECT e.event_id, e.order_id, e.type, e.occurred_at, e.request_id,
                       coalesce(e.actor, 'system'), e.data
                FROM jsonb_to_recordset(:events) AS e(event_id uuid, order_id text, type text,
                     occurred_at timestamptz, request_id text, actor text, data jsonb)
            )
            INSERT INTO outbox (kind, order_id, payload)
            SELECT o.kind, o.order_id, o.payload
            FROM jsonb_to_recordset(:outbox) AS o(kind text, order_id text, payload jsonb)
        """).bindparams(bindparam("events", type_=JSONB), bindparam("outbox", type_=JSONB)),
        {"events": events, "outbox": outbox},
    )


def to_json(value: Any) -> str:
    return json.dumps(value, default=str)
