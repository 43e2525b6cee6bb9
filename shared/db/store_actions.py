"""Store actions (DESIGN.md 4b): the claim of one action (hold, release, cancel and refund, note)
for one order and connector before the store is called, under the order's lock, and what the
attempt then records: done with what the store now holds, failed with the store's code, put off
(the store's Retry-After), or skipped. The sweeper's re-drive of unfinished ones is
`shared.db.redrive`'s."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from shared.db.database import Database
from shared.db.schema import sql_in
from shared.db.sessions import lock_order
from shared.domain.model import STORE_ACTION_OPEN, STORE_ACTION_UNDONE


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


def release_asked(conn: Connection, order_id: str) -> bool:
    """Whether the store's own connector (not only the outcome webhook) was asked to release the
    order and has not refused: the verified email may then promise shipping."""
    return conn.execute(text(f"""
        SELECT EXISTS (SELECT 1 FROM store_actions a JOIN verification_sessions s ON s.order_id = a.order_id
                       WHERE a.order_id = :o AND a.action = 'release' AND a.connector = s.source
                         AND NOT {sql_in("a.state", STORE_ACTION_UNDONE)})
    """), {"o": order_id}).scalar_one()
