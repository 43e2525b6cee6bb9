"""The analytics subscriber's writes: the daily funnel's counters and each order's time to verify
(each event is counted once: `claims.claim_message` commits with them). The funnel report reads
them back (`shared.db.reads.funnel`)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection


def bump_funnel(conn: Connection, day, metric: str) -> None:
    conn.execute(
        text("""
            INSERT INTO funnel_daily (day, metric, count) VALUES (:d, :m, 1)
            ON CONFLICT (day, metric) DO UPDATE SET count = funnel_daily.count + 1
        """),
        {"d": day, "m": metric},
    )


def record_verify_duration(conn: Connection, order_id: str, day, seconds: int, bucket: str) -> None:
    conn.execute(
        text("""
            INSERT INTO verify_durations (order_id, day, seconds, bucket) VALUES (:o, :d, :s, :b)
            ON CONFLICT (order_id) DO NOTHING
        """),
        {"o": order_id, "d": day, "s": seconds, "b": bucket},
    )
