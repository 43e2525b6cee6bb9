"""The outbox: the side effects a unit of work commits with its state change (`write_effects`:
its event-log, timer, store-action and outbox rows in one statement), and the relay's lease of
due rows and record of what became of them.

A relay holds no transaction while it calls out (its claim commits at once) and delivery is
idempotent, so a relay that dies mid-call costs a repeat, never a loss."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import TextClause

from shared.db.database import Database
from shared.db.recordsets import insert_from_json
from shared.domain.rows import EffectRunRow, EventRow, OutboxRow, StoreActionRow, TimerRow, as_records


@functools.cache
def _write_effects_statement(kinds: tuple[type, ...]) -> TextClause:
    """One statement inserting the given row kinds (each from its own JSON parameter).

    Only the kinds a unit of work has are named, so a role needs privileges on the
    tables it really writes (the email function never inserts a timer)."""
    inserts = [insert_from_json(kind, f":{_PARAM[kind]}") for kind in kinds]
    *ctes, last = inserts
    with_clause = ("WITH " + ", ".join(f"w{i} AS ({sql})" for i, sql in enumerate(ctes)) + " ") if ctes else ""
    return text(with_clause + last).bindparams(*(bindparam(_PARAM[kind], type_=JSONB) for kind in kinds))


_PARAM = {EventRow: "events", TimerRow: "timers", OutboxRow: "outbox", StoreActionRow: "store_actions",
          EffectRunRow: "effect_runs"}


def write_effects(conn: Connection, events: Sequence[EventRow], outbox: Sequence[OutboxRow],
                  timers: Sequence[TimerRow] = (), store_actions: Sequence[StoreActionRow] = (),
                  effect_runs: Sequence[EffectRunRow] = ()) -> None:
    """Event-log, timer, store-action, side-effect-run and outbox rows in one statement (the unit
    of work's commit)."""
    rows = {EventRow: events, TimerRow: timers, StoreActionRow: store_actions, EffectRunRow: effect_runs,
            OutboxRow: outbox}
    kinds = tuple(kind for kind, items in rows.items() if items)
    if kinds:
        conn.execute(_write_effects_statement(kinds), {_PARAM[kind]: as_records(rows[kind]) for kind in kinds})


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
