"""Every SQL statement the handlers run. Bound parameters only."""

from __future__ import annotations

import functools
import json
from datetime import datetime
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection

from shared.db.database import Database
from shared.db.recordsets import insert_from_json
from shared.domain.rows import EventRow, OutboxRow, StoreActionRow, TimerRow, as_records
from shared.db.schema import REFUND_OWED, sql_in
from shared.domain.messages import TOPIC_EMAILS
from shared.domain.model import (
    EMAILS, OPEN, STORE_ACTION_OPEN, STORE_ACTION_UNDONE, TERMINAL, Email, EmailClaim, Event,
    RefundClaim, Status,
)

_PLACE_ORDER = "SELECT new_delivery, new_session FROM place_order($1::jsonb)"


def place_order(db: Database, params: dict[str, Any]) -> tuple[bool, bool]:
    """(new delivery, new session), in one prepared statement: see shared.db.functions.PLACE_ORDER."""
    new_delivery, new_session = db.run_prepared(_PLACE_ORDER, json.dumps(params, default=str))[0]
    return bool(new_delivery), bool(new_session)


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
                veriff_session_id = CASE WHEN :fresh_link THEN NULL ELSE veriff_session_id END,
                veriff_url = CASE WHEN :fresh_link THEN NULL ELSE veriff_url END,
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
        {"p": json.dumps(params, default=str)},
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


@functools.cache
def _write_effects_statement(kinds: tuple[type, ...]) -> TextClause:
    """One statement inserting the given row kinds (each from its own JSON parameter).

    Only the kinds a unit of work has are named, so a role needs privileges on the
    tables it really writes (the email function never inserts a timer)."""
    inserts = [insert_from_json(kind, f":{_PARAM[kind]}") for kind in kinds]
    *ctes, last = inserts
    with_clause = ("WITH " + ", ".join(f"w{i} AS ({sql})" for i, sql in enumerate(ctes)) + " ") if ctes else ""
    return text(with_clause + last).bindparams(*(bindparam(_PARAM[kind], type_=JSONB) for kind in kinds))


_PARAM = {EventRow: "events", TimerRow: "timers", OutboxRow: "outbox", StoreActionRow: "store_actions"}


def write_effects(conn: Connection, events: Sequence[EventRow], outbox: Sequence[OutboxRow],
                  timers: Sequence[TimerRow] = (), store_actions: Sequence[StoreActionRow] = ()) -> None:
    """Event-log, timer, store-action and outbox rows in one statement (the unit of work's commit)."""
    rows = {EventRow: events, TimerRow: timers, StoreActionRow: store_actions, OutboxRow: outbox}
    kinds = tuple(kind for kind, items in rows.items() if items)
    if kinds:
        conn.execute(_write_effects_statement(kinds), {_PARAM[kind]: as_records(rows[kind]) for kind in kinds})


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


# ---- outbox -------------------------------------------------------------------

# A claim leases due rows: it pushes their `available_at` past the lease and commits at
# once, so no transaction is open while the relay calls out. A relay that dies mid-call
# leaves its rows to be claimed again when the lease ends (delivery is idempotent: task
# names are deterministic and messages carry a stable `message_key`). Two forms, so that
# each has a plan on its own partial index: by order (a request's own rows) and by time.
# Prepared (`Database.run_prepared`): the request's own relay runs both on every webhook.
_CLAIM_DUE = """
    WITH due AS (
        SELECT id FROM outbox
        WHERE delivered_at IS NULL AND dead_at IS NULL AND available_at <= now() {only_orders}
        ORDER BY available_at, id
        LIMIT $1::int
        FOR UPDATE SKIP LOCKED
    )
    UPDATE outbox o SET available_at = now() + make_interval(secs => $2::float8)
    FROM due WHERE o.id = due.id
    RETURNING o.id, o.kind, o.order_id, o.payload, o.attempts
"""
_CLAIM_ALL = _CLAIM_DUE.format(only_orders="")
_CLAIM_ORDERS = _CLAIM_DUE.format(only_orders="AND order_id = ANY($3::text[])")
_CLAIMED = ("id", "kind", "order_id", "payload", "attempts")


def claim_outbox(db: Database, limit: int, lease_seconds: float,
                 order_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """Lease due, undelivered rows (only these orders' when given), oldest first."""
    if order_ids is None:
        rows = db.run_prepared(_CLAIM_ALL, limit, lease_seconds)
    else:
        rows = db.run_prepared(_CLAIM_ORDERS, limit, lease_seconds, list(order_ids))
    return sorted((dict(zip(_CLAIMED, r)) for r in rows), key=lambda r: r["id"])


_RECORD_OUTCOMES = """
    UPDATE outbox o SET
        attempts = o.attempts + CASE WHEN r.outcome = 'released' THEN 0 ELSE 1 END,
        delivered_at = CASE WHEN r.outcome = 'delivered' THEN now() END,
        dead_at = CASE WHEN r.outcome = 'dead' THEN now() END,
        last_error = CASE WHEN r.outcome = 'released' THEN o.last_error ELSE r.error END,
        available_at = CASE WHEN r.outcome = 'delivered' OR r.outcome = 'dead' THEN o.available_at
                            ELSE now() + make_interval(secs => r.retry_in) END
    FROM jsonb_to_recordset($1::jsonb) AS r(id bigint, outcome text, error text, retry_in float8)
    WHERE o.id = r.id AND o.delivered_at IS NULL AND o.dead_at IS NULL
"""


def record_outbox_outcomes(db: Database, outcomes: list[dict[str, Any]]) -> None:
    """One statement for a batch: `{id, outcome, error, retry_in}` per row, where outcome is
    delivered, failed (retry after `retry_in` s), dead (parked, never retried) or released
    (not attempted: due again now)."""
    if outcomes:
        db.run_prepared(_RECORD_OUTCOMES, json.dumps(outcomes))


# ---- subscribers ----------------------------------------------------------------


def load_session(conn: Connection, order_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        text("""
            SELECT order_id, customer_email, status, ordered_at, deadline, veriff_session_id,
                   veriff_url, refund_status, created_at
            FROM verification_sessions WHERE order_id = :o
        """),
        {"o": order_id},
    ).mappings().first()
    return dict(row) if row else None


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


_EMAILS_TO_REDRIVE = text(f"""
    SELECT s.order_id, '{Email.LINK}' AS kind, 0 AS reminder_index
    FROM verification_sessions s
    WHERE s.status = 'pending' AND s.created_at < now() - make_interval(secs => :lease)
      AND NOT EXISTS (SELECT 1 FROM email_sends e
                      WHERE e.order_id = s.order_id AND e.kind = '{Email.LINK}'
                        AND (e.state <> 'sending' OR e.claimed_at >= now() - make_interval(secs => :lease)))
      AND NOT EXISTS (SELECT 1 FROM outbox o
                      WHERE o.order_id = s.order_id AND o.delivered_at IS NULL AND o.dead_at IS NULL
                        AND o.kind = 'publish' AND o.payload->>'topic' = '{TOPIC_EMAILS}')
    UNION
    SELECT e.order_id, e.kind, e.reminder_index
    FROM email_sends e JOIN verification_sessions s ON s.order_id = e.order_id
    WHERE e.state = 'sending' AND e.kind <> '{Email.LINK}' AND e.claimed_at < now() - make_interval(secs => :lease)
      AND s.erased_at IS NULL AND e.kind || ':' || s.status = ANY(:sendable)
    LIMIT :n
""")

# Each email kind with each status it may still go out in (`EmailSpec.sendable_in`), as
# `kind:status`: a claim left `sending` for a session that can no longer take its email (a
# reminder of a session since verified, a customer erased) is not re-driven, since its job would
# be ignored and the claim stay `sending`, enqueued again by every sweep.
_SENDABLE = sorted(f"{kind}:{status}" for kind, spec in EMAILS.items() for status in spec.sendable_in)


def emails_to_redrive(conn: Connection, lease_seconds: float, limit: int) -> list[tuple[str, str, int]]:
    """Emails a crash may have lost: pending sessions whose link was never sent (and is not on
    its way in the outbox), and claims left `sending` past their lease that their session can
    still take."""
    return [tuple(r) for r in conn.execute(_EMAILS_TO_REDRIVE,
                                           {"lease": lease_seconds, "n": limit, "sendable": _SENDABLE})]


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


def set_provider_session(conn: Connection, order_id: str, session_id: str, url: str) -> tuple[str, str]:
    """Store the provider session unless one is already stored (or the customer was erased
    meanwhile: the provider link goes with the email); the one in force."""
    row = conn.execute(
        text("""
            UPDATE verification_sessions SET veriff_session_id = :sid, veriff_url = :url, updated_at = now()
            WHERE order_id = :o AND veriff_session_id IS NULL AND erased_at IS NULL
            RETURNING veriff_session_id, veriff_url
        """),
        {"o": order_id, "sid": session_id, "url": url},
    ).first()
    if row is not None:
        record_provider_session(conn, order_id, session_id)
    else:
        row = conn.execute(
            text("SELECT veriff_session_id, veriff_url FROM verification_sessions WHERE order_id = :o"),
            {"o": order_id},
        ).first()
    return row[0], row[1]


def record_provider_session(conn: Connection, order_id: str, session_id: str) -> None:
    """Record a provider session created for the order; the order's earlier ones are superseded."""
    conn.execute(
        text("""
            WITH superseded AS (
                UPDATE provider_sessions SET superseded_at = now()
                WHERE order_id = :o AND session_id <> :sid AND superseded_at IS NULL
            )
            INSERT INTO provider_sessions (order_id, session_id) VALUES (:o, :sid)
            ON CONFLICT (order_id, session_id) DO UPDATE SET superseded_at = NULL
        """),
        {"o": order_id, "sid": session_id},
    )


def owner_of_provider_session(conn: Connection, order_ids: Sequence[str], session_id: str) -> str | None:
    """Which of `order_ids` the provider session was created for (the first one when several)."""
    return conn.execute(
        text("""
            SELECT order_id FROM provider_sessions WHERE session_id = :sid AND order_id = ANY(:keys)
            ORDER BY array_position(CAST(:keys AS text[]), order_id) LIMIT 1
        """),
        {"sid": session_id, "keys": list(order_ids)},
    ).scalar_one_or_none()


def provider_session_state(conn: Connection, order_id: str, session_id: str) -> str:
    """'current', 'superseded', or 'unknown' (a session the service never created for this order)."""
    superseded = conn.execute(
        text("SELECT superseded_at IS NOT NULL FROM provider_sessions WHERE order_id = :o AND session_id = :sid"),
        {"o": order_id, "sid": session_id},
    ).scalar_one_or_none()
    if superseded is None:
        return "unknown"
    return "superseded" if superseded else "current"


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


def bump_funnel(conn: Connection, day, metric: str) -> None:
    conn.execute(
        text("""
            INSERT INTO funnel_daily (day, metric, count) VALUES (:d, :m, 1)
            ON CONFLICT (day, metric) DO UPDATE SET count = funnel_daily.count + 1
        """),
        {"d": day, "m": metric},
    )


def record_verify_duration(conn: Connection, order_id: str, day, seconds: int, bucket: str) -> None:
    conn.execute(
        text("""
            INSERT INTO verify_durations (order_id, day, seconds, bucket) VALUES (:o, :d, :s, :b)
            ON CONFLICT (order_id) DO NOTHING
        """),
        {"o": order_id, "d": day, "s": seconds, "b": bucket},
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
    outbox): the session is owed that refund until it is settled (`refunds_to_redrive`)."""
    conn.execute(text("UPDATE verification_sessions SET refund_requested_at = now() WHERE order_id = :o"),
                 {"o": order_id})


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
    (`record_refund_request`: an erased customer's cancelled order too, never a store's own
    cancellation), not their status. Each is re-driven at most once a lease (the request's time
    moves on). The reason is the one the first request gave (an underage approval's `underage`,
    an erasure's `erased`), else the status."""
    return [tuple(r) for r in conn.execute(_REFUNDS_TO_REDRIVE, {"lease": lease_seconds, "n": limit,
                                                                 "requested": str(Event.REFUND_REQUESTED)})]


def set_refund_status(conn: Connection, order_id: str, status: str) -> bool:
    """'requested' → the outcome; True when this call recorded it."""
    return conn.execute(
        text("UPDATE verification_sessions SET refund_status = :s, updated_at = now() "
             "WHERE order_id = :o AND refund_status = 'requested' RETURNING 1"),
        {"o": order_id, "s": status},
    ).first() is not None


# ---- store actions (DESIGN.md 4b) ---------------------------------------------------------

# The actions that exclude each other for one order and connector: whichever ran first stands.
_OPPOSITE = {"release": "cancel_and_refund", "cancel_and_refund": "release"}
# What ends an order at the store: a hold never runs once one of these ran (an operator's retry
# of a refused hold after the release would hold the order for good).
_OUTCOMES = ("release", "cancel_and_refund", "note_cancelled")
_RAN = ("leased", "done", "failed")


def claim_store_action(db: Database, order_id: str, action: str, connector: str,
                       lease_seconds: float) -> dict[str, Any]:
    """Claim one store action before calling the store, under the order's lock (so two claims of
    one order are serialised). `outcome` is:

    - `claimed`: this attempt holds the lease (`attempts` is its fencing number); the row's
      `reason` and `requested_at`, the session's `source` and `store_ref`, and `state`, the
      details earlier actions of this order and connector recorded, come with it;
    - `busy`: another attempt holds the lease (or waits out the store's `Retry-After`), or this
      order's hold through this connector is not finished yet (a release or cancel must never
      run before the hold it undoes);
    - `superseded`: the opposite action (release / cancel) already ran, or, for a hold, the
      order's outcome action did: this one is skipped;
    - the final state (`done`, `failed`, `skipped`), or `unknown` (no such action asked for).
    """
    with db.transaction() as conn:
        lock_order(conn, order_id)
        row = conn.execute(text("""
            SELECT state, attempts, reason, requested_at, lease_until > now() AS leased
            FROM store_actions WHERE order_id = :o AND action = :a AND connector = :c FOR UPDATE
        """), {"o": order_id, "a": action, "c": connector}).mappings().first()
        if row is None:
            return {"outcome": "unknown"}
        if row["state"] in ("done", "failed", "skipped"):
            return {"outcome": row["state"]}
        if row["state"] == "leased" and row["leased"]:
            return {"outcome": "busy"}
        others = dict(conn.execute(text("""
            SELECT action, state FROM store_actions WHERE order_id = :o AND connector = :c AND action <> :a
        """), {"o": order_id, "a": action, "c": connector}).all())
        if action != "hold" and others.get("hold") in ("due", "leased"):
            return {"outcome": "busy"}
        superseded = others.get(_OPPOSITE.get(action, "")) in _RAN or (
            action == "hold" and any(others.get(outcome) in _RAN for outcome in _OUTCOMES))
        if superseded:
            conn.execute(text("""
                UPDATE store_actions SET state = 'skipped', error_code = 'superseded', finished_at = now(),
                                         lease_until = NULL
                WHERE order_id = :o AND action = :a AND connector = :c
            """), {"o": order_id, "a": action, "c": connector})
            return {"outcome": "superseded"}
        attempts = conn.execute(text("""
            UPDATE store_actions SET state = 'leased', attempts = attempts + 1,
                                     lease_until = now() + make_interval(secs => :lease)
            WHERE order_id = :o AND action = :a AND connector = :c
            RETURNING attempts
        """), {"o": order_id, "a": action, "c": connector, "lease": lease_seconds}).scalar_one()
        details = conn.execute(text("""
            SELECT detail FROM store_actions
            WHERE order_id = :o AND connector = :c AND state = 'done' ORDER BY finished_at
        """), {"o": order_id, "c": connector}).scalars().all()
        session = conn.execute(text("SELECT source, store_ref FROM verification_sessions WHERE order_id = :o"),
                               {"o": order_id}).mappings().first()
    state: dict[str, Any] = {}
    for detail in details:
        state.update(detail or {})
    return {"outcome": "claimed", "attempts": attempts, "reason": row["reason"],
            "requested_at": row["requested_at"], "state": state,
            "source": session["source"] if session else None,
            "store_ref": session["store_ref"] if session else None}


def finish_store_action(conn: Connection, order_id: str, action: str, connector: str,
                        detail: dict[str, Any]) -> bool:
    """leased -> done, keeping what the store now holds; True when this call recorded it (an
    attempt that took the lease over and finished first recorded it already)."""
    return conn.execute(text("""
        UPDATE store_actions SET state = 'done', detail = CAST(:d AS jsonb), finished_at = now(), lease_until = NULL
        WHERE order_id = :o AND action = :a AND connector = :c AND state = 'leased'
        RETURNING 1
    """), {"o": order_id, "a": action, "c": connector, "d": json.dumps(detail, default=str)}).first() is not None


def fail_store_action(conn: Connection, order_id: str, action: str, connector: str, code: str) -> bool:
    """leased -> failed with the store's error code (never its text); True when this call recorded it."""
    return conn.execute(text("""
        UPDATE store_actions SET state = 'failed', error_code = :code, finished_at = now(), lease_until = NULL
        WHERE order_id = :o AND action = :a AND connector = :c AND state = 'leased'
        RETURNING 1
    """), {"o": order_id, "a": action, "c": connector, "code": code}).first() is not None


def postpone_store_action(db: Database, order_id: str, action: str, connector: str, attempts: int,
                          seconds: float, code: str | None = None) -> None:
    """A call that could not be made now: the claim stays leased `seconds` more (the store's
    Retry-After, or our backoff; 0 gives it back at once), unless another attempt took it over."""
    db.atomic(text("""
        UPDATE store_actions SET lease_until = now() + make_interval(secs => :s),
                                 error_code = coalesce(CAST(:code AS text), error_code)
        WHERE order_id = :o AND action = :a AND connector = :c AND state = 'leased' AND attempts = :n
    """), {"o": order_id, "a": action, "c": connector, "n": attempts, "s": seconds, "code": code})


def skip_store_action(db: Database, order_id: str, action: str, connector: str, code: str) -> None:
    """A due action nobody can take (its connector is no longer configured): recorded, not re-driven."""
    db.atomic(text(f"""
        UPDATE store_actions SET state = 'skipped', error_code = :code, finished_at = now(), lease_until = NULL
        WHERE order_id = :o AND action = :a AND connector = :c AND {sql_in("state", STORE_ACTION_OPEN)}
    """), {"o": order_id, "a": action, "c": connector, "code": code})


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


def release_asked(conn: Connection, order_id: str) -> bool:
    """Whether the store's own connector (not only the outcome webhook) was asked to release the
    order and has not refused: the verified email may then promise shipping."""
    return conn.execute(text(f"""
        SELECT EXISTS (SELECT 1 FROM store_actions a JOIN verification_sessions s ON s.order_id = a.order_id
                       WHERE a.order_id = :o AND a.action = 'release' AND a.connector = s.source
                         AND NOT {sql_in("a.state", STORE_ACTION_UNDONE)})
    """), {"o": order_id}).scalar_one()


def close_store_refund(conn: Connection, order_id: str, outcome: str) -> bool:
    """The store's own `cancel_and_refund` ended: refunded (the store did it) or manual (it refused:
    a person refunds). No refund request was made for such an order (`refunds_to_redrive` leaves
    it to the store action). True once."""
    return conn.execute(text("UPDATE verification_sessions SET refund_status = :s, updated_at = now() "
                             "WHERE order_id = :o AND refund_status IS NULL RETURNING 1"),
                        {"o": order_id, "s": outcome}).first() is not None
