"""The operator console's sessions list on 1,000,000 sessions: first and deep pages, every filter.

    .venv/bin/python -m bench.console_list [--sessions 1000000]

Prints each filter's plan (index scans expected, no sequential scan of the sessions) and the
time of the call the console makes, p50/p99, first page against a page half a million rows
deep, as ratios measured in this run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from bench._common import database
from shared.db import reads

FILTERS = {
    "newest": reads.SessionFilter(),
    "status=in_review": reads.SessionFilter(status="in_review"),
    "due within 24h": reads.SessionFilter(due_within=timedelta(hours=24)),
    "overdue": reads.SessionFilter(overdue=True),
    "needs attention": reads.SessionFilter(attention=True),
}


BATCH = 20_000  # rows per statement: each stays well inside the driver's 5 s socket timeout


def fill(db, sessions: int) -> None:
    """Sessions over 60 days: 3 % pending, 0.5 % in review, the rest closed; 0.2 % with a manual refund
    open; an event each, and 0.05 % an approval on a superseded provider session; one stale order
    (no session) per 5,000; a few hundred parked outbox rows."""
    for first in range(1, sessions + 1, BATCH):
        with db.transaction() as conn:
            conn.execute(text("""
            INSERT INTO verification_sessions (order_id, source, customer_email, status, ordered_at, deadline,
                                               refund_status, created_at)
            SELECT 'bench-' || i, 'orders', 'b' || i || '@example.com',
                   CASE WHEN r < 3 THEN 'pending' WHEN r < 3.5 THEN 'in_review'
                        ELSE (ARRAY['verified', 'declined', 'expired', 'cancelled'])[1 + mod(i, 4)] END,
                   t, t + interval '72 hours',
                   CASE WHEN r > 99.8 THEN 'manual' END, t
            FROM (SELECT i, random() * 100 AS r, now() - interval '60 days' * random() AS t
                  FROM generate_series(CAST(:a AS int), CAST(:b AS int)) AS i) g
            """), {"a": first, "b": min(first + BATCH - 1, sessions)})
            # Each session's first event, and on one in 2,000 an approval its superseded
            # provider session got (needs attention while the session is open).
            conn.execute(text("""
            INSERT INTO event_log (event_id, order_id, type, data)
            SELECT gen_random_uuid(), 'bench-' || i, 'order.received', '{}'::jsonb
            FROM generate_series(CAST(:a AS int), CAST(:b AS int)) AS i
            UNION ALL
            SELECT gen_random_uuid(), 'bench-' || i, 'verification.decision_ignored',
                   '{"decision": "approved", "age_check": "passed", "reason": "superseded_session"}'::jsonb
            FROM generate_series(CAST(:a AS int), CAST(:b AS int)) AS i WHERE mod(i, 2000) = 0
            UNION ALL
            SELECT gen_random_uuid(), 'stale-' || i, 'order.stale', '{}'::jsonb
            FROM generate_series(CAST(:a AS int), CAST(:b AS int)) AS i WHERE mod(i, 5000) = 0
            """), {"a": first, "b": min(first + BATCH - 1, sessions)})
    with db.transaction() as conn:
        conn.execute(text("""
            INSERT INTO outbox (kind, order_id, payload, dead_at, attempts, last_error)
            SELECT 'publish', 'bench-' || (i * 2311), '{}'::jsonb, now(), 1, 'InvalidArgument'
            FROM generate_series(1, 300) AS i
        """))
    with db.read() as conn:
        conn.execute(text("ANALYZE"))


def explain(conn, f: reads.SessionFilter, now: datetime, statement=None) -> str:
    statement = reads.sessions_query(f, now) if statement is None else statement
    compiled = statement.compile(conn, compile_kwargs={"render_postcompile": True})
    params = tuple(compiled.params[name] for name in compiled.positiontup)
    return "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + compiled.string, params))


def timed(db, f: reads.SessionFilter, now: datetime, runs: int) -> tuple[float, float, int]:
    timings, found = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        with db.read() as conn:
            rows, _ = reads.list_sessions(conn, f, now)
        timings.append((time.perf_counter() - started) * 1000)
        found = len(rows)
    timings.sort()
    return statistics.median(timings), timings[max(int(len(timings) * 0.99) - 1, 0)], found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--plans", action="store_true", help="print every plan in full")
    args = parser.parse_args()
    with database() as (db, _settings):
        started = time.perf_counter()
        fill(db, args.sessions)
        print(f"filled {args.sessions:,} sessions in {time.perf_counter() - started:.1f} s")
        now = datetime.now(timezone.utc)
        with db.read() as conn:
            middle = conn.execute(text("SELECT created_at, order_id FROM verification_sessions "
                                       "ORDER BY created_at DESC, order_id DESC OFFSET :n LIMIT 1"),
                                  {"n": args.sessions // 2}).mappings().one()
        deep = reads.SessionFilter(after=reads._cursor(dict(middle), by_deadline=False))
        email = reads.SessionFilter(query=f"B{args.sessions // 3}@Example.com")
        report = {}
        for name, f in {**FILTERS, "email, any case": email, f"newest, page at row {args.sessions // 2:,}": deep}.items():
            with db.read() as conn:
                plan = explain(conn, f, now)
            seq = "Seq Scan on verification_sessions" in plan or "Seq Scan on event_log" in plan
            execution = next((line.strip() for line in plan.splitlines() if "Execution Time" in line), "?")
            p50, p99, found = timed(db, f, now, args.runs)
            report[name] = p50
            indexes = sorted({word for line in plan.splitlines() for word in line.split()
                              if word.startswith(("verification_sessions_", "outbox_", "email_sends_pkey", "event_log_"))})
            print(f"{name:32} rows {found:3}  p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  server {execution:28} "
                  f"seq scan: {seq}  indexes: {', '.join(indexes)}")
            if args.plans:
                print(plan)
        # Beside "needs attention": the orders that opened no session.
        with db.read() as conn:
            unopened = reads.sessionless_orders(conn, now)
            plan = explain(conn, None, now, reads.sessionless_query(now, 50))
        timings = []
        for _ in range(args.runs):
            started = time.perf_counter()
            with db.read() as conn:
                reads.sessionless_orders(conn, now)
            timings.append((time.perf_counter() - started) * 1000)
        print(f"{'orders with no session':32} rows {len(unopened):3}  p50 {statistics.median(timings):7.2f} ms  "
              f"seq scan: {'Seq Scan' in plan}  "
              f"{'event_log_sessionless' if 'event_log_sessionless' in plan else 'NOT the partial index'}")
        if args.plans:
            print(plan)
        first = report["newest"]
        deep_name = next(name for name in report if name.startswith("newest, page at"))
        print(f"deep page / first page: {report[deep_name] / first:.2f}x (keyset: no OFFSET cost)")


if __name__ == "__main__":
    main()
