"""Least privilege in the database: one role per deployed function, with grants
on exactly the tables and columns that function's statements use.

The schema's owner (the `python -m shared.db.upgrade` deploy step) creates
the roles (NOLOGIN) and makes each function's login user (its IAM database
user, or the password user) a member. No role may run DDL or own anything;
only the email function and the operator console (staff search by it) read
`customer_email`, and only the operator console reads an operator's note (`operator_notes`). `GRANTS` is the one table;
`apply_grants` makes the database match it exactly (everything else revoked).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection

from shared.db import schema

# Columns that identify a customer: read only where an email is sent.
PERSONAL = ("customer_email", "customer_id")


def _columns(table, *, without: tuple[str, ...] = ()) -> tuple[str, ...]:
    return tuple(c.name for c in table.c if c.name not in without)


SESSION_NON_PERSONAL = _columns(schema.verification_sessions, without=PERSONAL)


@dataclass(frozen=True)
class TableGrant:
    """What one role may do to one table. `select`/`update` list columns,
    `ALL` for every column; `insert` is every column."""

    select: tuple[str, ...] = ()
    insert: bool = False
    update: tuple[str, ...] = ()
    delete: bool = False


ALL = ("*",)

# Every function checks the schema version before serving.
_VERSION = {"schema_version": TableGrant(select=ALL)}
# Writing effects: event-log and outbox rows, and relaying the outbox after commit.
_EFFECTS_AND_RELAY = {
    "event_log": TableGrant(insert=True),
    "outbox": TableGrant(select=ALL, insert=True,
                         update=("delivered_at", "attempts", "last_error", "available_at", "dead_at")),
}
_TRANSITION_COLUMNS = ("status", "updated_at", "decided_at", "closed_at", "provider_session_id", "provider_url",
                       "decision_hold_until", "refund_requested_at")
# A status transition: the conditional UPDATE (whose expiry form asks whether the link
# email was sent), its timers, its idempotency claim, the store action it asks for, and the
# refund it asks for (`refund_requested_at`, which the sweep's re-drive also moves on; the
# refund's outcome, `refund_status`, stays the refund function's and the console's).
_TRANSITIONS = {
    "verification_sessions": TableGrant(select=SESSION_NON_PERSONAL, update=_TRANSITION_COLUMNS),
    "countdown_timers": TableGrant(select=ALL, update=("state", "fired_at")),
    "email_sends": TableGrant(select=("order_id", "kind", "reminder_index", "state", "claimed_at")),
    "store_actions": TableGrant(insert=True),
    # A registered side effect's run (`shared.effects`), written with the move (ON CONFLICT DO NOTHING).
    "effect_runs": TableGrant(insert=True),
}
# The store action's claim, outcome and re-drive (shared.db.store_actions and shared.db.redrive).
_STORE_ACTION_CLAIM = ("state", "attempts", "lease_until", "finished_at", "detail", "error_code")
# A side effect's claim, outcome and retry (shared.db.effect_runs).
_EFFECT_RUN_CLAIM = ("state", "attempts", "lease_until", "finished_at", "error_code")

# Verify once (DESIGN.md 3b): the intake reads a record with the order (FOR SHARE needs an
# UPDATE privilege), records one at an approval and removes it at an underage decline; the
# console the same, and revokes and forgets. Only these two and the sweep (expired records)
# touch the table.
_RECORD_COLUMNS = ("email_key", "source", "session_id", "verified_at", "expires_at")
_VERIFIED_CUSTOMERS = TableGrant(select=ALL, insert=True, update=_RECORD_COLUMNS, delete=True)
_SESSION_KEYS = ("customer_key", "email_key")

GRANTS: dict[str, dict[str, TableGrant]] = {
    "webhook-intake": {
        **_VERSION, **_EFFECTS_AND_RELAY, **_TRANSITIONS,
        "webhook_events": TableGrant(select=ALL, insert=True, update=("deliveries", "last_received_at")),
        # A Lightspeed sale opens nothing when its void came first (order.cancel_ignored in the log).
        "event_log": TableGrant(select=("order_id", "type"), insert=True),
        # Opens sessions (writes the email) but never reads an email back.
        "verification_sessions": TableGrant(select=SESSION_NON_PERSONAL, insert=True,
                                            update=(*_TRANSITION_COLUMNS, *_SESSION_KEYS)),
        "countdown_timers": TableGrant(select=ALL, insert=True, update=("state", "fired_at")),
        # A decision binds only to a provider session the service created.
        "provider_sessions": TableGrant(select=ALL),
        "verified_customers": _VERIFIED_CUSTOMERS,
    },
    "timer-expiry": {**_VERSION, **_EFFECTS_AND_RELAY, **_TRANSITIONS},
    # The sweep also re-drives lost work (it reads email claims and refunds owed) and purges
    # what is past its retention: it erases a closed session's customer email and id (writes
    # them, never reads them) and deletes old delivered outbox rows, message ids and deliveries.
    # An open session RETENTION past its deadline is closed first, its refund left to a person
    # (`refund_status` manual).
    "sweep": {
        **_VERSION, **_EFFECTS_AND_RELAY, **_TRANSITIONS,
        "verification_sessions": TableGrant(
            select=SESSION_NON_PERSONAL,
            # A link never claimed is marked re-driven (`link_redriven_at`), at most once a lease.
            update=(*_TRANSITION_COLUMNS, *PERSONAL, *_SESSION_KEYS, "erased_at", "refund_status",
                    "link_redriven_at")),
        # Retention deletes expired verified-customer records (it reads no key's owner).
        "verified_customers": TableGrant(select=("customer_key", "expires_at"), delete=True),
        "outbox": TableGrant(select=ALL, insert=True, delete=True,
                             update=("delivered_at", "attempts", "last_error", "available_at", "dead_at")),
        "processed_messages": TableGrant(select=ALL, delete=True),
        "webhook_events": TableGrant(select=("id", "last_received_at"), delete=True),
        # Email claims left `sending`, unfinished store actions and side effects' runs are
        # re-driven once a lease.
        "email_sends": TableGrant(select=("order_id", "kind", "reminder_index", "state", "claimed_at", "redriven_at"),
                                  update=("redriven_at",)),
        "store_actions": TableGrant(select=ALL, insert=True, update=("redriven_at",)),
        # Retention deletes the finished ones of erased sessions.
        "effect_runs": TableGrant(select=ALL, insert=True, update=("redriven_at",), delete=True),
        # A re-driven refund gives the reason its request recorded (`underage`, `erased`).
        "event_log": TableGrant(select=("id", "order_id", "type", "data"), insert=True),
        # Its own last run, upserted: ON CONFLICT reads the arbiter and the EXCLUDED columns, so
        # the sweep may read its row (its own numbers, no customer data); it deletes nothing.
        "sweep_runs": TableGrant(select=ALL, insert=True, update=("finished_at", "seconds", "report")),
        # Retention deletes a closed session's operator notes with its customer: by their keys,
        # never reading a note.
        "operator_notes": TableGrant(select=("event_id", "order_id"), delete=True),
        # Retention deletes read-audit entries older than RETENTION (it reads no actor or target).
        "read_audit": TableGrant(select=("id", "at"), delete=True),
    },
    "send-customer-email": {
        **_VERSION, **_EFFECTS_AND_RELAY,
        "verification_sessions": TableGrant(
            select=(*SESSION_NON_PERSONAL, "customer_email"),
            update=("provider_session_id", "provider_url", "provider", "updated_at")),
        "email_sends": TableGrant(select=ALL, insert=True, update=ALL, delete=True),
        "provider_sessions": TableGrant(select=ALL, insert=True, update=("superseded_at", "provider")),
        # The verified email promises shipping only when the store was asked to release the order.
        "store_actions": TableGrant(select=("order_id", "action", "connector", "state")),
    },
    "record-analytics": {
        **_VERSION,
        "processed_messages": TableGrant(insert=True),
        "funnel_daily": TableGrant(select=ALL, insert=True, update=("count",)),
        # ON CONFLICT (order_id) infers its arbiter from the column: PostgreSQL wants it readable.
        "verify_durations": TableGrant(select=("order_id",), insert=True),
    },
    # Refund requests, and store actions: their claims, and the store's refund recorded on the session.
    "request-refund": {
        **_VERSION, **_EFFECTS_AND_RELAY,
        "verification_sessions": TableGrant(select=("order_id", "status", "refund_status", "refund_claimed_at",
                                                    "source", "store_ref"),
                                            update=("refund_status", "refund_claimed_at", "updated_at")),
        "store_actions": TableGrant(select=ALL, update=_STORE_ACTION_CLAIM),
        # Registered side effects: their claims and outcomes (shared.handlers.effects).
        "effect_runs": TableGrant(select=ALL, update=_EFFECT_RUN_CLAIM),
    },
    # Staff see every order (the customer's email included: they search by it) and act
    # through the same transitions, plus extend, resend, close a refund, retry a row.
    "operator-console": {
        **_VERSION, **_EFFECTS_AND_RELAY, **_TRANSITIONS,
        "event_log": TableGrant(select=ALL, insert=True),
        "webhook_events": TableGrant(select=ALL, insert=True, update=("deliveries", "last_received_at")),
        "verification_sessions": TableGrant(
            select=ALL,
            update=(*_TRANSITION_COLUMNS, "deadline", "deadline_version", "refund_status",
                    *PERSONAL, *_SESSION_KEYS, "erased_at")),  # forget erases a customer
        "verified_customers": _VERIFIED_CUSTOMERS,
        "countdown_timers": TableGrant(select=ALL, insert=True, update=("state", "fired_at")),
        "email_sends": TableGrant(select=ALL),
        "provider_sessions": TableGrant(select=ALL),
        "funnel_daily": TableGrant(select=ALL),
        "verify_durations": TableGrant(select=ALL),
        # The order page shows each store action; staff retry a failed one.
        "store_actions": TableGrant(select=ALL, insert=True, update=(*_STORE_ACTION_CLAIM, "redriven_at")),
        # The System page shows the last sweep and its report, and the side effects failed for good.
        "sweep_runs": TableGrant(select=ALL),
        # ... and staff retry a failed side effect (due again, a fresh attempt budget).
        "effect_runs": TableGrant(select=ALL, insert=True, update=(*_EFFECT_RUN_CLAIM, "retried_from", "redriven_at")),
        # Operators' notes (v17): the one role that reads them (the order page, the CLI's
        # `status`); written with the action, deleted by forget.
        "operator_notes": TableGrant(select=ALL, insert=True, delete=True),
        # Every read of customer data is recorded (the CLI's too: it logs in with this role), and
        # the Audit page lists them; no role updates an entry.
        "read_audit": TableGrant(select=ALL, insert=True),
    },
}

# Tables no function role touches: only the owner (local_tasks belongs to
# the local stack, which runs as the owner).
OWNER_ONLY = ("local_tasks",)


def role_name(function: str) -> str:
    """The database role of a deployed function: webhook-intake -> verification_webhook_intake."""
    return "verification_" + function.replace("-", "_")


def _quote(conn: Connection, identifier: str) -> str:
    return conn.dialect.identifier_preparer.quote_identifier(identifier)


def _privileges(conn: Connection, grant: TableGrant) -> list[str]:
    def columns(names: tuple[str, ...]) -> str:
        return "" if names == ALL else " (" + ", ".join(_quote(conn, n) for n in names) + ")"

    privileges = []
    if grant.select:
        privileges.append("SELECT" + columns(grant.select))
    if grant.insert:
        privileges.append("INSERT")
    if grant.update:
        privileges.append("UPDATE" + columns(grant.update))
    if grant.delete:
        privileges.append("DELETE")
    return privileges


def _serial_sequences(conn: Connection, table: str) -> list[str]:
    rows = conn.execute(text("""
        SELECT pg_get_serial_sequence(CAST(:t AS text), a.attname)
        FROM pg_attribute a
        WHERE a.attrelid = CAST(:t AS regclass) AND a.attnum > 0 AND NOT a.attisdropped
    """), {"t": table}).scalars()
    return [name for name in rows if name]


def apply_grants(conn: Connection, members: Mapping[str, list[str]] | None = None) -> None:
    """Create each function's role if missing and make its privileges exactly
    GRANTS (revoking anything else); add `members` (function -> login users)."""
    tables = [t.name for t in schema.metadata.sorted_tables]
    for function, grants in GRANTS.items():
        role = role_name(function)
        quoted = _quote(conn, role)
        conn.execute(text(f"""
            DO $$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                    CREATE ROLE {quoted} NOLOGIN;
                END IF;
            END $$"""))
        conn.execute(text(f"ALTER ROLE {quoted} NOLOGIN NOCREATEDB NOCREATEROLE"))
        conn.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {quoted}"))
        conn.execute(text(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {quoted}"))
        for table, grant in grants.items():
            if table not in tables:
                raise LookupError(f"grants for {function} name an unknown table {table}")
            conn.execute(text(f"GRANT {', '.join(_privileges(conn, grant))} ON {_quote(conn, table)} TO {quoted}"))
            if grant.insert:
                for sequence in _serial_sequences(conn, table):
                    conn.execute(text(f"GRANT USAGE ON SEQUENCE {sequence} TO {quoted}"))
        for user in (members or {}).get(function, []):
            conn.execute(text(f"GRANT {quoted} TO {_quote(conn, user)}"))
    _no_ddl_through_public(conn)


def _no_ddl_through_public(conn: Connection) -> None:
    """What every role gets through PUBLIC: CREATE in schema public (before PostgreSQL 15)
    and TEMP on the database (every version) are revoked, so "no DDL" holds on any version;
    `place_order` gets a fixed search_path (a role that could create objects earlier in its
    path could otherwise put its own in front of ours). Run as the owner; `ALTER FUNCTION`
    keeps the function's body (migrations own it)."""
    conn.execute(text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
    conn.execute(text("""
        DO $$ BEGIN
            EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
        END $$"""))
    conn.execute(text("""
        DO $$ DECLARE f regprocedure; BEGIN
            FOR f IN SELECT p.oid::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                     WHERE n.nspname = 'public' AND p.proname = 'place_order' LOOP
                EXECUTE format('ALTER FUNCTION %s SET search_path = pg_catalog, public, pg_temp', f);
            END LOOP;
        END $$"""))
