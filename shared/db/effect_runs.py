"""Registered side effects' runs (`effect_runs`, `shared.effects`): the claim of one effect for one
order before `perform` (a lease, `attempts` its fencing number), what the attempt then records
(done, failed with its code, put off for a retry), the sweeper's re-drive of unfinished runs, and
the failed runs the health numbers count. The rows themselves are written with their transition
(`outbox.write_effects`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from shared.db.database import Database
from shared.db.schema import sql_in
from shared.domain.model import EFFECT_OPEN, EffectState


def claim_effect_run(db: Database, order_id: str, effect: str, lease_seconds: float) -> dict[str, Any]:
    """Claim one effect's run before performing it (the row locked while it is decided).
    `outcome` is:

    - `claimed`: this attempt holds the lease; `attempts` is its fencing number (and, less
      `retried_from`, its place in the attempt budget), with the row's
      `reason` and the session's `source`, `store_ref` and `status`;
    - `busy`: another attempt holds the lease, or a failed attempt's backoff has not passed;
    - `done` or `failed`: how it ended; `unknown`: no such run was asked for.
    """
    with db.transaction() as conn:
        row = conn.execute(text("""
            SELECT state, reason, retried_from, lease_until > now() AS leased
            FROM effect_runs WHERE order_id = :o AND effect = :e FOR UPDATE
        """), {"o": order_id, "e": effect}).mappings().first()
        if row is None:
            return {"outcome": "unknown"}
        if row["state"] in (EffectState.DONE, EffectState.FAILED):
            return {"outcome": row["state"]}
        if row["state"] == EffectState.LEASED and row["leased"]:
            return {"outcome": "busy"}
        attempts = conn.execute(text("""
            UPDATE effect_runs SET state = 'leased', attempts = attempts + 1,
                                   lease_until = now() + make_interval(secs => :lease)
            WHERE order_id = :o AND effect = :e
            RETURNING attempts
        """), {"o": order_id, "e": effect, "lease": lease_seconds}).scalar_one()
        session = conn.execute(text("SELECT source, store_ref, status FROM verification_sessions WHERE order_id = :o"),
                               {"o": order_id}).mappings().first() or {}
    return {"outcome": "claimed", "attempts": attempts, "retried_from": row["retried_from"], "reason": row["reason"],
            "source": session.get("source"), "store_ref": session.get("store_ref"), "status": session.get("status")}


def finish_effect_run(conn: Connection, order_id: str, effect: str, attempts: int) -> bool:
    """leased -> done, by the attempt holding the lease (`attempts`); True when this call recorded it
    (an attempt whose lease another took over records nothing)."""
    return conn.execute(text("""
        UPDATE effect_runs SET state = 'done', finished_at = now(), lease_until = NULL, error_code = NULL
        WHERE order_id = :o AND effect = :e AND state = 'leased' AND attempts = :n
        RETURNING 1
    """), {"o": order_id, "e": effect, "n": attempts}).first() is not None


def fail_effect_run(conn: Connection, order_id: str, effect: str, attempts: int, code: str) -> bool:
    """leased -> failed with its code (never an error's text), by the attempt holding the lease;
    True when this call recorded it."""
    return conn.execute(text("""
        UPDATE effect_runs SET state = 'failed', error_code = :code, finished_at = now(), lease_until = NULL
        WHERE order_id = :o AND effect = :e AND state = 'leased' AND attempts = :n
        RETURNING 1
    """), {"o": order_id, "e": effect, "n": attempts, "code": code}).first() is not None


def postpone_effect_run(db: Database, order_id: str, effect: str, attempts: int, seconds: float,
                        code: str) -> None:
    """A failed attempt worth retrying: the claim stays leased `seconds` more (its backoff), with
    the failure's code, unless another attempt took it over."""
    db.atomic(text("""
        UPDATE effect_runs SET lease_until = now() + make_interval(secs => :s), error_code = :code
        WHERE order_id = :o AND effect = :e AND state = 'leased' AND attempts = :n
    """), {"o": order_id, "e": effect, "n": attempts, "s": seconds, "code": code})


_TO_REDRIVE = text(f"""
    UPDATE effect_runs r SET redriven_at = now()
    FROM (SELECT order_id, effect FROM effect_runs
          WHERE {sql_in("state", EFFECT_OPEN)} AND effect = ANY(:effects)
            AND coalesce(lease_until, created_at + make_interval(secs => :lease)) < now()
            AND (redriven_at IS NULL OR redriven_at < now() - make_interval(secs => :lease))
          ORDER BY created_at LIMIT :n
          FOR UPDATE SKIP LOCKED) due
    WHERE r.order_id = due.order_id AND r.effect = due.effect
    RETURNING r.order_id, r.effect
""")


def effect_runs_to_redrive(conn: Connection, effects: list[str], lease_seconds: float,
                           limit: int) -> list[tuple[str, str]]:
    """(order, effect) of registered effects' runs a crash or a lost message left unfinished: due a
    lease after they were asked for, or leased past their lease (an attempt that died, or a
    retry's backoff that passed). Each is re-driven at most once a lease."""
    if not effects:
        return []
    return [tuple(r) for r in conn.execute(_TO_REDRIVE, {"effects": list(effects), "lease": lease_seconds,
                                                         "n": limit})]


def effects_failed(conn: Connection) -> dict[str, int]:
    """Runs that failed for good, by effect (the health numbers)."""
    rows = conn.execute(text(
        "SELECT effect, count(*) FROM effect_runs WHERE state = 'failed' GROUP BY effect ORDER BY effect")).all()
    return {effect: int(count) for effect, count in rows}


def retry_effect_run(conn: Connection, order_id: str, effect: str) -> dict[str, Any] | None:
    """An operator's retry: a failed run becomes due again with a fresh attempt budget
    (`retried_from` = `attempts`, its code and times cleared; `attempts`, the fencing number, keeps
    growing, so an attempt of before the retry still running can never record over a later one).
    The failed attempt's `attempts` and `error_code`, or None when no failed run of that effect is
    there (unknown, or due, leased or done: nothing to retry). The retry's own message performs it;
    `redriven_at` now keeps the sweep from re-driving it within a lease."""
    row = conn.execute(text("""
        SELECT attempts, error_code FROM effect_runs
        WHERE order_id = :o AND effect = :e AND state = 'failed' FOR UPDATE
    """), {"o": order_id, "e": effect}).mappings().first()
    if row is None:
        return None
    conn.execute(text("""
        UPDATE effect_runs SET state = 'due', retried_from = attempts, error_code = NULL, finished_at = NULL,
                               lease_until = NULL, redriven_at = now()
        WHERE order_id = :o AND effect = :e
    """), {"o": order_id, "e": effect})
    return dict(row)


def effect_state(conn: Connection, order_id: str, effect: str) -> str | None:
    """One run's state, or None when that effect was never asked for this order."""
    return conn.execute(text("SELECT state FROM effect_runs WHERE order_id = :o AND effect = :e"),
                        {"o": order_id, "e": effect}).scalar_one_or_none()
