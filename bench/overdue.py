"""The sweeper's overdue-session query on 1,000,000 sessions (mostly terminal, some pending).

    .venv/bin/python -m bench.overdue [--sessions 1000000] [--pending-percent 2]

Prints the plan (it must use the partial index `verification_sessions_pending_deadline`),
the server's execution time, and the time of the same call the sweeper makes, p50/p99.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from bench._common import database
from shared.db import redrive

INDEX = "verification_sessions_pending_deadline"


def fill(db, sessions: int, pending_percent: float) -> None:
    """Sessions spread over 30 days; `pending_percent` of them pending, the rest terminal."""
    with db.transaction() as conn:
        conn.execute(text("""
            INSERT INTO verification_sessions (order_id, source, customer_email, status, ordered_at, deadline)
            SELECT 'bench-' || i, 'orders', 'b' || i || '@example.com',
                   CASE WHEN random() * 100 < :pending THEN 'pending'
                        ELSE (ARRAY['verified', 'declined', 'expired', 'cancelled'])[1 + mod(i, 4)] END,
                   now() - interval '30 days' * random(),
                   now() - interval '27 days' + interval '30 days' * random()
            FROM generate_series(1, :n) AS i
        """), {"n": sessions, "pending": pending_percent})
    with db.read() as conn:
        conn.execute(text("ANALYZE verification_sessions"))


def overdue_query_cost(db, runs: int = 200) -> dict:
    cutoff = datetime.now(timezone.utc) - timedelta(minutes=5)
    with db.read() as conn:
        plan = "\n".join(conn.execute(text(
            "EXPLAIN (ANALYZE, BUFFERS) SELECT order_id FROM verification_sessions "
            "WHERE status = 'pending' AND deadline <= :c ORDER BY deadline LIMIT 500"), {"c": cutoff}).scalars())
        counts = dict(conn.execute(text("SELECT status, count(*) FROM verification_sessions GROUP BY status")).all())
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        with db.read() as conn:
            found = redrive.overdue_sessions(conn, cutoff, 500)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    execution = [line for line in plan.splitlines() if "Execution Time" in line]
    return {"plan": plan, "uses_partial_index": INDEX in plan, "counts": counts, "found": len(found),
            "execution": execution[0].strip() if execution else "?",
            "p50_ms": statistics.median(timings), "p99_ms": timings[int(len(timings) * 0.99) - 1]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--pending-percent", type=float, default=2.0)
    args = parser.parse_args()
    with database() as (db, _settings):
        started = time.perf_counter()
        fill(db, args.sessions, args.pending_percent)
        print(f"filled {args.sessions:,} sessions in {time.perf_counter() - started:.1f} s")
        result = overdue_query_cost(db)
    print(result["plan"])
    print(f"statuses: {result['counts']}")
    print(f"overdue query: uses {INDEX}: {result['uses_partial_index']}; server {result['execution']}; "
          f"sweeper call (round trip included) p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms "
          f"for {result['found']} rows (target <= 5 ms)")


if __name__ == "__main__":
    main()
