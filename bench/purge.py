"""Retention purge in bounded batches: 100,000 eligible rows of each kind beside live traffic.

    .venv/bin/python -m bench.purge [--rows 100000] [--batch 1000]

Fills a fresh database with ROWS closed sessions past RETENTION, ROWS delivered outbox rows
and ROWS processed message ids past REPLAY_RETENTION (`INSERT ... SELECT generate_series`),
then runs the sweeper's retention pass (`shared.handlers.retention.purge`, one autocommit
statement per batch) until nothing is left, while a second thread keeps placing orders.
Prints: rows per kind, batches, the longest single batch (the longest any lock is held),
rows/s, and the orders the concurrent thread placed meanwhile with its p99.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from datetime import datetime, timezone

from sqlalchemy import text

from bench._common import database
from shared.db import retention as retention_sql
from shared.domain.messages import OrderPlaced
from shared.handlers import intake, retention


def fill(db, rows: int) -> None:
    with db.transaction() as conn:
        conn.execute(text("""
            INSERT INTO verification_sessions (order_id, source, customer_email, customer_id, status, ordered_at,
                                               deadline, decided_at)
            SELECT 'old-' || i, 'orders', 'old-' || i || '@buyer.example', 'c-' || i, 'expired',
                   now() - interval '200 days', now() - interval '197 days', now() - interval '197 days'
            FROM generate_series(1, :n) AS i"""), {"n": rows})
        conn.execute(text("""
            INSERT INTO outbox (kind, order_id, payload, delivered_at, created_at)
            SELECT 'publish', 'old-' || i, '{}'::jsonb, now() - interval '30 days', now() - interval '30 days'
            FROM generate_series(1, :n) AS i"""), {"n": rows})
        conn.execute(text("""
            INSERT INTO processed_messages (subscriber, message_id, processed_at)
            SELECT 'record_analytics', 'old-' || i, now() - interval '30 days' FROM generate_series(1, :n) AS i"""),
                     {"n": rows})
    with db.read() as conn:
        conn.execute(text("ANALYZE"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=retention.BATCH)
    args = parser.parse_args()
    with database() as (db, settings):
        fill(db, args.rows)
        batch_seconds: list[float] = []
        real = retention_sql.purge_batch

        def timed(db_, kind, cutoff, limit):
            started = time.perf_counter()
            try:
                return real(db_, kind, cutoff, limit)
            finally:
                batch_seconds.append(time.perf_counter() - started)

        retention_sql.purge_batch = timed
        stop = threading.Event()
        latencies: list[float] = []

        def traffic() -> None:
            while not stop.is_set():
                order_id = f"live-{uuid.uuid4().hex[:10]}"
                started = time.perf_counter()
                intake.place_order(db, settings, OrderPlaced("orders", f"m-{order_id}", order_id, "a@example.com"),
                                   now=datetime.now(timezone.utc))
                latencies.append(time.perf_counter() - started)

        worker = threading.Thread(target=traffic)
        worker.start()
        started = time.perf_counter()
        totals: dict[str, int] = {}
        passes = 0
        while True:  # one sweep's pass after another, as the scheduler would call it
            passes += 1
            done = retention.purge(db, settings, now=datetime.now(timezone.utc), batch=args.batch)
            for name, count in done.items():
                totals[name] = totals.get(name, 0) + count
            if not done:
                break
        elapsed = time.perf_counter() - started
        stop.set()
        worker.join()
        retention_sql.purge_batch = real
        purged = sum(totals.values())
        print(f"retention purge: {args.rows:,} eligible rows of each kind, batch {args.batch:,}")
        for name, count in totals.items():
            print(f"  {name:<24} {count:>10,}")
        print(f"{purged:,} rows in {elapsed:.1f} s = {purged / elapsed:,.0f} rows/s, {len(batch_seconds)} batches "
              f"in {passes - 1} sweep passes; batch median {statistics.median(batch_seconds) * 1000:.0f} ms, "
              f"longest {max(batch_seconds) * 1000:.0f} ms (no statement holds its locks longer)")
        latencies.sort()
        print(f"orders placed meanwhile: {len(latencies):,}, p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, "
              f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms")
        with db.read() as conn:
            left = conn.execute(text("SELECT count(*) FROM verification_sessions WHERE customer_email LIKE 'old-%'"))
            print(f"customer emails of closed sessions left: {left.scalar()}")


if __name__ == "__main__":
    main()
