"""The verification session's own rows: opening it (`place_order`, under the order's lock when a
store's cancellation may race it), its conditional status moves, its deadline and decision hold,
the provider sessions created for it, and the reads the handlers make of it in their transaction.

Every statement is bound parameters only; a move reports whether it applied, so two racing
deliveries settle on one outcome. The operator console's reads are `shared.db.reads`'."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.engine import Connection

from shared.db.database import Database
from shared.db.schema import sql_in
from shared.domain.model import OPEN, TERMINAL, Email, Event, Status


_PLACE_ORDER = "SELECT new_delivery, new_session FROM place_order($1::jsonb)"


def _plain(value: Any) -> Any:
    """json's `default`: a row (`shared.domain.rows`, a dataclass) as its fields, as orjson
    writes it; anything else (a time, an amount) as its text."""
    return dict(vars(value)) if dataclasses.is_dataclass(value) else str(value)


# The same document, written by json: what orjson refuses (and bench.intake_parts' json variant).
json_argument = json.JSONEncoder(default=_plain, separators=(",", ":")).encode


def argument(params: dict[str, Any]) -> str:
    """`place_order`'s argument: times and amounts as their text (`str`), rows as JSON objects
    of their fields, no spaces.

    orjson writes it in a tenth of json's time (3.2 KB; this one encode was a fifth of the
    handler's own Python time: bench.intake_parts), the same document json writes
    (tests/unit/test_place_order_argument.py), and it writes the rows (dataclasses) itself, with
    no copy of each as a dict first. What orjson refuses (a lone surrogate) json writes, and the
    database refuses it as it always has."""
    try:
        return orjson.dumps(params, default=str, option=orjson.OPT_PASSTHROUGH_DATETIME).decode()
    except orjson.JSONEncodeError:
        return json_argument(params)


def place_order(db: Database, params: dict[str, Any]) -> tuple[bool, bool]:
    """(new delivery, new session), in one prepared statement: see shared.db.functions.PLACE_ORDER."""
    new_delivery, new_session = db.run_prepared(_PLACE_ORDER, argument(params))[0]
    return bool(new_delivery), bool(new_session)


# The first key of this service's per-order advisory locks (the two-key form: its own space,
# apart from the migration's one-key lock).
_ORDER_LOCK_CLASS = 0x5E55


def lock_order(conn: Connection, order_id: str) -> None:
    """Serialise, until this transaction ends, with every other transaction holding this order's
    lock: a store's cancellation and the paid delivery it overtook (`place_order_in`)."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:c, hashtext(:o))"), {"c": _ORDER_LOCK_CLASS, "o": order_id})


def place_order_in(conn: Connection, params: dict[str, Any]) -> tuple[bool, bool]:
    """`place_order` inside the caller's transaction (after `lock_order`)."""
    new_delivery, new_session = conn.execute(
        text("SELECT new_delivery, new_session FROM place_order(CAST(:p AS jsonb))"),
        {"p": argument(params)},
    ).one()
    return bool(new_delivery), bool(new_session)


def cancelled_without_session(conn: Connection, order_id: str) -> bool:
    """Whether the store cancelled an order the service has no session for (a void that came first)."""
    return conn.execute(
        text("""
            SELECT EXISTS (SELECT 1 FROM event_log WHERE order_id = :o AND type = :cancelled)
               AND NOT EXISTS (SELECT 1 FROM verification_sessions WHERE order_id = :o)
        """),
        {"o": order_id, "cancelled": str(Event.CANCEL_IGNORED)},
    ).scalar_one()


def session_status(conn: Connection, order_id: str) -> str | None:
    return conn.execute(
        text("SELECT status FROM verification_sessions WHERE order_id = :o"), {"o": order_id}
    ).scalar_one_or_none()


def move_status(
    conn: Connection,
    order_id: str,
    from_statuses: tuple[str, ...],
    to_status: str,
    *,
    fresh_link: bool = False,
    due_by: datetime | None = None,
    link_sent: bool | None = None,
    decided_at: datetime | None = None,
) -> dict[str, Any] | None:
    """Conditional transition; the session row when it applied, else None.

    `due_by` adds `deadline <= due_by` (the deadline timer's re-check), and the decision
    hold of a submitted session; `link_sent` adds whether the verification link email was
    sent (an expiry needs it); `decided_at` is the provider's decision time. A move to a
    terminal status records `closed_at` by our own clock: retention counts from it."""
    terminal = Status(to_status) in TERMINAL
    row = conn.execute(
        text(f"""
            UPDATE verification_sessions
            SET status = :to_status,
                updated_at = now(),
                decided_at = CASE WHEN :terminal THEN coalesce(CAST(:decided_at AS timestamptz), now())
                                  ELSE decided_at END,
                closed_at = CASE WHEN :terminal THEN now() ELSE closed_at END,
                provider_session_id = CASE WHEN :fresh_link THEN NULL ELSE provider_session_id END,
                provider_url = CASE WHEN :fresh_link THEN NULL ELSE provider_url END,
                decision_hold_until = CASE WHEN :fresh_link THEN NULL ELSE decision_hold_until END
            WHERE order_id = :order_id
              AND status = ANY(:from_statuses)
              AND (CAST(:link_sent AS boolean) IS NULL
                   OR EXISTS (SELECT 1 FROM email_sends e
                              WHERE e.order_id = verification_sessions.order_id
                                AND e.kind = '{Email.LINK}' AND e.state = 'sent') = :link_sent)
              AND (CAST(:due_by AS timestamptz) IS NULL
                   OR (deadline <= :due_by AND coalesce(decision_hold_until, deadline) <= :due_by))
            RETURNING order_id, status, ordered_at, deadline, deadline_version
        """),
        {
            "order_id": order_id,
            "from_statuses": list(from_statuses),
            "to_status": to_status,
            "terminal": terminal,
            "fresh_link": fresh_link,
            "due_by": due_by,
            "link_sent": link_sent,
            "decided_at": decided_at,
        },
    ).mappings().first()
    return dict(row) if row else None


def extend_deadline(conn: Connection, order_id: str, deadline: datetime) -> dict[str, Any] | None:
    """Move an open session's deadline later, bumping its version. The row, or None."""
    row = conn.execute(
        text(f"""
            UPDATE verification_sessions
            SET deadline = :d, deadline_version = deadline_version + 1, updated_at = now()
            WHERE order_id = :o AND {sql_in("status", OPEN)} AND deadline < :d
            RETURNING order_id, status, deadline, deadline_version
        """),
        {"o": order_id, "d": deadline},
    ).mappings().first()
    return dict(row) if row else None


def hold_for_decision(conn: Connection, order_id: str, now: datetime, grace) -> datetime | None:
    """A pending session submitted before its deadline waits for its decision until deadline + grace."""
    return conn.execute(
        text("""
            UPDATE verification_sessions
            SET decision_hold_until = deadline + :grace, updated_at = now()
            WHERE order_id = :o AND status = 'pending' AND deadline > :now
            RETURNING decision_hold_until
        """),
        {"o": order_id, "now": now, "grace": grace},
    ).scalar_one_or_none()


def load_session(conn: Connection, order_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        text("""
            SELECT order_id, customer_email, status, ordered_at, deadline, provider_session_id,
                   provider_url, refund_status, created_at
            FROM verification_sessions WHERE order_id = :o
        """),
        {"o": order_id},
    ).mappings().first()
    return dict(row) if row else None


def set_provider_session(conn: Connection, order_id: str, provider: str, session_id: str,
                         url: str) -> tuple[str, str]:
    """Store the provider session `provider` created unless one is already stored (or the
    customer was erased meanwhile: the provider link goes with the email); the one in force."""
    row = conn.execute(
        text("""
            UPDATE verification_sessions
            SET provider_session_id = :sid, provider_url = :url, provider = :p, updated_at = now()
            WHERE order_id = :o AND provider_session_id IS NULL AND erased_at IS NULL
            RETURNING provider_session_id, provider_url
        """),
        {"o": order_id, "sid": session_id, "url": url, "p": provider},
    ).first()
    if row is not None:
        record_provider_session(conn, order_id, provider, session_id)
    else:
        row = conn.execute(
            text("SELECT provider_session_id, provider_url FROM verification_sessions WHERE order_id = :o"),
            {"o": order_id},
        ).first()
    return row[0], row[1]


def record_provider_session(conn: Connection, order_id: str, provider: str, session_id: str) -> None:
    """Record a provider session `provider` created for the order; the order's earlier ones are superseded."""
    conn.execute(
        text("""
            WITH superseded AS (
                UPDATE provider_sessions SET superseded_at = now()
                WHERE order_id = :o AND session_id <> :sid AND superseded_at IS NULL
            )
            INSERT INTO provider_sessions (order_id, session_id, provider) VALUES (:o, :sid, :p)
            ON CONFLICT (order_id, session_id) DO UPDATE SET superseded_at = NULL, provider = EXCLUDED.provider
        """),
        {"o": order_id, "sid": session_id, "p": provider},
    )


def owner_of_provider_session(conn: Connection, order_ids: Sequence[str], provider: str,
                              session_id: str) -> str | None:
    """Which of `order_ids` `provider`'s session was created for (the first one when several)."""
    return conn.execute(
        text("""
            SELECT order_id FROM provider_sessions
            WHERE session_id = :sid AND provider = :p AND order_id = ANY(:keys)
            ORDER BY array_position(CAST(:keys AS text[]), order_id) LIMIT 1
        """),
        {"sid": session_id, "p": provider, "keys": list(order_ids)},
    ).scalar_one_or_none()


def provider_session_state(conn: Connection, order_id: str, provider: str, session_id: str) -> str:
    """'current', 'superseded', or 'unknown' (a session the service never created for this order
    through `provider`: another provider's session of the same id is not this one)."""
    superseded = conn.execute(
        text("SELECT superseded_at IS NOT NULL FROM provider_sessions "
             "WHERE order_id = :o AND session_id = :sid AND provider = :p"),
        {"o": order_id, "sid": session_id, "p": provider},
    ).scalar_one_or_none()
    if superseded is None:
        return "unknown"
    return "superseded" if superseded else "current"
