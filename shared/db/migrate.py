"""Schema creation and forward migration, safe when instances start together."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable

import sqlalchemy.exc
from sqlalchemy import CheckConstraint, text
from sqlalchemy.engine import Connection

from shared.db import functions
from shared.db.database import Database
from shared.db.schema import event_log, metadata, schema_version
from shared.errors import TransientError, sqlstate

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same in every instance.
_LOCK_ID = 0x5645524946  # "VERIF"


def _create_all(conn: Connection) -> None:
    metadata.create_all(conn, checkfirst=True)
    conn.exec_driver_sql(functions.PLACE_ORDER)


def _outbox_dead_letters(conn: Connection) -> None:
    """v2: outbox rows that can never be delivered are parked (`dead_at`), not retried."""
    conn.exec_driver_sql("ALTER TABLE outbox ADD COLUMN IF NOT EXISTS dead_at timestamptz")
    conn.exec_driver_sql("DROP INDEX IF EXISTS outbox_undelivered")
    conn.exec_driver_sql("CREATE INDEX outbox_undelivered ON outbox (available_at) "
                         "WHERE delivered_at IS NULL AND dead_at IS NULL")


def _provider_sessions_and_decision_hold(conn: Connection) -> None:
    """v3: provider sessions per order (decisions bind to them); expiry waits for a submitted session;
    `place_order` records the actor of order events."""
    conn.exec_driver_sql(functions.PLACE_ORDER)
    conn.exec_driver_sql("ALTER TABLE verification_sessions "
                         "ADD COLUMN IF NOT EXISTS decision_hold_until timestamptz")
    # The table as v3 made it (v22 adds `provider`), in SQL: a database created since v22 got
    # today's table from v1, and its sessions' column has today's name, with no row to copy.
    conn.exec_driver_sql("""
        CREATE TABLE IF NOT EXISTS provider_sessions (
            order_id text NOT NULL REFERENCES verification_sessions (order_id),
            session_id text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            superseded_at timestamptz,
            PRIMARY KEY (order_id, session_id)
        )""")
    if _has_column(conn, "verification_sessions", "veriff_session_id"):
        conn.exec_driver_sql("""
            INSERT INTO provider_sessions (order_id, session_id, created_at)
            SELECT order_id, veriff_session_id, updated_at FROM verification_sessions
            WHERE veriff_session_id IS NOT NULL
            ON CONFLICT DO NOTHING
        """)


def _has_column(conn: Connection, table: str, column: str) -> bool:
    return conn.execute(text("SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = "
                             "current_schema() AND table_name = :t AND column_name = :c)"),
                        {"t": table, "c": column}).scalar_one()
def _leases_and_flat_outbox(conn: Connection) -> None:
    """v4: refund calls hold a lease; the outbox is indexed on undelivered rows only, by due
    time and by order, so that neither claim's cost grows with delivered history; the local
    queue carries messages too (a queue name and CloudEvent headers)."""
    conn.exec_driver_sql("ALTER TABLE local_tasks ADD COLUMN IF NOT EXISTS queue text NOT NULL DEFAULT 'timers'")
    conn.exec_driver_sql("ALTER TABLE local_tasks ADD COLUMN IF NOT EXISTS headers jsonb")
    conn.exec_driver_sql("ALTER TABLE verification_sessions ADD COLUMN IF NOT EXISTS refund_claimed_at timestamptz")
    conn.exec_driver_sql("DROP INDEX IF EXISTS outbox_undelivered")
    conn.exec_driver_sql("CREATE INDEX outbox_undelivered ON outbox (available_at, id) "
                         "WHERE delivered_at IS NULL AND dead_at IS NULL")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS outbox_undelivered_order ON outbox (order_id) "
                         "WHERE delivered_at IS NULL AND dead_at IS NULL")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS verification_sessions_refund_owed "
                         "ON verification_sessions (updated_at) WHERE status IN ('declined', 'expired') "
                         "AND (refund_status IS NULL OR refund_status = 'requested')")


def _place_order_from_rows(conn: Connection) -> None:
    """v5: `place_order` writes its event, timer and outbox rows from the typed row shapes."""
    conn.exec_driver_sql(functions.PLACE_ORDER)


_CONSOLE_INDEXES = (
    "verification_sessions_created ON verification_sessions (created_at DESC, order_id DESC)",
    "verification_sessions_status_created ON verification_sessions (status, created_at DESC, order_id DESC)",
    "verification_sessions_open_deadline ON verification_sessions (deadline, order_id) "
    "WHERE status IN ('pending', 'in_review')",
    "verification_sessions_email ON verification_sessions (customer_email)",
    "verification_sessions_refund_open ON verification_sessions (order_id) "
    "WHERE refund_status IN ('requested', 'manual', 'failed')",
    "outbox_order ON outbox (order_id, id)",
    "outbox_parked ON outbox (order_id) WHERE dead_at IS NOT NULL",
    "email_sends_sending ON email_sends (claimed_at) WHERE state = 'sending'",
)


def _console_indexes(conn: Connection) -> None:
    """v6: the operator console's keyset pages and order page stay index scans at 1M sessions."""
    for index in _CONSOLE_INDEXES:
        conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {index}")
def _version_without_lock(db: Database) -> int:
    try:
        with db.read() as conn:
            return conn.execute(text("SELECT coalesce(max(version), 0) FROM schema_version")).scalar_one()
    except sqlalchemy.exc.ProgrammingError as exc:
        if sqlstate(exc) == "42P01":  # undefined_table: a new database
            return 0
        raise


_RETENTION_INDEXES = (
    "verification_sessions_to_erase ON verification_sessions (coalesce(decided_at, updated_at)) "
    "WHERE erased_at IS NULL AND status IN ('verified', 'declined', 'expired', 'cancelled')",
    "processed_messages_processed_at ON processed_messages (processed_at)",
    "webhook_events_last_received_at ON webhook_events (last_received_at)",
)


def _retention(conn: Connection) -> None:
    """v7: closed sessions lose their customer's email and id after RETENTION (erased_at);
    the purges find their rows by index."""
    conn.exec_driver_sql("ALTER TABLE verification_sessions ALTER COLUMN customer_email DROP NOT NULL")
    conn.exec_driver_sql("ALTER TABLE verification_sessions ADD COLUMN IF NOT EXISTS erased_at timestamptz")
    for index in _RETENTION_INDEXES:
        conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {index}")


# v8's data step, in SQL over a temporary map of old to new keys (`shared.domain.keys`: a
# Lightspeed sale's key is `lightspeed:<sale id>`). Each statement's `m` is that map.
_V8_NEW_KEY = "'lightspeed:' || order_id"
_V8_TASK_NAME = (  # shared.domain.model.task_name, for the new key (a test holds them equal)
    "left(encode(sha256(convert_to(m.new || chr(31) || t.kind || chr(31) || t.reminder_index::text "
    "|| chr(31) || t.deadline_version::text, 'UTF8')), 'hex'), 32) "
    "|| '-' || t.kind || '-' || t.reminder_index::text || '-v' || t.deadline_version::text")
_V8_STEPS = (
    f"CREATE TEMPORARY TABLE v8_keys ON COMMIT DROP AS SELECT order_id AS old, {_V8_NEW_KEY} AS new "
    "FROM verification_sessions WHERE source = 'lightspeed' AND order_id NOT LIKE 'lightspeed:%'",
    "CREATE UNIQUE INDEX ON v8_keys (old)",
    # The session under its new key first, so the rows that reference it can follow.
    "INSERT INTO verification_sessions ({columns}) SELECT m.new, {others} "
    "FROM verification_sessions s JOIN v8_keys m ON s.order_id = m.old",
    "UPDATE provider_sessions t SET order_id = m.new FROM v8_keys m WHERE t.order_id = m.old",
    f"UPDATE countdown_timers t SET order_id = m.new, task_name = {_V8_TASK_NAME} "
    "FROM v8_keys m WHERE t.order_id = m.old",
    "UPDATE email_sends t SET order_id = m.new FROM v8_keys m WHERE t.order_id = m.old",
    "UPDATE verify_durations t SET order_id = m.new FROM v8_keys m WHERE t.order_id = m.old",
    # Every outbox row of the session (undelivered ones carry the key into their task or message).
    "UPDATE outbox t SET order_id = m.new, payload = "
    "jsonb_set(jsonb_set(jsonb_set(jsonb_set(t.payload, '{ordering_key}', to_jsonb(m.new), false), "
    "'{attributes,order_id}', to_jsonb(m.new), false), '{data,order_id}', to_jsonb(m.new), false), "
    "'{body,order_id}', to_jsonb(m.new), false) "
    "FROM v8_keys m WHERE t.order_id = m.old",
    # The session's events move with it, except what a generic delivery caused (a generic order
    # the shared key swallowed as a duplicate: it stays under the generic key) ...
    "UPDATE event_log t SET order_id = m.new FROM v8_keys m "
    "WHERE t.order_id = m.old AND t.data->>'provider' IS DISTINCT FROM 'orders'",
    # ... and every Lightspeed delivery recorded without a session of its own (ignored, stale,
    # a duplicate on a generic order) moves to the sale's key.
    f"UPDATE event_log SET order_id = {_V8_NEW_KEY} "
    "WHERE data->>'provider' = 'lightspeed' AND order_id NOT LIKE 'lightspeed:%'",
    f"UPDATE webhook_events SET order_id = {_V8_NEW_KEY} "
    "WHERE provider = 'lightspeed' AND order_id NOT LIKE 'lightspeed:%'",
    "UPDATE webhook_events t SET order_id = m.new FROM v8_keys m "
    "WHERE t.order_id = m.old AND t.provider NOT IN ('orders', 'lightspeed')",
    "DELETE FROM verification_sessions s USING v8_keys m WHERE s.order_id = m.old",
    # From now on the database refuses a key that does not match its source. NOT VALID: a generic
    # order stored before v8 whose id began with `lightspeed:` (then accepted) is not a reason to
    # stop the deploy; every new or changed row is checked.
    "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'verification_sessions_key_source') "
    "THEN ALTER TABLE verification_sessions ADD CONSTRAINT verification_sessions_key_source "
    "CHECK ((source = 'lightspeed') = (order_id LIKE 'lightspeed:%')) NOT VALID; END IF; END $$",
)


def _source_keys(conn: Connection) -> None:
    """v8: sessions are keyed by (source, order id): a Lightspeed sale's key becomes
    `lightspeed:<sale id>` in every table that names it. Its scheduled timers are moved to
    Cloud Tasks of the new names (the outbox deletes the old tasks and creates the new ones);
    a provider session opened before this keeps its bare vendorData, which the decision's
    provider session id resolves (`intake._session_of`). Idempotent: a key already prefixed is
    left alone (X-Series sale ids are UUIDs, never `lightspeed:...` themselves).

    Frozen: what it writes is spelled here (the outbox rows `Effects.unschedule` and
    `Effects.schedule` wrote at v8), never through today's store or Effects."""
    # The columns the table has when the step runs (v22 renamed two): not today's metadata.
    others = [name for name in conn.execute(text(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = 'verification_sessions' ORDER BY ordinal_position")).scalars() if name != "order_id"]
    scheduled = conn.exec_driver_sql(
        "SELECT order_id, kind, reminder_index, deadline_version, fire_at, task_name FROM countdown_timers "
        "WHERE state = 'scheduled' AND order_id IN "
        "(SELECT order_id FROM verification_sessions WHERE source = 'lightspeed' "
        "AND order_id NOT LIKE 'lightspeed:%')").all()
    for step in _V8_STEPS:
        if step.startswith("INSERT INTO verification_sessions"):
            step = step.format(columns=", ".join(["order_id", *others]),
                               others=", ".join(f"s.{name}" for name in others))
        conn.exec_driver_sql(step)
    outbox = []
    for old, kind, reminder_index, version, fire_at, old_name in scheduled:
        new = f"lightspeed:{old}"
        outbox.append({"kind": "task.delete", "order_id": new, "payload": {"name": old_name}})
        outbox.append({"kind": "task.create", "order_id": new, "payload": {
            "name": _v8_task_name(new, kind, reminder_index, version), "schedule_time": fire_at.isoformat(),
            "body": {"v": 1, "order_id": new, "kind": kind, "reminder_index": reminder_index,
                     "deadline_version": version}}})
    if outbox:
        conn.execute(text("INSERT INTO outbox (kind, order_id, payload) SELECT kind, order_id, payload "
                          "FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(kind text, order_id text, payload jsonb)"),
                     {"rows": json.dumps(outbox)})


def _v8_task_name(order_id: str, kind: str, reminder_index: int, deadline_version: int) -> str:
    """v8's copy of `shared.domain.model.task_name` (the Cloud Tasks id of a timer), as it was."""
    digest = hashlib.sha256(f"{order_id}\x1f{kind}\x1f{reminder_index}\x1f{deadline_version}".encode()).hexdigest()
    return f"{digest[:32]}-{kind}-{reminder_index}-v{deadline_version}"


# The CHECK constraints `schema.one_of` builds from the kind enums (status, timer, outbox, email).
KIND_CHECKS = ("verification_sessions_status", "countdown_timers_kind", "outbox_kind", "email_sends_kind")


def _kind_constraints() -> list[tuple[str, CheckConstraint]]:
    """(table name, constraint) of each kind CHECK, by constraint name."""
    found = [(table.name, constraint) for table in metadata.sorted_tables for constraint in table.constraints
             if isinstance(constraint, CheckConstraint) and constraint.name in KIND_CHECKS]
    return sorted(found, key=lambda pair: str(pair[1].name))


def kind_checks(conn: Connection) -> None:
    """v9: every kind column's CHECK is rebuilt from its enum (`email_sends.kind` gains one).
    Idempotent, so a later enum change appends this step again."""
    for table, constraint in _kind_constraints():
        conn.exec_driver_sql(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {constraint.name}")
        conn.exec_driver_sql(f"ALTER TABLE {table} ADD CONSTRAINT {constraint.name} CHECK ({constraint.sqltext})")


def kinds_fingerprint() -> str:
    """A short digest of what the kind CHECKs allow, as the schema builds them from the enums now."""
    allowed = "\n".join(f"{c.name}: {c.sqltext}" for _, c in _kind_constraints())
    return hashlib.sha256(allowed.encode()).hexdigest()[:12]


def _email_search_any_case(conn: Connection) -> None:
    """v10: the console finds a customer by email whatever its case (a store may send
    John.Smith@Gmail.com, staff type john.smith@gmail.com)."""
    conn.exec_driver_sql("DROP INDEX IF EXISTS verification_sessions_email")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS verification_sessions_email_lower "
                         "ON verification_sessions (lower(customer_email))")


def _attention_from_events(conn: Connection) -> None:
    """v11: the console's "needs attention" finds open sessions whose customer was approved on
    a superseded provider session, and paid orders that opened no session (schema.py's
    `event_log_superseded_approvals`, `event_log_sessionless`)."""
    for index in event_log.indexes:
        if index.name in ("event_log_superseded_approvals", "event_log_sessionless"):
            index.create(conn, checkfirst=True)


# v12's key rule, as it was (it named every namespaced source; v16 replaced it with one that names none).
_V12_KEY_RULE = (
    "(source IN ('lightspeed', 'shopify', 'woocommerce')) = (order_id ~ '^(lightspeed|shopify|woocommerce):') "
    "AND (source NOT IN ('lightspeed', 'shopify', 'woocommerce') OR order_id LIKE source || ':%')")


def _store_sources(conn: Connection) -> None:
    """v12: Shopify and WooCommerce orders are keyed `shopify:<id>` / `woocommerce:<id>` like a
    Lightspeed sale: the key CHECK names every namespaced source. NOT VALID, as v8's: a generic
    order stored earlier with such an id is no reason to stop the deploy; new rows are checked."""
    conn.exec_driver_sql("ALTER TABLE verification_sessions DROP CONSTRAINT IF EXISTS verification_sessions_key_source")
    conn.exec_driver_sql("ALTER TABLE verification_sessions ADD CONSTRAINT verification_sessions_key_source "
                         f"CHECK ({_V12_KEY_RULE}) NOT VALID")


def _store_actions_and_store_facts(conn: Connection) -> None:
    """v13: store actions are durable effects with a claim each (`store_actions`, written with
    the transition); a session keeps the store's own order time and API id; `place_order`
    writes both.
    SQL only (the lead may reorder it): the table as `schema.store_actions` defines it."""
    conn.exec_driver_sql("ALTER TABLE verification_sessions ADD COLUMN IF NOT EXISTS store_ordered_at timestamptz")
    conn.exec_driver_sql("ALTER TABLE verification_sessions ADD COLUMN IF NOT EXISTS store_ref text")
    conn.exec_driver_sql("""
        CREATE TABLE IF NOT EXISTS store_actions (
            order_id text NOT NULL,
            action text NOT NULL,
            connector text NOT NULL,
            reason text,
            requested_at timestamptz NOT NULL,
            state text NOT NULL DEFAULT 'due',
            attempts integer NOT NULL DEFAULT 0,
            lease_until timestamptz,
            redriven_at timestamptz,
            finished_at timestamptz,
            detail jsonb NOT NULL DEFAULT '{}'::jsonb,
            error_code text,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (order_id, action, connector),
            CONSTRAINT store_actions_state CHECK (state IN ('due', 'leased', 'done', 'failed', 'skipped')),
            CONSTRAINT store_actions_action CHECK (action IN ('hold', 'release', 'cancel_and_refund',
                                                              'flag_for_review', 'note_cancelled'))
        )""")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS store_actions_open ON store_actions (created_at) "
                         "WHERE state IN ('due', 'leased')")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS store_actions_failed ON store_actions (order_id) "
                         "WHERE state = 'failed'")
    conn.exec_driver_sql(functions.PLACE_ORDER)


def _verified_customers(conn: Connection) -> None:
    """v14, verify once (DESIGN.md 3b): the verified-customer records, and each session's keyed
    customer hashes (set for orders with a customer id). Self-contained SQL (idempotent: a new
    database got them from v1)."""
    conn.exec_driver_sql("ALTER TABLE verification_sessions ADD COLUMN IF NOT EXISTS customer_key text")
    conn.exec_driver_sql("ALTER TABLE verification_sessions ADD COLUMN IF NOT EXISTS email_key text")
    conn.exec_driver_sql("""
        CREATE TABLE IF NOT EXISTS verified_customers (
            customer_key text PRIMARY KEY,
            email_key text NOT NULL,
            source text NOT NULL,
            session_id text NOT NULL,
            verified_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL
        )""")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS verified_customers_email ON verified_customers (email_key)")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS verified_customers_expires ON verified_customers (expires_at)")


def _sweep_runs(conn: Connection) -> None:
    """v15: the last run of each sweep kind (`sweep_runs`, one row a kind, upserted by the sweep),
    for the console's System page and `operator health`. Self-contained SQL (idempotent: a new
    database got it from v1)."""
    conn.exec_driver_sql("""
        CREATE TABLE IF NOT EXISTS sweep_runs (
            name text PRIMARY KEY,
            finished_at timestamptz NOT NULL,
            seconds numeric NOT NULL,
            report jsonb NOT NULL DEFAULT '{}'::jsonb
        )""")


# v16's key rule (`shared.db.schema.KEY_MATCHES_SOURCE` then; a unit test holds them equal): a
# generic key does not begin like a namespaced one, any other source's key begins with its name.
_V16_KEY_RULE = ("CASE WHEN source = 'orders' THEN order_id !~ '^[a-z][a-z0-9_]*:' "
                 "ELSE source ~ '^[a-z][a-z0-9_]*$' AND starts_with(order_id, source || ':') END")


def _v16_key_rule(legacy_until) -> str:
    """v16's CHECK text: the rule, and, when generic orders stored earlier begin with `<word>:`
    (accepted before v16 unless the word was a source then), those rows by their creation time."""
    if legacy_until is None:
        return _V16_KEY_RULE
    return f"({_V16_KEY_RULE}) OR (source = 'orders' AND created_at <= '{legacy_until.isoformat()}'::timestamptz)"


def _keys_name_no_source(conn: Connection) -> None:
    """v16: the key CHECK names no source, so a new namespaced store needs no migration: a generic
    key may not begin with any lower-case word and `:` (not only a known source's prefix), any
    other source's key is `<source>:<id>`. NOT VALID, as v8's and v12's.

    A CHECK is evaluated again on every UPDATE of a row, NOT VALID or not, so a generic order
    stored before with such an id (`inv:5`, accepted then) would have every later change of its
    session refused. The rule therefore keeps the generic rows created up to the newest such one
    valid, by `created_at` (which no writer sets and nothing updates); a database without any
    gets the plain rule, the one `schema.py` creates."""
    legacy_until = conn.exec_driver_sql(
        "SELECT max(created_at) FROM verification_sessions "
        "WHERE source = 'orders' AND order_id ~ '^[a-z][a-z0-9_]*:'").scalar()
    conn.exec_driver_sql("ALTER TABLE verification_sessions DROP CONSTRAINT IF EXISTS verification_sessions_key_source")
    conn.exec_driver_sql("ALTER TABLE verification_sessions ADD CONSTRAINT verification_sessions_key_source "
                         f"CHECK ({_v16_key_rule(legacy_until)}) NOT VALID")


def _operator_notes(conn: Connection) -> None:
    """v17: operators' notes (`operator_notes`), kept apart from the event log and the events
    topic: an operator action's event carries a reason code only (issue 24). Self-contained SQL
    (idempotent: a new database got the table from v1). Free-text reasons in events recorded
    before this version stay as they are (see docs/RUNBOOK.md, "Reason codes")."""
    conn.exec_driver_sql("""
        CREATE TABLE IF NOT EXISTS operator_notes (
            event_id uuid NOT NULL,
            order_id text NOT NULL,
            note text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT operator_notes_pkey PRIMARY KEY (event_id),
            CONSTRAINT operator_notes_event_id_fkey FOREIGN KEY (event_id) REFERENCES event_log (event_id),
            CONSTRAINT operator_notes_note_length CHECK (char_length(note) BETWEEN 1 AND 200)
        )""")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS operator_notes_order ON operator_notes (order_id)")


def _read_audit(conn: Connection) -> None:
    """v18: the audit trail of reads (`read_audit`, issue 24): who viewed, listed or searched
    which customer data, kept RETENTION. Self-contained SQL (idempotent: a new database got it
    from v1)."""
    conn.exec_driver_sql("""
        CREATE TABLE IF NOT EXISTS read_audit (
            id bigserial PRIMARY KEY,
            at timestamptz NOT NULL DEFAULT now(),
            actor text NOT NULL,
            action text NOT NULL,
            order_id text,
            email_key text,
            detail text NOT NULL DEFAULT ''
        )""")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS read_audit_at ON read_audit (at)")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS read_audit_order ON read_audit (order_id, id) "
                         "WHERE order_id IS NOT NULL")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS read_audit_email ON read_audit (email_key, id) "
                         "WHERE email_key IS NOT NULL")


def _closed_at(conn: Connection) -> None:
    """v19: a session's close time by our own clock (`closed_at`, set by every closing
    transition); retention counts from it, no longer from the provider's `decisionTime`, which
    may lie in the future. A closed row gets its decision time capped at its last update (never
    later than now: the close happened before any later change to the row). The erasure's index
    follows. Self-contained SQL (idempotent: a new database got the column and index from v1)."""
    conn.exec_driver_sql("ALTER TABLE verification_sessions ADD COLUMN IF NOT EXISTS closed_at timestamptz")
    conn.exec_driver_sql("""
        UPDATE verification_sessions
        SET closed_at = least(coalesce(decided_at, updated_at), updated_at, now())
        WHERE closed_at IS NULL AND status IN ('verified', 'declined', 'expired', 'cancelled')""")
    conn.exec_driver_sql("DROP INDEX IF EXISTS verification_sessions_to_erase")
    conn.exec_driver_sql(
        "CREATE INDEX verification_sessions_to_erase ON verification_sessions (coalesce(closed_at, updated_at)) "
        "WHERE erased_at IS NULL AND status IN ('verified', 'declined', 'expired', 'cancelled')")


def _refund_requested_at(conn: Connection) -> None:
    """v21: which sessions are owed a refund is what their transition recorded
    (`refund_requested_at`), not their status, so an erased customer's cancelled order is
    re-driven like a declined one, and a store's own cancellation never is. A session whose
    refund was asked of REFUND_BACKEND before (its `refund.requested` event names no store) and
    is not settled gets the time of that request. Self-contained SQL, idempotent (a new database
    got the column and the index from v1)."""
    conn.exec_driver_sql("ALTER TABLE verification_sessions ADD COLUMN IF NOT EXISTS refund_requested_at timestamptz")
    conn.exec_driver_sql("""
        UPDATE verification_sessions s SET refund_requested_at = r.requested_at
        FROM (SELECT order_id, max(occurred_at) AS requested_at FROM event_log
              WHERE type = 'refund.requested' AND data->>'by' IS NULL
              GROUP BY order_id) r
        WHERE s.order_id = r.order_id AND s.refund_requested_at IS NULL
          AND (s.refund_status IS NULL OR s.refund_status = 'requested')""")
    conn.exec_driver_sql("DROP INDEX IF EXISTS verification_sessions_refund_owed")
    conn.exec_driver_sql("CREATE INDEX verification_sessions_refund_owed ON verification_sessions (refund_requested_at) "
                         "WHERE refund_requested_at IS NOT NULL "
                         "AND (refund_status IS NULL OR refund_status = 'requested')")


def _neutral_provider_columns(conn: Connection) -> None:
    """v22: the ID provider behind a seam (issue 22, item 5): a session's provider columns take
    neutral names (`veriff_session_id` -> `provider_session_id`, `veriff_url` -> `provider_url`),
    and the session and each provider session record which provider (`provider`): every row
    from before is Veriff's, the one provider there was. A new session gets its provider when its
    link is created ('' until then). Self-contained SQL, idempotent (a new database got the columns
    from v1)."""
    for old, new in (("veriff_session_id", "provider_session_id"), ("veriff_url", "provider_url")):
        if _has_column(conn, "verification_sessions", old):
            conn.exec_driver_sql(f"ALTER TABLE verification_sessions RENAME COLUMN {old} TO {new}")
    conn.exec_driver_sql("ALTER TABLE verification_sessions ADD COLUMN IF NOT EXISTS provider text")
    conn.exec_driver_sql("UPDATE verification_sessions SET provider = 'veriff' WHERE provider IS NULL")
    conn.exec_driver_sql("ALTER TABLE verification_sessions ALTER COLUMN provider SET DEFAULT ''")
    conn.exec_driver_sql("ALTER TABLE verification_sessions ALTER COLUMN provider SET NOT NULL")
    conn.exec_driver_sql("ALTER TABLE provider_sessions ADD COLUMN IF NOT EXISTS provider text")
    conn.exec_driver_sql("UPDATE provider_sessions SET provider = 'veriff' WHERE provider IS NULL")
    conn.exec_driver_sql("ALTER TABLE provider_sessions ALTER COLUMN provider SET NOT NULL")


def _effect_runs(conn: Connection) -> None:
    """v23: the generic durable claim of a
    registered side effect (`effect_runs`, one row per order and effect; `shared.effects`). No
    CHECK names an effect: a new one needs no migration (the registry checks names in code).
    Self-contained SQL, idempotent (a new database got the table and indexes from v1)."""
    conn.exec_driver_sql("""
        CREATE TABLE IF NOT EXISTS effect_runs (
            order_id text NOT NULL,
            effect text NOT NULL,
            reason text,
            state text NOT NULL DEFAULT 'due',
            attempts integer NOT NULL DEFAULT 0,
            retried_from integer NOT NULL DEFAULT 0,
            lease_until timestamptz,
            redriven_at timestamptz,
            error_code text,
            created_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz,
            CONSTRAINT effect_runs_pkey PRIMARY KEY (order_id, effect),
            CONSTRAINT effect_runs_state CHECK (state IN ('due', 'leased', 'done', 'failed'))
        )""")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS effect_runs_open ON effect_runs (created_at) "
                         "WHERE state IN ('due', 'leased')")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS effect_runs_failed ON effect_runs (effect) "
                         "WHERE state = 'failed'")


def _email_redriven_at(conn: Connection) -> None:
    """v24: an email claim records when the sweeper last re-drove it (`email_sends.redriven_at`),
    so a claim left `sending` past its lease is re-driven at most once a lease, not on every sweep
    while its message waits in the queue. Self-contained SQL, idempotent (a new database got the
    column from v1)."""
    conn.exec_driver_sql("ALTER TABLE email_sends ADD COLUMN IF NOT EXISTS redriven_at timestamptz")


def _link_redriven_at(conn: Connection) -> None:
    """v25: a pending session records when the sweeper last re-drove its link email, never claimed
    (`verification_sessions.link_redriven_at`), so it is re-enqueued at most once a lease, not on
    every sweep once the relay delivered the last copy while the email function is down.
    Self-contained SQL, idempotent (a new database got the column from v1)."""
    conn.exec_driver_sql("ALTER TABLE verification_sessions ADD COLUMN IF NOT EXISTS link_redriven_at timestamptz")


# Version -> the `kinds_fingerprint()` its `kind_checks` step was appended for. The newest must equal
# today's (a unit test holds it): a new kind cannot ship without the step that lets existing
# databases store it.
KIND_CHECKS_AT = {9: "1302f4b4f8ab", 20: "eaa47d2bf992"}  # v20: the `returning` email (verify once)


# Index i holds the step that brings the schema to version i + 1. Append only: a
# database at version n runs steps n+1.. ; a new one runs them all (v1 creates every
# table as `schema.py` defines it now, so later steps must be idempotent).
MIGRATIONS: list[Callable[[Connection], None]] = [
    _create_all, _outbox_dead_letters, _provider_sessions_and_decision_hold, _leases_and_flat_outbox,
    _place_order_from_rows, _console_indexes, _retention, _source_keys, kind_checks, _email_search_any_case,
    _attention_from_events, _store_sources, _store_actions_and_store_facts, _verified_customers,
    _sweep_runs, _keys_name_no_source, _operator_notes, _read_audit, _closed_at, kind_checks,
    _refund_requested_at, _neutral_provider_columns, _effect_runs, _email_redriven_at,
    _link_redriven_at,
]
LATEST = len(MIGRATIONS)


class SchemaOutdated(TransientError):
    """The database's schema is older than this code: the deploy's schema step has not run."""


def require_schema(db: Database) -> int:
    """The schema version, when it is the one this code was written for; else SchemaOutdated
    naming both versions and the command that brings it up to date. Functions never
    migrate: their database roles cannot run DDL (the deploy step owns the schema)."""
    current = _version_without_lock(db)
    if current < LATEST:
        raise SchemaOutdated(
            f"the database schema is at version {current}, this code needs {LATEST}: "
            "run the schema step (python -m shared.db.upgrade; deploy.sh runs it first)",
            component="schema")
    return current


def ensure_schema(db: Database) -> int:
    """Bring the schema to LATEST under an advisory lock; return the version.

    The deploy's schema step (`shared.db.upgrade`) and the local stack's start call this, as
    the schema's owner. A schema already at LATEST is seen in one autocommit read, without
    the lock's transaction (versions only ever go up)."""
    current = _version_without_lock(db)
    if current >= LATEST:
        return current
    with db.transaction() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        schema_version.create(conn, checkfirst=True)
        current = conn.execute(text("SELECT coalesce(max(version), 0) FROM schema_version")).scalar_one()
        for version in range(current + 1, LATEST + 1):
            MIGRATIONS[version - 1](conn)
            conn.execute(schema_version.insert().values(version=version))
            log.info("schema migrated", extra={"labels": {"schema_version": str(version)}})
    return max(current, LATEST)
