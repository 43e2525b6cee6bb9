"""Outbox drain with a long history: a 100 k backlog on a database holding 1 M orders and
5 M delivered outbox rows, against the same backlog on a database with no history.

    .venv/bin/python -m bench.outbox [--orders 1000000] [--delivered 5000000] [--backlog 100000]

Each database is a throwaway one (CREATE DATABASE ... / DROP DATABASE on a PostgreSQL
started for the run), filled with `INSERT ... SELECT generate_series`, vacuumed and
analysed. The backlog is shaped like real orders' rows (three publishes and two task
creations per order). The sweeper's relay (`relay(..., order_ids=None)`) drains it with
no-op adapters, so what is measured is the outbox's own cost: the lease claim, the
outcome update. Printed: rows/s on each database and their ratio, the median claim time
of the first and last ten batches, and the plans of both claims (`EXPLAIN (ANALYZE,
BUFFERS)`, run in a transaction that is rolled back).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
import uuid

import pg8000.native
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench._common import database
from shared.ports import Outcome
from shared.db import outbox
from shared.db.database import Database
from shared.db.engine import make_engine
from shared.db.migrate import ensure_schema
from shared.handlers import relay

TARGET_ROWS_PER_SECOND = 2000


class NoopScheduler:
    parallel_calls = 1

    def create(self, task, *, timeout=None):
        return Outcome.CREATED

    def delete(self, name, *, timeout=None):
        return Outcome.DELETED

    def check(self):
        pass


class NoopPublisher:
    def publish_batch(self, messages, *, timeout=None):
        return ["m" for _ in messages]

    def check(self):
        pass


HISTORY = [
    """INSERT INTO verification_sessions (order_id, source, customer_email, status, ordered_at, deadline,
                                          decided_at, created_at, updated_at)
       SELECT 'hist-' || i, 'orders', 'buyer@example.com', 'verified', t, t + interval '72 hours', t, t, t
       FROM generate_series(1, :orders) AS i, LATERAL (SELECT now() - (i || ' seconds')::interval AS t) AS at""",
    """INSERT INTO outbox (kind, order_id, payload, created_at, available_at, delivered_at, attempts)
       SELECT 'publish', 'hist-' || (mod(i, :orders) + 1), '{"topic": "verification-events"}'::jsonb,
              t, t, t + interval '50 milliseconds', 1
       FROM generate_series(1, :delivered) AS i, LATERAL (SELECT now() - (i || ' seconds')::interval AS t) AS at""",
]

BACKLOG = """
    INSERT INTO outbox (kind, order_id, payload, available_at)
    SELECT CASE WHEN k <= 3 THEN 'publish' ELSE 'task.create' END, 'backlog-' || o,
           CASE WHEN k <= 3 THEN jsonb_build_object(
                    'topic', 'verification-events', 'ordering_key', 'backlog-' || o,
                    'attributes', jsonb_build_object('type', 'order.received', 'order_id', 'backlog-' || o,
                                                     'message_key', md5(o || '-' || k)),
                    'data', jsonb_build_object('v', 1, 'order_id', 'backlog-' || o))
                ELSE jsonb_build_object(
                    'name', md5(o || '-' || k), 'schedule_time', '2030-01-01T00:00:00+00:00',
                    'body', jsonb_build_object('v', 1, 'order_id', 'backlog-' || o, 'kind', 'deadline',
                                               'reminder_index', 0, 'deadline_version', 1)) END,
           now() - interval '1 minute'
    FROM generate_series(1, :orders) AS o, generate_series(1, 5) AS k
"""


def throwaway(admin: Database, settings, name: str) -> Database:
    with admin.read() as conn:  # autocommit: CREATE DATABASE cannot run in a transaction
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(settings.database.url).set(database=name).render_as_string(hide_password=False)
    db = Database(make_engine(dataclasses.replace(settings.database, url=url)))
    ensure_schema(db)
    return db


def drop(admin: Database, db: Database, name: str) -> None:
    db.engine.dispose()
    with admin.read() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def fill(db: Database, statements: list[str], **params) -> float:
    """Run the statements with no client timeout (the service's connections give up after 5 s)."""
    url = db.engine.url
    conn = pg8000.native.Connection(url.username, host=url.host, port=url.port, database=url.database,
                                    timeout=None, ssl_context=False)
    started = time.perf_counter()
    try:
        for statement in statements:
            conn.run(statement, **params)
        conn.run("VACUUM ANALYZE")
    finally:
        conn.close()
    return time.perf_counter() - started


def explain(db: Database, sql: str, params: dict) -> str:
    """The claim's plan, run for real in a transaction that is rolled back (the claim's
    positional parameters $1, $2, $3 become the named ones n, lease, orders)."""
    named = (sql.replace("$1::int", "CAST(:n AS int)").replace("$2::float8", "CAST(:lease AS float8)")
             .replace("$3::text[]", "CAST(:orders AS text[])"))
    with db.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="READ COMMITTED")
        transaction = conn.begin()
        lines = [row[0] for row in conn.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + named), params)]
        transaction.rollback()
    return "\n".join("    " + line for line in lines)


def drain(db: Database) -> tuple[int, float, list[float]]:
    """Rows delivered, seconds, and each batch claim's milliseconds."""
    claims: list[float] = []
    real_claim = outbox.claim_outbox

    def timed_claim(*args, **kwargs):
        started = time.perf_counter()
        rows = real_claim(*args, **kwargs)
        claims.append((time.perf_counter() - started) * 1000)
        return rows

    outbox.claim_outbox = timed_claim
    try:
        delivered = 0
        started = time.perf_counter()
        while True:
            report = relay.relay(db, NoopScheduler(), NoopPublisher(), budget_seconds=600)
            delivered += report.delivered
            if report.delivered == 0:
                break
        elapsed = time.perf_counter() - started
    finally:
        outbox.claim_outbox = real_claim
    return delivered, elapsed, claims


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--delivered", type=int, default=5_000_000)
    parser.add_argument("--backlog", type=int, default=100_000, help="undelivered rows (5 per order)")
    args = parser.parse_args()
    backlog_orders = args.backlog // 5
    tag = uuid.uuid4().hex[:8]
    with database() as (admin, settings):
        results = {}
        for label, history in (("no history", False), ("history", True)):
            name = f"outbox_bench_{tag}_{'big' if history else 'fresh'}"
            db = throwaway(admin, settings, name)
            try:
                built = fill(db, HISTORY if history else [], orders=args.orders, delivered=args.delivered)
                fill(db, [BACKLOG], orders=backlog_orders)
                plan_due = explain(db, outbox._CLAIM_ALL, {"n": relay.BATCH, "lease": 60})
                plan_order = explain(db, outbox._CLAIM_ORDERS, {"n": relay.BATCH, "lease": 60,
                                                               "orders": [f"backlog-{backlog_orders // 2}"]})
                delivered, seconds, claims = drain(db)
                with db.read() as conn:
                    left = conn.execute(text("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")).scalar_one()
                results[label] = (delivered, seconds, claims, plan_due, plan_order, built, left)
            finally:
                drop(admin, db, name)

    print(f"outbox drain bench: backlog {args.backlog:,} rows ({backlog_orders:,} orders x 5), no-op adapters, "
          f"sweeper relay (batch {relay.BATCH}); history = {args.orders:,} orders and {args.delivered:,} delivered "
          f"outbox rows (built in {results['history'][5]:.0f} s)")
    for label, (delivered, seconds, claims, *_rest, left) in results.items():
        print(f"{label}: {delivered:,} rows in {seconds:.1f} s = {delivered / seconds:,.0f} rows/s; "
              f"claim per batch: first ten {statistics.median(claims[:10]):.1f} ms, "
              f"last ten {statistics.median(claims[-10:]):.1f} ms; undelivered left {left}")
    rate = {label: r[0] / r[1] for label, r in results.items()}
    print(f"rows/s with history / without: {rate['history'] / rate['no history']:.2f}; "
          f"target >= {TARGET_ROWS_PER_SECOND:,} rows/s with history: "
          f"{'reached' if rate['history'] >= TARGET_ROWS_PER_SECOND else 'NOT reached'}")
    print("claim plan, sweeper (by due time), on the database with history, before the drain:")
    print(results["history"][3])
    print("claim plan, a request's own rows (by order), same database:")
    print(results["history"][4])


if __name__ == "__main__":
    main()
