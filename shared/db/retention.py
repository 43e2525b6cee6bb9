"""What is kept and for how long: each kind of row past its retention, erased or deleted in
bounded batches. Every batch is one autocommit statement (no long transaction, no lock held
between batches), so a purge never stands in the way of the traffic it runs beside.

`eligible` counts what a purge would touch (the operator's `purge --dry-run`).

A closed session's personal data (the customer's email, id and keys, and `provider_url`, a bearer
link to their provider session) is erased RETENTION after it closed, counted from `closed_at`:
our own clock at the closing transition, never the provider's `decisionTime` (which may lie in
the future). An open session is closed first when RETENTION has passed since its deadline
(`open_past_retention`; the transition and its erasure are `shared.handlers.retention`'s), so
no session keeps a customer's data longer than RETENTION past its deadline, whatever its status.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import TextClause

from shared.db.database import Database
from shared.db.schema import sql_in
from shared.domain.model import EFFECT_OPEN, OPEN, TERMINAL, RefundStatus


@dataclass(frozen=True)
class Purge:
    name: str
    count: TextClause  # rows eligible now, given :cutoff
    batch: TextClause  # erase or delete up to :n of them, given :cutoff; returns one row each


def _purge(name: str, table: str, key: str, where: str, action: str) -> Purge:
    chosen = f"SELECT {key} FROM {table} WHERE {where}"
    return Purge(
        name,
        text(f"SELECT count(*) FROM {table} WHERE {where}"),
        text(f"{action.format(table=table, key=key)} WHERE ({key}) IN ({chosen} LIMIT :n) RETURNING 1"),
    )


_CLOSED = sql_in("status", TERMINAL)

# The customer's email, id and provider link, once a session closed longer ago than RETENTION
# (analytics, events and the session's story stay; they carry no personal data). `updated_at`
# stands in for a closed row without `closed_at` (none: every closing transition sets it).
ERASE_CUSTOMERS = _purge(
    "customers erased", "verification_sessions", "order_id",
    f"{_CLOSED} AND erased_at IS NULL AND coalesce(closed_at, updated_at) < :cutoff",
    "UPDATE {table} SET customer_email = NULL, customer_id = NULL, customer_key = NULL, email_key = NULL, "
    "provider_url = NULL, erased_at = now()")

_OPEN_PAST = f"{sql_in('status', OPEN)} AND deadline < :cutoff"
_OPEN_PAST_RETENTION = text(f"""
    SELECT order_id FROM verification_sessions WHERE {_OPEN_PAST}
    ORDER BY deadline LIMIT :n FOR UPDATE SKIP LOCKED
""")
_COUNT_OPEN_PAST_RETENTION = text(f"SELECT count(*) FROM verification_sessions WHERE {_OPEN_PAST}")
OPEN_CLOSED = "open sessions closed and erased"  # the preview's and the report's name for them


def open_past_retention(conn: Connection, cutoff, limit: int) -> list[str]:
    """Up to `limit` open sessions whose deadline is before `cutoff` (now - RETENTION), locked
    until the caller's transaction ends (another sweep skips them)."""
    return list(conn.execute(_OPEN_PAST_RETENTION, {"cutoff": cutoff, "n": limit}).scalars())


def refund_to_a_person(conn: Connection, order_id: str) -> bool:
    """A session retention closed owes its refund, made by a person (`manual`: the console's
    "needs attention"), never by a request of ours. True when this call recorded it."""
    return conn.execute(
        text(f"UPDATE verification_sessions SET refund_status = '{RefundStatus.MANUAL}', updated_at = now() "
             "WHERE order_id = :o AND refund_status IS NULL RETURNING 1"),
        {"o": order_id}).first() is not None


def open_past_retention_count(db: Database, cutoff) -> int:
    with db.read() as conn:
        return conn.execute(_COUNT_OPEN_PAST_RETENTION, {"cutoff": cutoff}).scalar_one()


# Operators' notes (v17) go with the customer: the notes of a session the pass above erases, or
# whose customer was erased already (when retention closed it open; forget deletes its own at
# once). A note may name the customer.
ERASE_OPERATOR_NOTES = _purge(
    "operator notes erased", "operator_notes", "event_id",
    "order_id IN (SELECT order_id FROM verification_sessions WHERE erased_at IS NOT NULL "
    f"OR ({_CLOSED} AND coalesce(closed_at, updated_at) < :cutoff))",
    "DELETE FROM {table}")

# Registered side effects' finished runs (`effect_runs` done or failed) go with their session's
# customer, as its notes do: a closed session's past RETENTION, or one whose customer was erased
# already. A run still due or leased stays (the performer or the sweep finishes it first).
FINISHED_EFFECT_RUNS = _purge(
    "finished side-effect runs", "effect_runs", "order_id, effect",
    f"NOT {sql_in('state', EFFECT_OPEN)} AND order_id IN (SELECT order_id FROM verification_sessions "
    f"WHERE erased_at IS NOT NULL OR ({_CLOSED} AND coalesce(closed_at, updated_at) < :cutoff))",
    "DELETE FROM {table}")

# Verify once's records past REVERIFY_AFTER (their cutoff is now): a returning customer asks again.
EXPIRED_CUSTOMERS = _purge("verified customers expired", "verified_customers", "customer_key",
                           "expires_at <= :cutoff", "DELETE FROM {table}")
DELIVERED_OUTBOX = _purge("delivered outbox rows", "outbox", "id", "delivered_at < :cutoff",
                          "DELETE FROM {table}")
PROCESSED_MESSAGES = _purge("processed message ids", "processed_messages", "subscriber, message_id",
                            "processed_at < :cutoff", "DELETE FROM {table}")
WEBHOOK_EVENTS = _purge("webhook deliveries", "webhook_events", "id", "last_received_at < :cutoff",
                        "DELETE FROM {table}")
# The audit trail of reads (who viewed or searched what), kept RETENTION like the customer data it is about.
READ_AUDIT = _purge("read audit entries", "read_audit", "id", "at < :cutoff", "DELETE FROM {table}")
LOCAL_DELIVERIES = _purge("finished local deliveries", "local_tasks", "name",
                          "coalesce(done_at, deleted_at) < :cutoff", "DELETE FROM {table}")


def purge_batch(db: Database, purge: Purge, cutoff, limit: int) -> int:
    """One batch: how many rows it erased or deleted (fewer than `limit`: nothing is left)."""
    return len(db.atomic(purge.batch, {"cutoff": cutoff, "n": limit}))


def eligible(db: Database, purge: Purge, cutoff) -> int:
    with db.read() as conn:
        return conn.execute(purge.count, {"cutoff": cutoff}).scalar_one()


def cutoffs(now, retention: timedelta, webhook_retention: timedelta, replay_retention: timedelta,
            *, local: bool) -> list[tuple[Purge, object]]:
    """Each purge with the time before which its rows go."""
    plan = [(ERASE_CUSTOMERS, now - retention), (ERASE_OPERATOR_NOTES, now - retention),
            (FINISHED_EFFECT_RUNS, now - retention), (DELIVERED_OUTBOX, now - replay_retention),
            (PROCESSED_MESSAGES, now - replay_retention), (WEBHOOK_EVENTS, now - webhook_retention),
            (EXPIRED_CUSTOMERS, now), (READ_AUDIT, now - retention)]
    if local:  # the local stack's queue; in the cloud, Cloud Tasks and Pub/Sub forget by themselves
        plan.append((LOCAL_DELIVERIES, now - replay_retention))
    return plan
